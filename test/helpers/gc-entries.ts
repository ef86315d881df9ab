// Reading Node's 'gc' performance entries: which ones are collections the process forced itself
// (gc()): scavenges (type 'minor'), as lib/runtime/young-garbage.ts does, or full ones.
import { constants, type PerformanceEntry } from 'node:perf_hooks';

/** A 'gc' entry's detail (typed loosely by @types/node). */
interface GcDetail {
  kind: number;
  flags: number;
}

function isForced(entry: PerformanceEntry, wanted: number): boolean {
  const { kind, flags } = (entry as unknown as { detail: GcDetail }).detail;
  return kind === wanted && (flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0;
}

export const isForcedScavenge = (entry: PerformanceEntry): boolean => isForced(entry, constants.NODE_PERFORMANCE_GC_MINOR);
export const isForcedFullGc = (entry: PerformanceEntry): boolean => isForced(entry, constants.NODE_PERFORMANCE_GC_MAJOR);
