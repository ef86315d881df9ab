// One function per figure. Load generators and clients run on the load core; the proxy's CPU
// time and memory are read from /proc around each measurement. Each returns plain numbers
// and throws (with the tool's output) when a result cannot be trusted.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpuJiffies, cpuMicros, lastJson, peakRssKiB, processTree, rssKiB, runOk, sleep, start, stop, tail, waitForOutput } from './proc.ts';
import type { RunningProxy } from './proxies.ts';

export interface LoadContext {
  readonly cpus: string | undefined;
  readonly bin: { readonly benchkit: string; readonly h2load: string; readonly ghz: string };
  readonly proto: string;
  /** Metadata every proxy gets (the direct backend ignores it). */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The unary request: one gRPC frame of fngate.bench.Payload. */
  readonly bodyFile: string;
  readonly payloadData: Buffer;
  readonly s: Settings;
  /** A path in the run's scratch directory. */
  scratch(name: string): string;
}

export interface Settings {
  readonly runs: number;
  readonly rpsSeconds: number;
  readonly rpsWarmupSeconds: number;
  readonly rpsClients: number;
  readonly rpsStreams: number;
  readonly latencyRps: number;
  readonly latencySeconds: number;
  readonly latencyWarmupSeconds: number;
  readonly latencyConcurrency: number;
  readonly idleConns: number;
  readonly idleSettleMs: number;
  readonly streamBytes: number;
  readonly streamChunk: number;
  readonly connSeconds: number;
  readonly connConcurrency: number;
}

const UNARY_PATH = '/fngate.bench.Bench/Unary';
/** 5-byte gRPC prefix + Payload{data: 32 bytes} (tag, length, data). */
export const UNARY_REPLY_BYTES = 5 + 2 + 32;

function headerArgs(ctx: LoadContext, flag: string): string[] {
  return ctx.headers.flatMap(([k, v]) => [flag, `${k}: ${v}`]);
}

/** One unary call and a short stream of each kind, verified; returns the response metadata. */
export async function check(ctx: LoadContext, proxy: RunningProxy): Promise<Record<string, string[]>> {
  const out = await runOk(ctx.cpus, ctx.bin.benchkit, ['check', '-target', proxy.target, '-timeout', '20s', ...headerArgs(ctx, '-H')], 30_000);
  const result = lastJson<{ ok: boolean; header: Record<string, string[]> }>(out);
  if (!result.ok) throw new Error(`check through ${proxy.name} failed: ${out}`);
  if (proxy.name === 'fngate' && !result.header['nvcf-reqid']) {
    throw new Error('check through fngate: no nvcf-reqid in the response (not a session-pinned call?)');
  }
  return result.header;
}

export interface RpsResult {
  rps: number;
  requests: number;
  /** Proxy CPU per RPC, µs (undefined for direct). */
  cpuUsPerRpc: number | undefined;
}

/** Unary RPS at saturation (h2load, gRPC framing) and the proxy's CPU time per RPC. */
export async function unaryRps(ctx: LoadContext, proxy: RunningProxy): Promise<RpsResult> {
  const { s } = ctx;
  const args = (seconds: number): string[] => [
    '-D', String(seconds), '-c', String(s.rpsClients), '-m', String(s.rpsStreams), '-t', '1',
    '-H', 'content-type: application/grpc', '-H', 'te: trailers', ...headerArgs(ctx, '-H'),
    '-d', ctx.bodyFile, `http://${proxy.target}${UNARY_PATH}`,
  ];
  if (s.rpsWarmupSeconds > 0) await h2load(ctx, args(s.rpsWarmupSeconds), s.rpsWarmupSeconds);
  const pid = proxy.proc?.pid;
  const cpu0 = pid === undefined ? 0 : cpuMicros(pid);
  const r = await h2load(ctx, args(s.rpsSeconds), s.rpsSeconds);
  const cpu1 = pid === undefined ? 0 : cpuMicros(pid);
  return { rps: r.succeeded / r.seconds, requests: r.succeeded, cpuUsPerRpc: pid === undefined ? undefined : (cpu1 - cpu0) / r.succeeded };
}

interface H2loadResult {
  seconds: number;
  succeeded: number;
}

async function h2load(ctx: LoadContext, args: string[], seconds: number): Promise<H2loadResult> {
  const out = await runOk(ctx.cpus, ctx.bin.h2load, args, (seconds + 30) * 1000);
  const finished = /finished in ([\d.]+)(ms|s),/.exec(out);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const data = /\((\d+)\) data/.exec(out);
  if (!finished || !req || !data) throw new Error(`h2load: unexpected output:\n${tail(out)}`);
  const secs = Number(finished[1]) / (finished[2] === 'ms' ? 1000 : 1);
  const [succeeded, failed, errored, timeouts] = [Number(req[4]), Number(req[5]), Number(req[6]), Number(req[7])];
  if (succeeded === 0 || failed + errored + timeouts > succeeded * 0.001) {
    throw new Error(`h2load: ${succeeded} succeeded, ${failed} failed, ${errored} errored, ${timeouts} timed out:\n${tail(out)}`);
  }
  // A gateway error is a 200 with trailers only: no DATA. Every good reply carries the message.
  const perReply = Number(data[1]) / succeeded;
  if (perReply < UNARY_REPLY_BYTES * 0.99) {
    throw new Error(`h2load: ${perReply.toFixed(1)} response bytes per request, want ${UNARY_REPLY_BYTES} (calls failing with a gRPC status?):\n${tail(out)}`);
  }
  return { seconds: secs, succeeded };
}

