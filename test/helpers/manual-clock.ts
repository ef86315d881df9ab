// A Clock that moves only when a test says so: advance(ms) fires the timers that fall due, in
// the order they fall due, each with now() at its own due time. Tests of timing then assert
// what happened before and after a step, never how long something took.
import type { Clock, Timer } from '../../lib/runtime/clock.ts';

class ManualTimer implements Timer {
  due: number;
  /** Creation order breaks ties between timers due at the same time, as Node's do. */
  seq: number;
  readonly fn: () => void;
  /** Interval period; undefined for a one-shot timer. */
  readonly every: number | undefined;

  constructor(due: number, seq: number, fn: () => void, every: number | undefined) {
    this.due = due;
    this.seq = seq;
    this.fn = fn;
    this.every = every;
  }

  unref(): this {
    return this;
  }
}

/** Node's rule: a delay under 1 ms (or not a number) is 1 ms. */
const delay = (ms: number): number => (ms >= 1 ? ms : 1);

export class ManualClock implements Clock {
  #now: number;
  readonly #epoch: number;
  #seq = 0;
  readonly #timers = new Set<ManualTimer>();

  /** `wall` is what wall() says before the first advance; now() starts at 0. */
  constructor(opts: { wall?: number } = {}) {
    this.#now = 0;
    this.#epoch = opts.wall ?? Date.now();
  }

  now(): number {
    return this.#now;
  }

  wall(): number {
    return this.#epoch + this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.#add(fn, delay(ms), undefined);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.#add(fn, delay(ms), delay(ms));
  }

  clearTimeout(timer: Timer | undefined): void {
    if (timer instanceof ManualTimer) this.#timers.delete(timer);
  }

  /** Timers and intervals set and not yet fired (one-shot) or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Moves time on by `ms`, firing every timer that falls due meanwhile (also those set by a
   * timer that fired), earliest first. Work a timer starts asynchronously runs after this
   * returns, when the test awaits.
   */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (let next = this.#due(until); next !== undefined; next = this.#due(until)) {
      this.#now = next.due;
      if (next.every === undefined) {
        this.#timers.delete(next);
      } else {
        next.due += next.every;
        next.seq = this.#seq++;
      }
      next.fn();
    }
    this.#now = until;
  }

  #add(fn: () => void, ms: number, every: number | undefined): ManualTimer {
    const timer = new ManualTimer(this.#now + ms, this.#seq++, fn, every);
    this.#timers.add(timer);
    return timer;
  }

  /** The earliest timer due by `until`. */
  #due(until: number): ManualTimer | undefined {
    let first: ManualTimer | undefined;
    for (const timer of this.#timers) {
      if (timer.due > until) continue;
      if (first === undefined || timer.due < first.due || (timer.due === first.due && timer.seq < first.seq)) first = timer;
    }
    return first;
  }
}
