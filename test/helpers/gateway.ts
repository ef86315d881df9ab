// Runs the real gateway (`node dist/cmd/fngate.js serve|local ...`, the built artifact the
// package ships) as a child process and waits for its readiness log line. Tests call stop()
// themselves (t.teardown).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const FNGATE_ENTRY = builtEntry();

/**
 * dist/cmd/fngate.js, refusing a build older than its sources: tests must measure what ships
 * (type stripping at run time would add its own memory and CPU), never yesterday's build.
 */
function builtEntry(): string {
  const stale: string[] = [];
  const visit = (dir: string): void => {
    for (const entry of readdirSync(join(REPO_ROOT, dir), { withFileTypes: true })) {
      const rel = join(dir, entry.name);
      if (entry.isDirectory()) visit(rel);
      else if (entry.name.endsWith('.ts')) {
        const built = join(REPO_ROOT, 'dist', rel.replace(/\.ts$/, '.js'));
        let builtAt = 0;
        try {
          builtAt = statSync(built).mtimeMs;
        } catch {
          // missing: stale
        }
        if (builtAt < statSync(join(REPO_ROOT, rel)).mtimeMs) stale.push(rel);
      }
    }
  };
  visit('cmd');
  visit('lib');
  if (stale.length > 0) {
    throw new Error(`dist/ is missing or older than ${stale.slice(0, 3).join(', ')}: run \`npm run build\` (make test does)`);
  }
  return join(REPO_ROOT, 'dist', 'cmd', 'fngate.js');
}

/** A sealed session id as the gateway hands it out (nvcf-reqid): base64url, its format byte (1 or 2) first. */
export const SESSION_ID = /^A[A-Za-z0-9_-]{80,}$/;

export type LogLine = Record<string, unknown>;

