// Reading Node's 'gc' performance entries: which ones are scavenges the process forced itself
// (gc() with type 'minor'), as lib/runtime/young-garbage.ts does.
import { constants, type PerformanceEntry } from 'node:perf_hooks';

/** A 'gc' entry's detail (typed loosely by @types/node). */
interface GcDetail {
  kind: number;
  flags: number;
}

export function isForcedScavenge(entry: PerformanceEntry): boolean {
  const { kind, flags } = (entry as unknown as { detail: GcDetail }).detail;
  return kind === constants.NODE_PERFORMANCE_GC_MINOR && (flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0;
}
