// Test helpers for the file watchers: a queue of onChange calls and a captured logger.
import { createLogger } from '../../lib/telemetry/log.ts';
import type { Logger } from '../../lib/telemetry/log.ts';
import { sleep } from '../helpers/wait.ts';

export interface Changes<T> {
  readonly onChange: (value: T) => void;
  /** The next call's value; rejects after `ms`. */
  next(ms?: number): Promise<T>;
  /** Calls received and not yet taken by next(). */
  readonly pending: T[];
}

export function changes<T>(): Changes<T> {
  const pending: T[] = [];
  const waiters: ((value: T) => void)[] = [];
  return {
    pending,
    onChange(value) {
      const waiter = waiters.shift();
      if (waiter === undefined) pending.push(value);
      else waiter(value);
    },
    next(ms = 3000) {
      if (pending.length > 0) return Promise.resolve(pending.shift() as T);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(done), 1);
          reject(new Error(`no change within ${ms} ms`));
        }, ms);
        const done = (value: T): void => {
          clearTimeout(timer);
          resolve(value);
        };
        waiters.push(done);
      });
    },
  };
}

export interface CapturedLog {
  readonly log: Logger;
  readonly lines: { level: string; msg: string; [field: string]: unknown }[];
  /** Resolves once a line matching `pred` has been logged. */
  waitFor(pred: (line: CapturedLog['lines'][number]) => boolean, ms?: number): Promise<void>;
}

export function captureLog(): CapturedLog {
  const lines: CapturedLog['lines'] = [];
  const log = createLogger('debug', (line) => lines.push(JSON.parse(line)));
  return {
    log,
    lines,
    async waitFor(pred, ms = 3000) {
      const deadline = Date.now() + ms;
      while (!lines.some(pred)) {
        if (Date.now() > deadline) throw new Error(`no matching log line within ${ms} ms`);
        await sleep(20);
      }
    },
  };
}
