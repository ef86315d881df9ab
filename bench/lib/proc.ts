// Child processes of the benchmark (every one pinned with taskset, bounded in time, killed by
// its own pid on the way out) and what /proc says about them: CPU time, RSS, peak RSS.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

/** Every process this run started and has not seen exit; killed (by pid) on the way out. */
const live = new Set<ChildProcess>();

export function killAll(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }
}

export interface Pinning {
  /** CPU list for `taskset -c`, or undefined: no pinning (one-core machine). */
  readonly proxy: string | undefined;
  readonly load: string | undefined;
}

function pinned(cpus: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return cpus === undefined ? [cmd, [...args]] : ['taskset', ['-c', cpus, cmd, ...args]];
}

export interface Started {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything it wrote so far (capped), for error messages. */
  output(): string;
  /** Resolves when it exited (code or signal). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const OUTPUT_CAP = 256 * 1024;

/** Starts a long-running process (proxy, backend, idle holder). */
export function start(cpus: string | undefined, cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdin?: boolean } = {}): Started {
  const [file, argv] = pinned(cpus, cmd, args);
  const child = spawn(file, argv, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let out = '';
  const collect = (chunk: Buffer): void => {
    if (out.length < OUTPUT_CAP) out += chunk.toString('utf8');
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (err) => {
      out += `\nspawn ${cmd}: ${err.message}`;
      live.delete(child);
      resolve({ code: -1, signal: null });
    });
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  if (child.pid === undefined) {
    return { child, pid: -1, output: () => out, exited };
  }
  return { child, pid: child.pid, output: () => out, exited };
}

/** Waits until `test(output)` holds; throws with the output if it exits or `timeoutMs` passes. */
export async function waitForOutput(p: Started, test: (output: string) => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void p.exited.then(() => (exited = true));
  while (!test(p.output())) {
    if (exited) throw new Error(`${what} exited before it was ready:\n${tail(p.output())}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms:\n${tail(p.output())}`);
    await sleep(20);
  }
}

/** Waits until something accepts TCP connections on host:port. */
export async function waitForPort(p: Started, host: string, port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void p.exited.then(() => (exited = true));
  for (;;) {
    if (await canConnect(host, port)) return;
    if (exited) throw new Error(`${what} exited before it listened:\n${tail(p.output())}`);
    if (Date.now() > deadline) throw new Error(`${what} not listening on ${host}:${port} after ${timeoutMs} ms:\n${tail(p.output())}`);
    await sleep(50);
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when it is gone. */
export async function stop(p: Started, graceMs = 5000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion, killed after `timeoutMs` (then it throws). */
export async function run(cpus: string | undefined, cmd: string, args: readonly string[], timeoutMs: number, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const [file, argv] = pinned(cpus, cmd, args);
  const child = spawn(file, argv, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout.length < 4 * OUTPUT_CAP ? (stdout += c.toString('utf8')) : undefined));
  child.stderr.on('data', (c: Buffer) => (stderr.length < OUTPUT_CAP ? (stderr += c.toString('utf8')) : undefined));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const code = await new Promise<number | null>((resolve) => {
    child.once('error', (err) => {
      stderr += `spawn ${cmd}: ${err.message}`;
      resolve(-1);
    });
    child.once('close', (c) => resolve(c));
  });
  clearTimeout(timer);
  live.delete(child);
  if (timedOut) throw new Error(`${cmd} ${args.join(' ')}: killed after ${timeoutMs} ms\n${tail(stderr || stdout)}`);
  return { code, stdout, stderr };
}

/** run(), and it must exit 0; returns stdout. */
export async function runOk(cpus: string | undefined, cmd: string, args: readonly string[], timeoutMs: number): Promise<string> {
  const r = await run(cpus, cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}\n${tail(r.stderr || r.stdout)}`);
  return r.stdout;
}

/** The last JSON object line of a tool's stdout. */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  const last = lines[lines.length - 1];
  if (last === undefined) throw new Error(`no JSON result in output:\n${tail(stdout)}`);
  return JSON.parse(last) as T;
}

export function tail(text: string, lines = 25): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- /proc --------------------------------------------------------------------------

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** The fields of /proc/PID/stat after "(comm)": [0] is state (field 3). */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** The process and its descendants (nginx: master + worker). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const f = statFields(pid);
    if (!f) continue;
    const ppid = Number(f[1]);
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const out: number[] = [];
  const visit = (pid: number): void => {
    out.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return out;
}

/** utime + stime of the process tree (all threads), in microseconds. */
export function cpuMicros(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root)) {
    const f = statFields(pid);
    if (f) ticks += Number(f[11]) + Number(f[12]); // fields 14 and 15
  }
  return (ticks * 1e6) / ticksPerSecond();
}

/**
 * Jiffies of the CPUs in `cpus` (taskset's list: "1", "0,2", "2-3") from /proc/stat: busy
 * (everything but idle and iowait; stolen time counts as busy, the core was not free) and
 * total. Undefined when the list cannot be read or a CPU is missing.
 */
export function cpuJiffies(cpus: string): { busy: number; total: number } | undefined {
  const wanted = new Set<number>();
  for (const part of cpus.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    for (let c = from; c <= to; c++) wanted.add(c);
  }
  let busy = 0;
  let total = 0;
  let found = 0;
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (m === null || !wanted.has(Number(m[1]))) continue;
    const f = (m[2] as string).trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    const all = f.slice(0, 8).reduce((a, b) => a + b, 0);
    total += all;
    busy += all - (f[3] ?? 0) - (f[4] ?? 0);
    found++;
  }
  return found === wanted.size ? { busy, total } : undefined;
}

function statusKiB(pid: number, key: string): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Resident set of the process tree, KiB. */
export function rssKiB(root: number): number {
  return processTree(root).reduce((sum, pid) => sum + statusKiB(pid, 'VmRSS'), 0);
}

/** Peak resident set (VmHWM) of the process tree, KiB. */
export function peakRssKiB(root: number): number {
  return processTree(root).reduce((sum, pid) => sum + statusKiB(pid, 'VmHWM'), 0);
}

/** The open-files limit this process (and so its children) runs with. */
export function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[1] === 'unlimited' ? Infinity : Number(m?.[1] ?? 1024);
}

