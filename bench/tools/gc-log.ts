// A preload that appends every GC of the process to a file, one line each:
// "<kind> <pause ms> <ms since start>" (kind: 1 scavenge, 2 mark-compact, 4 incremental
// marking, 8 weak callbacks). For the p99 question in docs/performance.md:
//
//   GC_LOG=/tmp/gc.txt make bench BENCH_PROXIES=fngate BENCH_PHASES=latency \
//     BENCH_FNGATE_NODE_FLAGS=--import=$PWD/bench/tools/gc-log.ts
import { appendFileSync } from 'node:fs';
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';

const file = process.env['GC_LOG'] ?? '/tmp/fngate-gc.txt';
const pending: string[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) {
    pending.push(`${e.detail?.kind ?? '?'} ${e.duration.toFixed(2)} ${Math.round(e.startTime)}`);
  }
}).observe({ entryTypes: ['gc'] });
setInterval(() => {
  if (pending.length > 0) appendFileSync(file, pending.splice(0).join('\n') + '\n');
}, 200).unref();
