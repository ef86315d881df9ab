// grpc-timeout: "TimeoutValue TimeoutUnit", at most 8 ASCII digits, unit one of H M S m u n.

const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** Node's timers overflow above this and would fire at once; longer deadlines are not armed. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Milliseconds of a grpc-timeout header, or undefined when it is malformed. Sub-millisecond
 * timeouts round up to 1 ms so that a tiny deadline still expires rather than never arming.
 */
export function parseGrpcTimeout(text: string): number | undefined {
  const len = text.length;
  if (len < 2 || len > 9) return undefined;
  const scale = unitMs[text[len - 1] as string];
  if (scale === undefined) return undefined;
  let value = 0;
  for (let i = 0; i < len - 1; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return undefined;
    value = value * 10 + d;
  }
  const ms = value * scale;
  return ms > 0 && ms < 1 ? 1 : Math.ceil(ms);
}