export interface LatencyResult {
  p50Ms: number;
  p99Ms: number;
  achievedRps: number;
  cpuUsPerRpcFixed: number | undefined;
  /** Set when the offered rate was not reached (the figures are then at a lower rate). */
  warning?: string;
}

/** p50/p99 at a fixed offered rate (ghz --rps), and the proxy's CPU per RPC at that rate. */
export async function latency(ctx: LoadContext, proxy: RunningProxy): Promise<LatencyResult> {
  const { s } = ctx;
  const metadata = Object.fromEntries(ctx.headers);
  // -n, not -z: a timed run cancels the calls in flight when it ends. The first half second
  // of calls is the warm-up (--skipFirst); the proxy's CPU reading includes them.
  const skip = Math.round(s.latencyRps / 2);
  const calls = Math.round(s.latencyRps * s.latencySeconds) + skip;
  const args = (n: number, report: string): string[] => [
    '--insecure', '--proto', ctx.proto, '--call', 'fngate.bench.Bench.Unary',
    '-d', JSON.stringify({ data: ctx.payloadData.toString('base64') }),
    '--rps', String(s.latencyRps), '-n', String(n), '-c', String(s.latencyConcurrency), '--connections', '1',
    '--metadata', JSON.stringify(metadata), '--skipFirst', String(skip), '-O', 'json', '-o', ctx.scratch(report), proxy.target,
  ];
  // A separate warm-up at the same rate, as for h2load: without it a phase run on its own
  // (BENCH_PHASES=latency) measures a freshly started proxy's first seconds, which the full
  // run, where this phase follows the saturation one, does not.
  if (s.latencyWarmupSeconds > 0) {
    await runOk(ctx.cpus, ctx.bin.ghz, args(Math.round(s.latencyRps * s.latencyWarmupSeconds) + skip, 'ghz-warmup.json'), (s.latencyWarmupSeconds * 2 + 30) * 1000);
  }
  const pid = proxy.proc?.pid;
  const cpu0 = pid === undefined ? 0 : cpuMicros(pid);
  // The JSON report lists every call: to a file, not through a pipe.
  await runOk(ctx.cpus, ctx.bin.ghz, args(calls, 'ghz.json'), (s.latencySeconds * 2 + 30) * 1000);
  const out = readFileSync(ctx.scratch('ghz.json'), 'utf8');
  const cpu1 = pid === undefined ? 0 : cpuMicros(pid);
  const r = JSON.parse(out) as {
    count: number;
    /** The whole run, warm-up included, ns. */
    total: number;
    latencyDistribution: Array<{ percentage: number; latency: number }> | null;
    statusCodeDistribution: Record<string, number>;
    errorDistribution?: Record<string, number> | null;
  };
  const notOk = Object.entries(r.statusCodeDistribution ?? {}).filter(([code]) => code !== 'OK');
  if (notOk.length > 0) throw new Error(`ghz: statuses ${JSON.stringify(r.statusCodeDistribution)} errors ${JSON.stringify(r.errorDistribution)}`);
  const pct = (p: number): number => {
    const entry = r.latencyDistribution?.find((d) => d.percentage === p);
    if (!entry) throw new Error(`ghz: no p${p} in ${JSON.stringify(r.latencyDistribution)}`);
    return entry.latency / 1e6;
  };
  // ghz's own rps divides the counted calls by the whole run, warm-up included.
  const achieved = calls / (r.total / 1e9);
  const result: LatencyResult = { p50Ms: pct(50), p99Ms: pct(99), achievedRps: achieved, cpuUsPerRpcFixed: pid === undefined ? undefined : (cpu1 - cpu0) / calls };
  if (achieved < s.latencyRps * 0.9) {
    result.warning = `offered ${s.latencyRps} rps, achieved ${achieved.toFixed(0)}: the proxy (or the load core) could not keep up`;
  }
  return result;
}

export interface IdleResult {
  idleConns: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  idleKiBPerConn: number;
}

