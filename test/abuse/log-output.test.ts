// Log output that cannot be written (faults: log output on a full disk). The gateway's
// job is calls, not logs: when its log destinations fail or stop reading, calls go on, memory
// stays bounded and the process stays up.
//   - --access-log /dev/full: every write fails (ENOSPC); lines are dropped and counted.
//   - stderr a pipe nobody reads (a stuck log collector), with the access log on it: writes
//     back up; the access log stops at its 8 MiB backlog and drops, calls go on.
//   - stderr a pipe whose reader went away (EPIPE): calls go on.
//   - stderr a file on a full disk (/dev/full): the gateway starts and serves; lines are lost.
import t from 'tap';
import type { Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { deadPort } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import type { CallResult } from '../helpers/echo-client.ts';
import { FNGATE_ENTRY, metric, REPO_ROOT } from '../helpers/gateway.ts';
import { waitForAsync } from '../helpers/wait.ts';
import { expectNoErrorLogs, expectSettled, MiB, mib, resources, setupGateway, writeFixtures } from './abuse-helpers.ts';

/** Runs `n` calls, `concurrency` at a time, on `clients` (round robin); returns the status counts. */
async function load(clients: ReturnType<typeof echoClient>[], n: number, concurrency: number, call: (c: ReturnType<typeof echoClient>) => Promise<CallResult>): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = 0; i < n && next < n; i++) {
      const c = clients[next++ % clients.length] as ReturnType<typeof echoClient>;
      const r = await call(c);
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return statuses;
}

interface Spawned {
  readonly child: ChildProcess;
  readonly h2c: string;
  readonly admin: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `fngate serve` with stderr going where the test says (the helpers' startGateway always reads
 * it); ready once /healthz answers. Stopped in teardown.
 */
async function spawnGateway(t: Test, args: string[], stderr: 'pipe' | number): Promise<Spawned> {
  const [h2cPort, adminPort] = [await deadPort(), await deadPort()];
  const h2c = `127.0.0.1:${h2cPort}`;
  const admin = `127.0.0.1:${adminPort}`;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('FNGATE_')) env[k] = v;
  const child = spawn(process.execPath, [FNGATE_ENTRY, 'serve', '--listen', h2c, '--admin', admin, ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'ignore', stderr] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  t.teardown(async () => {
    if (gone) return;
    child.kill('SIGKILL');
    await exited;
  });
  await waitForAsync(async () => gone || (await fetch(`http://${admin}/healthz`).then((r) => r.ok, () => false)), 10_000, 'gateway up');
  return { child, h2c, admin, exited };
}

t.test('--access-log /dev/full: calls go on, the lines are dropped and counted', async (t) => {
  const { gw, echo, auth } = await setupGateway(t, ['--access-log', '/dev/full']);
  const before = await resources(gw);
  const clients = Array.from({ length: 4 }, () => echoClient(gw.h2c));
  t.teardown(() => clients.forEach((c) => c.close()));
  const statuses = await load(clients, 1000, 50, (c) => c.unary(auth));
  t.same([...statuses], [[0, 1000]], "1000 calls, all OK");
  await waitForAsync(async () => (await metric(gw, 'fngate_access_log_dropped_total')) > 0, 5000, 'drops counted').catch((err: Error) => t.fail(err.message));
  t.ok((await metric(gw, 'fngate_access_log_dropped_total')) > 0, `fngate_access_log_dropped_total ${await metric(gw, 'fngate_access_log_dropped_total')}`);
  t.doesNotThrow(() => process.kill(gw.pid, 0), 'the gateway is up');
  t.equal((await fetch(`http://${gw.admin}/readyz`)).status, 200, 'and ready');
  clients.forEach((c) => c.close());
  await expectSettled(t, gw, echo, before, 0);
  expectNoErrorLogs(t, gw);
});

/** VmRSS / VmHWM of a process, in bytes. */
function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

const metricOf = async (admin: string, name: string): Promise<number> =>
  Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(`http://${admin}/metrics`)).text())?.[1] ?? 0);

/**
 * `n` refused calls over raw HTTP/2 (4 connections, `concurrency` streams at a time): a 250-byte
 * :path and a 256-character function-id, so each access log line is about 900 bytes. Resolves
 * with the grpc-status counts.
 */
