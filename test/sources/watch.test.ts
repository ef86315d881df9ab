// lib/files/watch.ts on a manual clock: when checks run (debounce after fs events, the periodic
// poll), that they never overlap, that close leaves nothing behind, and when a file's stat
// signature can be trusted. Asserted as order and state: the clock only moves when told.
import t from 'tap';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { statSignature, watchDirectory, type DirWatchOptions } from '../../lib/files/watch.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { waitFor } from '../helpers/wait.ts';
import { captureLog } from './changes.ts';

/** A watch whose checks the test counts and releases one at a time. */
function counted(dir: string, clock: ManualClock, opts: Partial<DirWatchOptions> = {}) {
  const state = { checks: 0, notified: 0, release: [] as (() => void)[] };
  const watch = watchDirectory({
    dir,
    debounceMs: 100,
    pollMs: 60_000,
    fsWatch: true,
    accept: (name) => name === 'f',
    check: () =>
      new Promise((resolve) => {
        state.checks++;
        state.release.push(() => resolve(() => void state.notified++));
      }),
    log: captureLog().log,
    clock,
    ...opts,
  });
  /** Lets the oldest check finish (it asks for a notification), and waits for the watch to take it. */
  const finish = async (): Promise<void> => {
    const notifiedBefore = state.notified;
    state.release.shift()?.();
    await waitFor(() => state.notified > notifiedBefore || watchClosed, 5000, 'check finished');
  };
  let watchClosed = false;
  return {
    state,
    finish,
    close: () => {
      watchClosed = true;
      watch.close();
    },
  };
}

t.test('an fs event runs a check once the debounce time has passed, not before', async (t) => {
  const dir = t.testdir({ f: 'one' });
  const clock = new ManualClock();
  const w = counted(dir, clock);
  t.teardown(w.close);
  t.equal(w.state.checks, 1, 'the first check runs at once');
  await w.finish();
  t.equal(clock.pending, 1, 'then only the poll is scheduled');

  // The watch attaches asynchronously: write until an event has set the debounce timer.
  await waitFor(() => {
    writeFileSync(join(dir, 'f'), `two ${Date.now()}`);
    return clock.pending === 2;
  }, 5000, 'the debounce timer set by an fs event');
  clock.advance(99);
  t.equal(w.state.checks, 1, 'no check within the debounce time');
  clock.advance(1);
  t.equal(w.state.checks, 2, 'one check when it has passed');
  t.equal(clock.pending, 1, 'the debounce timer is spent');
  await w.finish();
  t.equal(w.state.notified, 2, "each check's notification delivered");
});

t.test('the poll runs a check every pollMs; a trigger during a check queues one more, not one each', async (t) => {
  const dir = t.testdir({ f: 'one' });
  const clock = new ManualClock();
  const w = counted(dir, clock, { fsWatch: false, pollMs: 1000 });
  t.teardown(w.close);
  t.equal(w.state.checks, 1);
  await w.finish();
  clock.advance(999);
  t.equal(w.state.checks, 1, 'nothing before the poll interval');
  clock.advance(1);
  t.equal(w.state.checks, 2, 'the poll checks');
  clock.advance(3000);
  t.equal(w.state.checks, 2, 'three polls while that check runs: no overlapping check');
  await w.finish();
  t.equal(w.state.checks, 3, 'they queue exactly one more');
  await w.finish();
  t.equal(w.state.checks, 3, 'and nothing after it');
  t.equal(w.state.notified, 3);
});

t.test('close: no timer left, and a check still running delivers nothing', async (t) => {
  const dir = t.testdir({ f: 'one' });
  const clock = new ManualClock();
  const w = counted(dir, clock);
  t.equal(w.state.checks, 1);
  w.close();
  t.equal(clock.pending, 0, 'poll and debounce timers cleared');
  await w.finish();
  // That check has resolved with a notification. A later watch's first check, released after
  // it, delivering its own is the event the closed watch's delivery would have come before.
  const later = counted(dir, clock);
  t.teardown(later.close);
  await later.finish();
  t.equal(later.state.notified, 1, 'a later watch delivers');
  t.equal(w.state.notified, 0, 'the closed one did not');
});

t.test('a stat signature is trusted only once the mtime is older than the racy window', async (t) => {
  const dir = t.testdir({ f: 'one' });
  const s = statSync(join(dir, 'f'));
  const clock = new ManualClock({ wall: s.mtimeMs });
  t.equal(statSignature(s, clock), undefined, 'written just now: read it again');
  clock.advance(1999);
  t.equal(statSignature(s, clock), undefined, 'still within two seconds');
  clock.advance(1);
  const signature = statSignature(s, clock);
  t.type(signature, 'string', 'two seconds on: the stat identity can be trusted');
  t.equal(statSignature(statSync(join(dir, 'f')), clock), signature, 'the same file, the same signature');
});
