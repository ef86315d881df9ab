// Go-style durations ("500ms", "30s", "1m30s", "1.5h"), so flags read like Envoy's and
// kubectl's. Values are whole milliseconds because every use is a Node timer.

const unitMs = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
type Unit = keyof typeof unitMs;

/** Node clamps longer timer delays to 1ms (with only a warning), so refuse them here. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const accepted = 'expected a duration like 500ms, 30s, 1m30s or 1.5h (units ms, s, m, h)';
// Loose on purpose, so that a bad number or unit can be named in the message.
const token = /([\d.]+)([^\d.]*)/y;

/** Parses a non-negative Go-style duration into milliseconds; throws an Error saying what is accepted. */
export function parseDuration(text: string): number {
  if (text === '') throw new Error(`empty duration; ${accepted}`);
  if (text.startsWith('-')) throw new Error(`negative duration "${text}"; ${accepted}`);
  // Like Go, a bare "0" needs no unit: it means the same in every unit.
  if (text === '0') return 0;

  let ms = 0;
  token.lastIndex = 0;
  while (token.lastIndex < text.length) {
    const m = token.exec(text);
    if (m === null) throw new Error(`invalid duration "${text}"; ${accepted}`);
    const [, amount = '', unit = ''] = m;
    if (!/^(\d+(\.\d+)?|\.\d+)$/.test(amount)) throw new Error(`invalid number "${amount}" in "${text}"; ${accepted}`);
    if (unit === '') throw new Error(`missing unit after "${amount}" in "${text}"; ${accepted}`);
    if (!Object.hasOwn(unitMs, unit)) throw new Error(`unknown unit "${unit}" in "${text}"; ${accepted}`);
    ms += Number(amount) * unitMs[unit as Unit];
  }

  const whole = Math.round(ms);
  // Tolerate float noise such as 0.1h, but not a real fraction of a millisecond.
  if (Math.abs(ms - whole) > 1e-6) throw new Error(`duration "${text}" is finer than a millisecond`);
  if (whole > MAX_DURATION_MS) {
    throw new Error(`duration "${text}" is too long; the maximum is ${formatDuration(MAX_DURATION_MS)}`);
  }
  return whole;
}

/** Formats milliseconds the way parseDuration reads them: 500 -> "500ms", 90000 -> "1m30s". */
export function formatDuration(ms: number): string {
  if (ms < 0) return `-${formatDuration(-ms)}`;
  let rest = Math.round(ms);
  if (rest < 1_000) return `${rest}ms`;
  const h = Math.floor(rest / unitMs.h);
  rest -= h * unitMs.h;
  const m = Math.floor(rest / unitMs.m);
  rest -= m * unitMs.m;
  const s = Math.floor(rest / unitMs.s);
  const frac = rest - s * unitMs.s;
  let out = '';
  if (h > 0) out += `${h}h`;
  if (m > 0) out += `${m}m`;
  if (s > 0 || frac > 0) {
    out += frac > 0 ? `${s}.${String(frac).padStart(3, '0').replace(/0+$/, '')}s` : `${s}s`;
  }
  return out;
}
