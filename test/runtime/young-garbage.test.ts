// The scavenge pacing of lib/runtime/young-garbage.ts: one forced minor GC per RECLAIM_BYTES
// forwarded or per CONNECTIONS_PER_RECLAIM closed connections, counted together, seen through Node's 'gc'
// performance entries (forced ones carry NODE_PERFORMANCE_GC_FLAGS_FORCED).
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import t from 'tap';
import { setUpProcess } from '../../lib/runtime/process-setup.ts';
import { connectionClosed, CONNECTIONS_PER_RECLAIM, forwarded, RECLAIM_BYTES } from '../../lib/runtime/young-garbage.ts';
import { isForcedScavenge } from '../helpers/gc-entries.ts';

/** Forced scavenges seen while `work` runs (entries arrive asynchronously, so wait a tick). */
async function forcedScavenges(work: () => void): Promise<number> {
  const seen: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => seen.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  work();
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  return seen.filter(isForcedScavenge).length;
}

const MiB = 1 << 20;
const STEP = RECLAIM_BYTES;
const CONNECTIONS = CONNECTIONS_PER_RECLAIM;

t.test('nothing is scavenged until the process is set up for it', async (t) => {
  t.equal(await forcedScavenges(() => forwarded(64 * MiB)), 0, 'importing the module changed nothing');
  t.same(setUpProcess(), { youngGarbageReclaim: true }, 'serve turns it on explicitly');
});

t.test('forwarded bytes: one scavenge per RECLAIM_BYTES', async (t) => {
  // Start from a clean count: the first scavenge may come early if anything counted before.
  await forcedScavenges(() => forwarded(STEP));
  t.equal(await forcedScavenges(() => forwarded(STEP - 1)), 0, 'one byte short: none');
  t.equal(await forcedScavenges(() => forwarded(1)), 1, 'the byte that reaches it: one');
  t.equal(await forcedScavenges(() => {
    for (let i = 0; i < (3 * STEP) / MiB; i++) forwarded(MiB);
  }), 3, 'three times as much in 1 MiB chunks: three');
});

t.test('closed connections: one scavenge per CONNECTIONS_PER_RECLAIM, sharing the count with bytes', async (t) => {
  t.equal(await forcedScavenges(() => {
    for (let i = 0; i < CONNECTIONS - 1; i++) connectionClosed();
  }), 0, 'one connection short: none');
  t.equal(await forcedScavenges(() => connectionClosed()), 1, 'the last one: one');
  t.equal(await forcedScavenges(() => {
    for (let i = 0; i < CONNECTIONS / 2; i++) connectionClosed();
    forwarded(STEP / 2 - 1);
  }), 0, 'half the connections and half the bytes, less one: none');
  t.equal(await forcedScavenges(() => forwarded(1)), 1, 'then one more byte: one');
});
