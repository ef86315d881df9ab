// The manual clock the timing tests drive: timers fire in due order when advanced over, intervals
// repeat, cleared timers never fire; and the real clock it stands in for.
import t from 'tap';
import { realClock } from '../../lib/runtime/clock.ts';
import { ManualClock } from '../helpers/manual-clock.ts';

t.test('advance fires due timers in order, each at its own time', async (t) => {
  const clock = new ManualClock({ wall: 1_000_000 });
  const fired: string[] = [];
  const log = (name: string) => () => fired.push(`${name}@${clock.now()}`);
  clock.setTimeout(log('b'), 20);
  clock.setTimeout(log('a'), 10);
  clock.setTimeout(log('c'), 20); // same time as b, set after it
  clock.setTimeout(log('late'), 31);
  clock.advance(30);
  t.same(fired, ['a@10', 'b@20', 'c@20'], 'due order; ties in the order they were set');
  t.equal(clock.now(), 30);
  t.equal(clock.wall(), 1_000_030, 'wall time moves with it');
  t.equal(clock.pending, 1, 'the later one waits');
  clock.advance(1);
  t.same(fired.at(-1), 'late@31');
  t.equal(clock.pending, 0);
});

t.test('intervals repeat; cleared timers never fire; timers set by a timer fire in the same advance', async (t) => {
  const clock = new ManualClock();
  const fired: string[] = [];
  const tick = clock.setInterval(() => fired.push(`tick@${clock.now()}`), 10);
  const never = clock.setTimeout(() => fired.push('never'), 5);
  clock.clearTimeout(never);
  clock.clearTimeout(undefined);
  clock.setTimeout(() => {
    fired.push(`outer@${clock.now()}`);
    clock.setTimeout(() => fired.push(`inner@${clock.now()}`), 3);
  }, 12);
  clock.advance(25);
  t.same(fired, ['tick@10', 'outer@12', 'inner@15', 'tick@20']);
  clock.clearTimeout(tick);
  clock.advance(100);
  t.equal(fired.length, 4, 'a cleared interval stops');
  const timer = clock.setTimeout(() => {}, 1);
  t.equal(timer.unref(), timer, "unref returns the timer, as Node's does");
});

t.test('a delay under 1 ms is 1 ms, as in Node', async (t) => {
  const clock = new ManualClock();
  let fired = false;
  clock.setTimeout(() => (fired = true), 0);
  clock.advance(0);
  t.notOk(fired, 'not within the same instant');
  clock.advance(1);
  t.ok(fired);
});

t.test('the real clock: monotonic now, epoch wall, Node timers', async (t) => {
  const before = Date.now();
  t.ok(realClock.wall() >= before && realClock.wall() - before < 60_000, 'wall is epoch milliseconds');
  const a = realClock.now();
  t.ok(realClock.now() >= a, 'now never goes back');
  const order: string[] = [];
  const cleared = realClock.setTimeout(() => order.push('cleared'), 1).unref();
  realClock.clearTimeout(cleared);
  await new Promise<void>((resolve) => {
    realClock.setTimeout(() => {
      order.push('fired');
      resolve();
    }, 1);
  });
  t.same(order, ['fired'], 'a cleared timer does not fire; a later one does');
});
