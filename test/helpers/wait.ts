// Polling helpers for tests: wait until a condition holds, or just wait.

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `pred` every 10 ms; rejects after `timeoutMs`. */
export async function waitFor(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`${what}: not true within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** Polls an async predicate (e.g. one that asks the gateway's admin port) every 20 ms; rejects after `timeoutMs`. */
export async function waitForAsync(pred: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > until) throw new Error(`${what}: not true within ${timeoutMs} ms`);
    await sleep(20);
  }
}
