// The scavenge pacing of lib/runtime/young-garbage.ts: one forced minor GC per RECLAIM_BYTES
// forwarded or per CONNECTIONS_PER_RECLAIM closed connections, counted together, seen through Node's 'gc'
// performance entries (forced ones carry NODE_PERFORMANCE_GC_FLAGS_FORCED).
import { PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { setUpProcess } from '../../lib/runtime/process-setup.ts';
import { connectionClosed, CONNECTIONS_PER_RECLAIM, forwarded, RECLAIM_BYTES } from '../../lib/runtime/young-garbage.ts';
import { isForcedFullGc, isForcedScavenge } from '../helpers/gc-entries.ts';

// The test's own gc(), for a marker collection. Setting the flag turns nothing on in
// young-garbage.ts: it scavenges only once setUpProcess has asked it to.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (options: { type: 'major' }) => void;

/**
 * Forced scavenges `work` caused. GC entries arrive asynchronously, in the order the
 * collections ran: a full collection forced right after `work` marks where its entries end.
 */
async function forcedScavenges(work: () => void): Promise<number> {
  let scavenges = 0;
  let markerSeen: () => void = () => {};
  const marker = new Promise<void>((resolve) => (markerSeen = resolve));
  let done = false;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (done) break;
      if (isForcedFullGc(entry)) {
        done = true;
        markerSeen();
      } else if (isForcedScavenge(entry)) {
        scavenges++;
      }
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  // GC entries are handed out on a later turn of the event loop, which nothing else here
  // brings: a ticking timer turns it until the marker has come.
  const alive = setInterval(() => {}, 1);
  work();
  gc({ type: 'major' });
  await marker;
  clearInterval(alive);
  observer.disconnect();
  return scavenges;
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
