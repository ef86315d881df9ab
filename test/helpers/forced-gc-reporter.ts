// Preload (`--import`) for a gateway under test: prints "forced scavenge" on stdout for every
// scavenge the process forced itself (gc() with type 'minor'), as seen by Node's 'gc'
// performance entries. --trace-gc would say the same but NODE_OPTIONS does not allow it.
import { constants, PerformanceObserver } from 'node:perf_hooks';

new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const { kind, flags } = (entry as unknown as { detail: { kind: number; flags: number } }).detail;
    if (kind === constants.NODE_PERFORMANCE_GC_MINOR && (flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0) {
      process.stdout.write('forced scavenge\n');
    }
  }
}).observe({ entryTypes: ['gc'] });
process.stdout.write('gc reporter on\n');