export interface GatewayProcess {
  readonly pid: number;
  /** `127.0.0.1:PORT` of each listener, from the readiness line. */
  readonly h2c: string;
  readonly tls: string | null;
  readonly admin: string;
  /** The KEDA scaler listener (--scaler-listen), or null. */
  readonly scaler: string | null;
  /** All stderr so far. */
  logs(): string;
  /** The JSON lines of stderr so far (other lines skipped). */
  logLines(): LogLine[];
  /** The first log line (already seen or coming) that `pred` accepts; rejects on timeout or exit. */
  waitForLog(pred: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** All stdout so far. */
  stdout(): string;
  /** Resolves once stdout matches; rejects on timeout or exit. */
  waitForStdout(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  /** Resident memory now (VmRSS) and at its peak (VmHWM), in bytes. */
  rssBytes(): number;
  peakRssBytes(): number;
  /** VmRSS summed over the process and its descendants (--workers). */
  treeRssBytes(): number;
  signal(sig: NodeJS.Signals): void;
  /** Settles when the process has exited and its output is read. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, SIGKILL after 5 s; resolves when it has exited. */
  stop(): Promise<void>;
}

export interface StartOpts {
  /** Added to the environment (inherited FNGATE_* variables are dropped). */
  env?: Record<string, string>;
  cwd?: string;
  /** Readiness timeout (default 20 s). */
  timeoutMs?: number;
  /** Script to run instead of cmd/fngate.ts (for the helpers' own tests). */
  entry?: string;
}

/** The admin port's /metrics text. */
export async function metricsText(gw: GatewayProcess): Promise<string> {
  return (await fetch(`http://${gw.admin}/metrics`)).text();
}

/** A gauge or counter value from /metrics (0 when the series is absent). */
export async function metric(gw: GatewayProcess, series: string): Promise<number> {
  const line = (await metricsText(gw)).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

export function startGateway(args: string[], opts: StartOpts = {}): Promise<GatewayProcess> {
  return startFngate('serve', args, opts);
}

/**
 * `fngate serve` on the Functions in `dir`/fns and the keys in `dir`/keys.yaml, with a TLS
 * listener on 127.0.0.1 (any port) serving `cert`; stopped at teardown. Throws when the
 * readiness line names no TLS listener.
 */
export async function startTlsGateway(
  t: { teardown(fn: () => unknown): void },
  dir: string,
  cert: { cert: string; key: string },
  extraArgs: string[] = [],
): Promise<GatewayProcess & { readonly tls: string }> {
  const gw = await startGateway([
    '--functions', join(dir, 'fns'),
    '--api-keys', join(dir, 'keys.yaml'),
    '--tls-listen', '127.0.0.1:0',
    '--tls-cert', cert.cert,
    '--tls-key', cert.key,
    ...extraArgs,
  ]);
  t.teardown(() => gw.stop());
  const tls = gw.tls;
  if (tls === null) throw new Error(`no TLS listener in the readiness line:\n${gw.logs()}`);
  return { ...gw, tls };
}

/** `fngate local`: the embedded default; its instructions are on stdout(). */
export function startLocal(args: string[] = [], opts: StartOpts = {}): Promise<GatewayProcess> {
  return startFngate('local', args, opts);
}

const hasFlag = (args: readonly string[], flag: string): boolean => args.some((a) => a === flag || a.startsWith(`${flag}=`));

async function startFngate(command: string, args: string[], opts: StartOpts): Promise<GatewayProcess> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('FNGATE_')) env[k] = v;
  Object.assign(env, opts.env);
  const defaults: string[] = [];
  if (!hasFlag(args, '--listen') && env['FNGATE_LISTEN'] === undefined) defaults.push('--listen', '127.0.0.1:0');
  if (!hasFlag(args, '--admin') && env['FNGATE_ADMIN'] === undefined) defaults.push('--admin', '127.0.0.1:0');

  const child = spawn(process.execPath, [opts.entry ?? FNGATE_ENTRY, command, ...defaults, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  const lines: LogLine[] = [];
  let partial = '';
  const listeners = new Set<() => void>(); // re-check waiters on output or exit
  const notify = (): void => {
    for (const l of [...listeners]) l();
  };
  child.stderr.setEncoding('utf8');
  child.stdout.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) {
      const line = parseLine(p);
      if (line !== undefined) lines.push(line);
    }
    notify();
  });
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
    notify();
  });
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      const line = parseLine(partial);
      if (line !== undefined) lines.push(line);
      done = true;
      notify();
      resolve({ code, signal });
    });
    child.once('error', (err) => {
      stderr += `spawn failed: ${err.message}\n`;
      done = true;
      notify();
      resolve({ code: null, signal: null });
    });
  });

  /** Resolves with `check()`'s first non-undefined value; rejects on timeout or exit. */
  const waitUntil = <T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const settle = (): void => {
        const value = check();
        if (value === undefined && !done) return;
        listeners.delete(settle);
        clearTimeout(timer);
        if (value !== undefined) resolve(value);
        else reject(new Error(`fngate exited before ${what}\n--- stderr ---\n${stderr}--- stdout ---\n${stdout}`));
      };
      const timer = setTimeout(() => {
        listeners.delete(settle);
        reject(new Error(`no ${what} within ${timeoutMs} ms\n--- stderr ---\n${stderr}--- stdout ---\n${stdout}`));
      }, timeoutMs);
      listeners.add(settle);
      settle();
    });

  const ready = await waitUntil(
    () => lines.find((l) => l['msg'] === 'fngate listening'),
    opts.timeoutMs ?? 20_000,
    'readiness line ("fngate listening")',
  ).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });

  const status = (field: string, pid = child.pid): number => {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };

  return {
    pid: child.pid ?? -1,
    h2c: String(ready['h2c']),
    tls: typeof ready['tls'] === 'string' ? ready['tls'] : null,
    admin: String(ready['admin']),
    scaler: typeof ready['scaler'] === 'string' ? ready['scaler'] : null,
    logs: () => stderr,
    logLines: () => [...lines],
    waitForLog: (pred, timeoutMs = 5000) => waitUntil(() => lines.find(pred), timeoutMs, 'matching log line'),
    stdout: () => stdout,
    waitForStdout: (pattern, timeoutMs = 5000) =>
      waitUntil(() => ((typeof pattern === 'string' ? stdout.includes(pattern) : pattern.test(stdout)) ? stdout : undefined), timeoutMs, `stdout matching ${String(pattern)}`),
    rssBytes: () => status('VmRSS'),
    peakRssBytes: () => status('VmHWM'),
    treeRssBytes: () =>
      descendants(child.pid ?? -1).reduce((sum, pid) => {
        try {
          return sum + status('VmRSS', pid);
        } catch {
          return sum; // exited meanwhile
        }
      }, 0),
    signal: (sig) => {
      child.kill(sig);
    },
    exited,
    stop: async () => {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** `pid` and every process below it, from /proc/PID/task/TID/children. */
function descendants(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue; // gone meanwhile
    }
    for (const tid of tasks) {
      try {
        for (const c of readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').split(' ')) if (c.trim() !== '') out.push(Number(c));
      } catch {
        // the thread ended
      }
    }
  }
  return out;
}

function parseLine(text: string): LogLine | undefined {
  if (!text.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as LogLine) : undefined;
  } catch {
    return undefined;
  }
}