async function refusedLoad(address: string, auth: Record<string, string>, n: number, concurrency: number): Promise<Map<string, number>> {
  const sessions = Array.from({ length: 4 }, () => http2.connect(`http://${address}`));
  for (const s of sessions) s.on('error', () => {});
  const headers = { ':method': 'POST', ':path': `/${'p'.repeat(249)}`, 'content-type': 'application/grpc', te: 'trailers', ...auth, 'function-id': 'x'.repeat(256) };
  const statuses = new Map<string, number>();
  let next = 0;
  const one = (session: http2.ClientHttp2Session): Promise<void> =>
    new Promise((resolve) => {
      const req = session.request(headers, { endStream: true });
      let status = 'none';
      req.on('response', (h) => {
        status = String(h['grpc-status'] ?? 'none');
      });
      req.on('error', () => {});
      req.resume();
      req.on('close', () => {
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        resolve();
      });
    });
  const lane = async (i: number): Promise<void> => {
    const session = sessions[i % sessions.length] as http2.ClientHttp2Session;
    while (next < n) {
      next++;
      await one(session);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => lane(i)));
  for (const s of sessions) s.close();
  return statuses;
}

t.test('stderr is a pipe nobody reads, with the access log on it: calls go on, memory bounded', async (t) => {
  const N = 16_000; // about 14 MiB of access log; the backlog limit is 8 MiB

  // The control: the same load on a gateway whose stderr is read.
  const control = await setupGateway(t, ['--access-log', 'stderr']);
  const controlBefore = control.gw.rssBytes();
  const controlStarted = performance.now();
  t.same([...(await refusedLoad(control.gw.h2c, control.auth, N, 100))], [['3', N]], `control: ${N} refused calls answered INVALID_ARGUMENT`);
  const controlTook = performance.now() - controlStarted;
  const controlGrowth = control.gw.peakRssBytes() - controlBefore;
  await control.gw.stop();

  // Nobody ever reads this one's stderr: the pipe (64 KiB) fills with the first lines.
  const gw = await spawnGateway(t, [...control.args, '--access-log', 'stderr'], 'pipe');
  const pid = gw.child.pid ?? 0;
  const rssBefore = procStatus(pid, 'VmRSS');
  const started = performance.now();
  t.same([...(await refusedLoad(gw.h2c, control.auth, N, 100))], [['3', N]], `stuck stderr: ${N} refused calls answered INVALID_ARGUMENT, none hung`);
  const took = performance.now() - started;
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  const good = await load([c], 200, 20, (x) => x.unary(control.auth, {}, { deadlineMs: 10_000 }));
  t.same([...good], [[0, 200]], 'good calls after that: OK');
  const dropped = await metricOf(gw.admin, 'fngate_access_log_dropped_total');
  t.ok(dropped > 0, `the access log dropped ${dropped} lines instead of holding them`);
  const growth = procStatus(pid, 'VmHWM') - rssBefore;
  t.comment(`peak RSS growth: ${mib(growth)} with stderr stuck (${took.toFixed(0)} ms), ${mib(controlGrowth)} with stderr read (${controlTook.toFixed(0)} ms)`);
  t.ok(growth < controlGrowth + 48 * MiB, 'memory bounded: about what the same load costs with stderr read, plus the 8 MiB backlog');
  t.equal(gw.child.exitCode, null, 'the gateway is up');
});

t.test('stderr is a pipe whose reader went away (EPIPE): the gateway serves on', async (t) => {
  const { auth, args } = await writeFixtures(t);
  const gw = await spawnGateway(t, [...args, '--access-log', 'stderr'], 'pipe');
  gw.child.stderr?.destroy(); // the log collector is gone
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  const statuses = await load([c], 200, 10, (x) => x.unary(auth, {}, { deadlineMs: 5000 }));
  t.same([...statuses], [[0, 200]], '200 calls: OK');
  // Their log lines' writes failed before the gateway could answer anything after them.
  const later = await c.unary(auth, {}, { deadlineMs: 5000 });
  t.equal(later.status, 0, `a call after them: OK (${later.details})`);
  t.equal(gw.child.exitCode, null, `the gateway is up (exit code ${gw.child.exitCode})`);
});

// When stderr is a file, Node writes it synchronously; a failed write (ENOSPC) is an 'error'
// event on process.stderr, which cmd/fngate.ts listens for, so the line is dropped, not fatal.

t.test('stderr is a file on a full disk (/dev/full): the gateway starts and serves', async (t) => {
  const { auth, args } = await writeFixtures(t);
  const full = openSync('/dev/full', 'w');
  t.teardown(() => closeSync(full));
  const gw = await spawnGateway(t, args, full);
  t.equal(gw.child.exitCode, null, `the gateway is up (exit code ${gw.child.exitCode})`);
  if (gw.child.exitCode !== null) return;
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  t.equal((await c.unary(auth, {}, { deadlineMs: 5000 })).status, 0, 'a call: OK');
});
