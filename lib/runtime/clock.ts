// Time as the token cache, the sessions and the file watchers read it. Passed in through their
// options (production passes nothing and gets realClock), so a test can drive time by hand
// (test/helpers/manual-clock.ts) and assert the order of events instead of waiting on the wall
// clock.

/** A pending timer or interval. */
export interface Timer {
  /** Lets the process exit while the timer is pending. */
  unref(): this;
}

export interface Clock {
  /** Milliseconds on a monotonic clock: intervals inside this process (immune to clock steps). */
  now(): number;
  /** Milliseconds since the epoch: instants another party reads too (token iat/exp, file mtimes). */
  wall(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  setInterval(fn: () => void, ms: number): Timer;
  /** Cancels a timer or an interval; undefined is a no-op. */
  clearTimeout(timer: Timer | undefined): void;
}

/** The process's own clocks and timers, as they are. */
export const realClock: Clock = {
  now: () => performance.now(),
  wall: Date.now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  setInterval: (fn, ms) => setInterval(fn, ms),
  // Node's clearTimeout clears intervals too; every Timer here is a NodeJS.Timeout.
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
};
