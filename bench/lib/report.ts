// Results: per-run numbers -> min/median/max per figure and proxy, ratios to direct and to
// Envoy, fngate's performance targets, and the markdown table.
import type { ProxyName } from './proxies.ts';

export interface Figure {
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  /** A property of the proxy process (CPU, memory): none for direct. */
  readonly proxyOnly?: boolean;
  readonly digits: number;
  /** The measurement that produces it (the key of its error in a RunRecord). */
  readonly phase: Phase;
}

export type Phase = 'idle' | 'rps' | 'latency' | 'connrate' | 'upload' | 'download';

export function figures(latencyRps: number): Figure[] {
  return [
    { key: 'rps', label: 'unary RPS at saturation', unit: 'req/s', better: 'higher', digits: 0, phase: 'rps' },
    { key: 'cpuUsPerRpc', label: 'proxy CPU per RPC at saturation', unit: 'µs', better: 'lower', proxyOnly: true, digits: 1, phase: 'rps' },
    { key: 'cpuUsPerRpcFixed', label: `proxy CPU per RPC at ${latencyRps} rps`, unit: 'µs', better: 'lower', proxyOnly: true, digits: 1, phase: 'latency' },
    { key: 'p50Ms', label: `p50 latency at ${latencyRps} rps`, unit: 'ms', better: 'lower', digits: 3, phase: 'latency' },
    { key: 'p99Ms', label: `p99 latency at ${latencyRps} rps`, unit: 'ms', better: 'lower', digits: 3, phase: 'latency' },
    { key: 'idleKiBPerConn', label: 'RSS per idle connection', unit: 'KiB', better: 'lower', proxyOnly: true, digits: 1, phase: 'idle' },
    { key: 'uploadMBps', label: 'client stream throughput', unit: 'MB/s', better: 'higher', digits: 0, phase: 'upload' },
    { key: 'uploadPeakRssMiB', label: 'peak RSS, client stream', unit: 'MiB', better: 'lower', proxyOnly: true, digits: 1, phase: 'upload' },
    { key: 'uploadProxyCpuShare', label: 'proxy CPU during the client stream', unit: 'cores', better: 'lower', proxyOnly: true, digits: 2, phase: 'upload' },
    { key: 'uploadLoadCpuShare', label: 'load core busy during the client stream', unit: 'share', better: 'lower', digits: 2, phase: 'upload' },
    { key: 'downloadMBps', label: 'server stream throughput', unit: 'MB/s', better: 'higher', digits: 0, phase: 'download' },
    { key: 'downloadPeakRssMiB', label: 'peak RSS, server stream', unit: 'MiB', better: 'lower', proxyOnly: true, digits: 1, phase: 'download' },
    { key: 'downloadProxyCpuShare', label: 'proxy CPU during the server stream', unit: 'cores', better: 'lower', proxyOnly: true, digits: 2, phase: 'download' },
    { key: 'downloadLoadCpuShare', label: 'load core busy during the server stream', unit: 'share', better: 'lower', digits: 2, phase: 'download' },
    { key: 'connPerSec', label: 'new connection + first RPC', unit: '/s', better: 'higher', digits: 0, phase: 'connrate' },
    { key: 'cpuUsPerConn', label: 'proxy CPU per new connection + RPC', unit: 'µs', better: 'lower', proxyOnly: true, digits: 0, phase: 'connrate' },
  ];
}

/** One proxy's numbers from one run (figure key -> value), and what failed. */
export interface RunRecord {
  run: number;
  values: Record<string, number>;
  /** Extra detail (RSS before/after, requests, achieved rate, ...). */
  detail: Record<string, unknown>;
  errors: Record<string, string>;
  /** Measured, but not as intended (e.g. the offered rate not reached), by phase. */
  warnings: Record<string, string>;
}

export interface Stat {
  min: number;
  median: number;
  max: number;
  n: number;
  vsDirect?: number;
  vsEnvoy?: number;
}

export type Summary = Partial<Record<ProxyName, Record<string, Stat>>>;

export function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

