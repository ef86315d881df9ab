import t from 'tap';
import { formatDuration, MAX_DURATION_MS, parseDuration } from '../../lib/config/duration.ts';

t.test('accepts Go-style durations', async (t) => {
  const cases: [string, number][] = [
    ['0s', 0],
    ['0', 0],
    ['0ms', 0],
    ['500ms', 500],
    ['30s', 30_000],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h2m3s4ms', 3_723_004],
    ['1.5s', 1_500],
    ['.5s', 500],
    ['0.1h', 360_000],
    ['1.5ms0.5ms', 2],
    ['10m10m', 1_200_000],
  ];
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, text);
});

t.test('rejects bad durations, saying what is accepted', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /^empty duration/],
    ['-1s', /^negative duration "-1s"/],
    ['30', /^missing unit after "30" in "30"/],
    ['1.5', /^missing unit/],
    ['1m30', /^missing unit after "30" in "1m30"/],
    ['5d', /^unknown unit "d" in "5d"/],
    ['30sec', /^unknown unit "sec"/],
    ['10us', /^unknown unit "us"/],
    ['1S', /^unknown unit "S"/],
    ['abc', /^invalid duration "abc"/],
    [' 30s', /^invalid duration/],
    ['30s ', /^unknown unit "s "/],
    ['1.s', /^invalid number "1\." in "1\.s"/],
    ['1..5s', /^invalid number/],
    ['s', /^invalid duration/],
    ['0.5ms', /finer than a millisecond/],
    ['1000h', /too long; the maximum is 596h31m23\.647s/],
  ];
  for (const [text, pattern] of cases) {
    t.throws(() => parseDuration(text), { message: pattern }, JSON.stringify(text));
    if (!/finer|too long/.test(pattern.source)) {
      t.throws(() => parseDuration(text), { message: /units ms, s, m, h/ }, `${JSON.stringify(text)} lists units`);
    }
  }
});

t.test('the maximum is the largest Node timer delay', async (t) => {
  t.equal(parseDuration(formatDuration(MAX_DURATION_MS)), MAX_DURATION_MS);
  t.throws(() => parseDuration('596h31m23.648s'), { message: /too long/ });
});

t.test('formatDuration', async (t) => {
  const cases: [number, string][] = [
    [0, '0ms'],
    [1, '1ms'],
    [500, '500ms'],
    [1_000, '1s'],
    [1_500, '1.5s'],
    [1_050, '1.05s'],
    [30_000, '30s'],
    [60_000, '1m'],
    [90_000, '1m30s'],
    [3_600_000, '1h'],
    [3_600_500, '1h0.5s'],
    [3_723_004, '1h2m3.004s'],
    [-1_500, '-1.5s'],
  ];
  for (const [ms, text] of cases) t.equal(formatDuration(ms), text, String(ms));
});

t.test('formatDuration output parses back to the same value', async (t) => {
  for (const ms of [0, 7, 999, 1_000, 1_001, 59_999, 61_001, 3_599_999, 86_400_000, 123_456_789]) {
    t.equal(parseDuration(formatDuration(ms)), ms, String(ms));
  }
});
