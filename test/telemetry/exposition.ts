// The Prometheus text exposition of admin /metrics, for the telemetry tests: validated by
// `promtool check metrics` (Prometheus' own parser and linter, built by `make telemetry-tools`),
// then read into samples so tests can compare exact values per label set.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const PROMTOOL = fileURLToPath(new URL('../../.cache/bin/promtool', import.meta.url));

export interface Sample {
  /** The series name as exposed, e.g. `rpc_server_call_duration_seconds_count`. */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** promtool check metrics on `text`: its exit code and what it printed (lint findings, parse errors). */
export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  if (!existsSync(PROMTOOL)) {
    return Promise.reject(new Error(`${PROMTOOL} is missing: run \`make telemetry-tools\` (make test does)`));
  }
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

/**
 * Samples of a text exposition (format 0.0.4). Throws on a line that is not a comment, a
 * blank or `name{label="value",...} number`: promtool has passed the same text already, so
 * this only has to be right about what promtool accepted.
 */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    samples.push({ name: m[1] as string, labels: parseLabels(m[3] ?? '', line), value: parseValue(m[4] as string) });
  }
  return samples;
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const n = Number(text);
  if (Number.isNaN(n)) throw new Error(`not a number: ${text}`);
  return n;
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let at = 0;
  while (at < text.length) {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(text.slice(at));
    if (m === null) throw new Error(`bad label at ${at}: ${line}`);
    at += m[0].length;
    let value = '';
    for (;;) {
      const c = text[at++];
      if (c === undefined) throw new Error(`unterminated label value: ${line}`);
      if (c === '"') break;
      if (c === '\\') {
        const e = text[at++];
        value += e === 'n' ? '\n' : (e ?? '');
      } else value += c;
    }
    labels[m[1] as string] = value;
    if (text[at] === ',') at++;
  }
  return labels;
}

/** A stable key for a series: name plus sorted labels. */
export function seriesKey(name: string, labels: Readonly<Record<string, string>>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `${name}{${parts.join(',')}}`;
}

export function byKey(samples: readonly Sample[]): Map<string, number> {
  return new Map(samples.map((s) => [seriesKey(s.name, s.labels), s.value]));
}

/** What changed from `before` to `after`: series key -> increase (new series count from 0). */
export function increases(before: readonly Sample[], after: readonly Sample[]): Map<string, number> {
  const old = byKey(before);
  const out = new Map<string, number>();
  for (const [key, value] of byKey(after)) {
    const d = value - (old.get(key) ?? 0);
    if (d !== 0) out.set(key, d);
  }
  return out;
}
