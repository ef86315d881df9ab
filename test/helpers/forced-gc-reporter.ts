// Preload (`--import`) for a gateway under test: prints "forced scavenge" on stdout for every
// scavenge the process forced itself (gc() with type 'minor'), as seen by Node's 'gc'
// performance entries. --trace-gc would say the same but NODE_OPTIONS does not allow it.
import { PerformanceObserver } from 'node:perf_hooks';
import { isForcedScavenge } from './gc-entries.ts';

new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (isForcedScavenge(entry)) process.stdout.write('forced scavenge\n');
}).observe({ entryTypes: ['gc'] });
process.stdout.write('gc reporter on\n');