/** RSS per idle client connection: open N (preface + SETTINGS done), read the RSS, release. */
export async function idleMemory(ctx: LoadContext, proxy: RunningProxy): Promise<IdleResult> {
  const pid = proxy.proc?.pid;
  if (pid === undefined) throw new Error('idle memory: no proxy process');
  const n = ctx.s.idleConns;
  await sleep(1000);
  const before = rssKiB(pid);
  const holder = start(ctx.cpus, ctx.bin.benchkit, ['idle', '-target', proxy.target, '-n', String(n), '-parallel', '64', '-hold', '10m'], { stdin: true });
  try {
    await waitForOutput(holder, (o) => o.includes('"idle connections open"'), 60_000 + n * 20, 'idle connection holder');
    const opened = lastJson<{ opened: number; failed: number; firstError?: string }>(holder.output());
    if (opened.opened < n) throw new Error(`idle: only ${opened.opened} of ${n} connections completed setup (${opened.failed} failed: ${opened.firstError})`);
    await sleep(ctx.s.idleSettleMs);
    const after = rssKiB(pid);
    holder.child.stdin?.end();
    await waitForOutput(holder, (o) => o.includes('"released"'), 30_000, 'idle connection holder');
    const released = lastJson<{ droppedByServer: number }>(holder.output());
    if (released.droppedByServer > 0) throw new Error(`idle: the proxy closed ${released.droppedByServer} of ${n} idle connections before the end`);
    return { idleConns: n, rssBeforeKiB: before, rssAfterKiB: after, idleKiBPerConn: (after - before) / n };
  } finally {
    await stop(holder, 10_000);
  }
}

export interface StreamResult {
  mbps: number;
  seconds: number;
  peakRssMiB: number | undefined;
  /** The proxy's CPU time over the stream's wall time: near 1, the proxy's core was the limit. */
  proxyCpuShare: number | undefined;
  /**
   * How busy the load generators' core(s) were over the stream (0-1, per core): near 1, the
   * client and backend ran out first, whatever the proxy. Undefined when the load is not pinned.
   */
  loadCpuShare: number | undefined;
}

/** A client stream (upload) or server stream (download) of streamBytes; the proxy's peak RSS. */
export async function stream(ctx: LoadContext, proxy: RunningProxy, mode: 'upload' | 'download'): Promise<StreamResult> {
  const pid = proxy.proc?.pid;
  if (pid !== undefined) resetPeakRss(pid);
  const timeoutS = 60 + Math.ceil(ctx.s.streamBytes / 20e6); // slower than 20 MB/s is a failure
  const cpu0 = pid === undefined ? 0 : cpuMicros(pid);
  const load0 = ctx.cpus === undefined ? undefined : cpuJiffies(ctx.cpus);
  const out = await runOk(ctx.cpus, ctx.bin.benchkit, [
    'stream', '-target', proxy.target, '-mode', mode, '-bytes', String(ctx.s.streamBytes), '-chunk', String(ctx.s.streamChunk),
    '-timeout', `${timeoutS}s`, ...headerArgs(ctx, '-H'),
  ], (timeoutS + 15) * 1000);
  const cpu1 = pid === undefined ? 0 : cpuMicros(pid);
  const load1 = ctx.cpus === undefined ? undefined : cpuJiffies(ctx.cpus);
  const r = lastJson<{ mbps: number; seconds: number }>(out);
  return {
    mbps: r.mbps,
    seconds: r.seconds,
    peakRssMiB: pid === undefined ? undefined : peakRssKiB(pid) / 1024,
    proxyCpuShare: pid === undefined ? undefined : (cpu1 - cpu0) / 1e6 / r.seconds,
    // Over the client process's whole life (connect and set-up too), so slightly below the
    // stream's own share.
    loadCpuShare: load0 === undefined || load1 === undefined || load1.total === load0.total ? undefined : (load1.busy - load0.busy) / (load1.total - load0.total),
  };
}

/** VmHWM back to the current RSS (clear_refs 5), so the peak is this measurement's. */
function resetPeakRss(root: number): void {
  for (const pid of processTree(root)) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      // Not permitted: the proxy was started just for this stream, so its peak is still this one's.
    }
  }
}

export interface ConnRateResult {
  connPerSec: number;
  connections: number;
  cpuUsPerConn: number | undefined;
}

/** New connection + first RPC per second (Go client loop), and the proxy's CPU per connection. */
export async function connRate(ctx: LoadContext, proxy: RunningProxy): Promise<ConnRateResult> {
  const { s } = ctx;
  const pid = proxy.proc?.pid;
  const cpu0 = pid === undefined ? 0 : cpuMicros(pid);
  const out = await runOk(ctx.cpus, ctx.bin.benchkit, [
    'connrate', '-target', proxy.target, '-c', String(s.connConcurrency), '-duration', `${s.connSeconds}s`, ...headerArgs(ctx, '-H'),
  ], (s.connSeconds + 30) * 1000);
  const cpu1 = pid === undefined ? 0 : cpuMicros(pid);
  const r = lastJson<{ connections: number; failed: number; rate: number; firstError?: string }>(out);
  if (r.connections === 0 || r.failed > r.connections * 0.001) {
    throw new Error(`connrate: ${r.connections} ok, ${r.failed} failed (${r.firstError})`);
  }
  return { connPerSec: r.rate, connections: r.connections, cpuUsPerConn: pid === undefined ? undefined : (cpu1 - cpu0) / r.connections };
}

/** The unary request body h2load sends: one gRPC frame. */
export function writeUnaryBody(path: string, data: Buffer): void {
  const message = Buffer.concat([Buffer.from([0x0a, data.length]), data]);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  writeFileSync(path, frame);
}