export function summarize(records: Partial<Record<ProxyName, RunRecord[]>>, figs: Figure[]): Summary {
  const out: Summary = {};
  for (const [name, runs] of Object.entries(records) as Array<[ProxyName, RunRecord[]]>) {
    const stats: Record<string, Stat> = {};
    for (const f of figs) {
      const values = runs.map((r) => r.values[f.key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
      if (values.length === 0) continue;
      stats[f.key] = { min: Math.min(...values), median: median(values), max: Math.max(...values), n: values.length };
    }
    out[name] = stats;
  }
  for (const stats of Object.values(out)) {
    for (const [key, stat] of Object.entries(stats)) {
      const direct = out.direct?.[key]?.median;
      const envoy = out.envoy?.[key]?.median;
      if (direct) stat.vsDirect = stat.median / direct;
      if (envoy) stat.vsEnvoy = stat.median / envoy;
    }
  }
  return out;
}

export interface Target {
  readonly what: string;
  readonly fngate: string;
  readonly goal: string;
  readonly met: boolean | undefined;
}

/** The performance targets set for fngate, judged on the medians. */
export function targets(summary: Summary): Target[] {
  const f = summary.fngate ?? {};
  const m = (p: ProxyName, key: string): number | undefined => summary[p]?.[key]?.median;
  const out: Target[] = [];
  const add = (what: string, value: number | undefined, unit: string, goal: string, ok: (v: number) => boolean | undefined): void => {
    out.push({ what, fngate: value === undefined ? 'n/a' : `${fmt(value, value < 10 ? 2 : 0)}${unit}`, goal, met: value === undefined ? undefined : ok(value) });
  };
  const nginxCpu = m('nginx', 'cpuUsPerRpc');
  const envoyCpu = m('envoy', 'cpuUsPerRpc');
  const cpuGoal = Math.min(nginxCpu ?? Infinity, (envoyCpu ?? Infinity) / 2);
  add('CPU per RPC', f.cpuUsPerRpc?.median, ' µs', `≤ nginx and ≤ ½ Envoy (${Number.isFinite(cpuGoal) ? fmt(cpuGoal, 1) + ' µs' : 'n/a'})`, (v) => (nginxCpu === undefined || envoyCpu === undefined ? undefined : v <= cpuGoal));
  add('unary RPS vs Envoy', f.rps?.vsEnvoy, '×', '≥ 1.5×', (v) => v >= 1.5);
  const direct99 = m('direct', 'p99Ms');
  const added = (p: ProxyName): number | undefined => {
    const v = m(p, 'p99Ms');
    return v === undefined || direct99 === undefined ? undefined : v - direct99;
  };
  const envoyAdded = added('envoy');
  add('p99 added latency', added('fngate'), ' ms', `≤ Envoy's (${envoyAdded === undefined ? 'n/a' : fmt(envoyAdded, 3) + ' ms'})`, (v) => (envoyAdded === undefined ? undefined : v <= envoyAdded));
  const envoyConn = m('envoy', 'cpuUsPerConn');
  add('CPU per new connection + RPC vs Envoy', f.cpuUsPerConn?.vsEnvoy, '×', `≤ 1.5× (${envoyConn === undefined ? 'n/a' : fmt(envoyConn * 1.5, 0) + ' µs'})`, (v) => v <= 1.5);
  add('RSS per idle connection', f.idleKiBPerConn?.median, ' KiB', '≤ 10 KiB', (v) => v <= 10);
  for (const [what, key] of [['client stream', 'uploadMBps'], ['server stream', 'downloadMBps']] as const) {
    const s = f[key];
    add(`${what} vs direct`, s?.vsDirect, '×', '≥ 0.8× and above Envoy', (v) => (s?.vsEnvoy === undefined ? undefined : v >= 0.8 && s.vsEnvoy > 1));
  }
  const peaks = [f.uploadPeakRssMiB?.median, f.downloadPeakRssMiB?.median].filter((v) => v !== undefined);
  add('peak RSS while streaming', peaks.length === 0 ? undefined : Math.max(...peaks), ' MiB', '< 100 MiB', (v) => v < 100);
  return out;
}

export function fmt(v: number, digits: number): string {
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export interface ReportInput {
  readonly title: string;
  readonly startedAt: string;
  readonly durationS: number;
  readonly machine: Record<string, string>;
  readonly versions: Record<string, string>;
  readonly settings: Record<string, unknown>;
  readonly proxies: readonly ProxyName[];
  readonly records: Partial<Record<ProxyName, RunRecord[]>>;
  readonly summary: Summary;
  readonly figs: Figure[];
  readonly jsonFile: string;
}

export function markdown(r: ReportInput): string {
  const lines: string[] = [];
  const row = (cells: string[]): void => void lines.push(`| ${cells.join(' | ')} |`);
  lines.push(`# ${r.title}`, '');
  lines.push(`Run ${r.startedAt}, ${Math.round(r.durationS)} s; raw numbers in \`${r.jsonFile}\`.`, '');
  lines.push(
    `Machine: ${r.machine['cpu']}, ${r.machine['cores']} cores, ${r.machine['memory']}, ${r.machine['os']}, kernel ${r.machine['kernel']}` +
      ` (load average at start ${r.machine['loadavg']}). Proxy pinned to CPU ${r.machine['proxyCpu']}, load generators and backend to CPU ${r.machine['loadCpu']}.`,
    '',
  );
  lines.push(`Versions: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`, '');
  const runs = Number(r.settings['runs']);
  lines.push(`Each cell: median of ${runs} run${runs === 1 ? '' : 's'}, (min–max) when more than one.`, '');
  row(['figure', ...r.proxies]);
  row(['---', ...r.proxies.map(() => '---:')]);
  for (const f of r.figs) {
    const cells = r.proxies.map((p) => {
      const s = r.summary[p]?.[f.key];
      if (!s) return f.proxyOnly && p === 'direct' ? '—' : failed(r, p, f);
      const mid = fmt(s.median, f.digits);
      const warned = (r.records[p] ?? []).some((rec) => rec.warnings[f.phase] !== undefined) ? ' ⚠' : '';
      return (s.n > 1 ? `${mid} (${fmt(s.min, f.digits)}–${fmt(s.max, f.digits)})` : mid) + warned;
    });
    row([`${f.label} (${f.unit}, ${f.better} is better)`, ...cells]);
  }
  lines.push('', 'Ratios of the medians: to direct / to Envoy.', '');
  row(['figure', ...r.proxies.filter((p) => p !== 'direct')]);
  row(['---', ...r.proxies.filter((p) => p !== 'direct').map(() => '---:')]);
  for (const f of r.figs) {
    const cells = r.proxies
      .filter((p) => p !== 'direct')
      .map((p) => {
        const s = r.summary[p]?.[f.key];
        if (!s) return '—';
        const d = s.vsDirect === undefined ? '—' : `${fmt(s.vsDirect, 2)}×`;
        const e = s.vsEnvoy === undefined ? '—' : `${fmt(s.vsEnvoy, 2)}×`;
        return `${d} / ${e}`;
      });
    row([f.label, ...cells]);
  }
  const t = targets(r.summary);
  lines.push('', 'fngate against its performance targets (medians):', '');
  row(['target', 'fngate', 'goal', 'met']);
  row(['---', '---:', '---', '---']);
  for (const x of t) row([x.what, x.fngate, x.goal, x.met === undefined ? 'n/a' : x.met ? 'yes' : '**no**']);
  const errors = r.proxies.flatMap((p) => (r.records[p] ?? []).flatMap((rec) => Object.entries(rec.errors).map(([k, v]) => `- ${p} run ${rec.run}, ${k}: ${v.split('\n')[0]}`)));
  if (errors.length > 0) lines.push('', 'Failures (see the JSON for the full messages):', '', ...errors);
  const warnings = r.proxies.flatMap((p) => (r.records[p] ?? []).flatMap((rec) => Object.entries(rec.warnings).map(([k, v]) => `- ${p} run ${rec.run}, ${k}: ${v}`)));
  if (warnings.length > 0) lines.push('', '⚠ Measured, but not as intended:', '', ...warnings);
  lines.push('', 'Settings: ' + Object.entries(r.settings).map(([k, v]) => `${k}=${v}`).join(', ') + '.', '');
  return lines.join('\n');
}

function failed(r: ReportInput, p: ProxyName, f: Figure): string {
  return (r.records[p] ?? []).some((rec) => rec.errors[f.phase] !== undefined) ? 'failed' : 'n/a';
}
