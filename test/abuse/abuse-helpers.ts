// Shared by the abuse tests: one gateway with an Echo function and a key, the gateway
// process's resources (RSS, open file descriptors, CPU time, connection and stream gauges)
// before and after an attack, and a well-behaved bystander client whose held stream and
// calls must not notice the attack.
import type { Test } from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { closeServer, startEchoBackend } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient, holdStream } from '../helpers/echo-client.ts';
import { echoMethods } from '../helpers/echo-proto.ts';
import type { EchoClient, HeldStream, MetadataRecord } from '../helpers/echo-client.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import type { TestFunction } from '../helpers/files.ts';
import { metricsText, startGateway } from '../helpers/gateway.ts';
import type { GatewayProcess } from '../helpers/gateway.ts';
import { sleep } from '../helpers/wait.ts';
import { writeSessionKeys } from '../helpers/session-ids.ts';

export const FN = 'fn-abuse';
export const MiB = 1024 * 1024;

export interface AbuseSetup extends Fixtures {
  readonly gw: GatewayProcess;
}

export interface SetupOpts {
  /** Runs once the Echo backend is up, before the Functions are written (start other backends here). */
  before?: (echo: EchoBackend) => Promise<void>;
  /** The Functions (default: FN on the Echo backend). */
  functions?: (echo: EchoBackend) => TestFunction[];
  /** Where the Function and key files go (default: a fresh t.testdir()). */
  dir?: string;
}

export interface Fixtures {
  readonly echo: EchoBackend;
  readonly key: string;
  /** authorization + function-id of the Echo function. */
  readonly auth: { readonly authorization: string; readonly 'function-id': string };
  /** Holds fns/ (for --functions), keys.yaml (for --api-keys) and session.key. */
  readonly dir: string;
  /** --functions, --api-keys and --session-key-file for these files. */
  readonly args: string[];
  /** The sid inside an nvcf-reqid this gateway sent (tokens of one session may differ). */
  readonly sidOf: (token: unknown) => string;
}

/** An Echo backend (stopped in teardown), a Function on it and a key for it, as files. */
export async function writeFixtures(t: Test, opts: SetupOpts = {}): Promise<Fixtures> {
  const dir = opts.dir ?? t.testdir({});
  const echo = await startEchoBackend({ name: 'echo' });
  t.teardown(() => echo.stop(1000));
  await opts.before?.(echo);
  const fns = opts.functions?.(echo) ?? [{ name: 'abuse', functionId: FN, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [echo.address] }] }];
  writeFunctionsDir(join(dir, 'fns'), fns);
  const key = randomKey();
  writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'abuse', key, functions: '*' }]);
  const sessionKeys = writeSessionKeys(dir);
  const args = ['--functions', join(dir, 'fns'), '--api-keys', join(dir, 'keys.yaml'), '--session-key-file', sessionKeys.path];
  return { echo, key, auth: { authorization: `Bearer ${key}`, 'function-id': FN }, dir, args, sidOf: sessionKeys.sidOf };
}

/** The fixtures and a gateway on them (stopped in teardown). */
export async function setupGateway(t: Test, args: string[] = [], opts: SetupOpts = {}): Promise<AbuseSetup> {
  const fixtures = await writeFixtures(t, opts);
  const gw = await startGateway([...fixtures.args, ...args]);
  t.teardown(() => gw.stop());
  return { ...fixtures, gw };
}

/** Whether the process is still running (signal 0 checks it exists without touching it). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Open file descriptors of a process (sockets, pipes, files): its open handles as the kernel counts them. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** User + system CPU time of a process so far, in milliseconds. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat (utime, stime), here 0-based after the command name: 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms (CLK_TCK 100)
}

/** Sum of every series of a metric (all label sets) in the gateway's /metrics. */
export async function metricSum(gw: GatewayProcess, name: string): Promise<number> {
  let sum = 0;
  for (const line of (await metricsText(gw)).split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export interface Resources {
  rss: number;
  peakRss: number;
  fds: number;
  cpuMs: number;
  connections: number;
  activeStreams: number;
}

export async function resources(gw: GatewayProcess): Promise<Resources> {
  // The gauges first: the admin connection they open (kept alive) is then counted every time.
  const connections = await metricSum(gw, 'fngate_client_connections');
  const activeStreams = await metricSum(gw, 'fngate_rpc_active_streams');
  return { rss: gw.rssBytes(), peakRss: gw.peakRssBytes(), fds: fdCount(gw.pid), cpuMs: cpuMs(gw.pid), connections, activeStreams };
}

export const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;

export interface SettleOpts {
  /** How much the resident set may have grown over `before` once settled (default 64 MiB). */
  rssGrowth?: number;
  /** How much the peak resident set may exceed `before` during the attack (default 150 MiB). */
  peakGrowth?: number;
  /** Extra file descriptors allowed (default 4: lazily opened files, a re-dialled upstream). */
  fdSlack?: number;
  timeoutMs?: number;
}

/**
 * Waits until the gateway is back where `before` was (connections, active streams, open file
 * descriptors) and the backend has no stream open beyond `backendActive`, then asserts that and
 * that memory stayed bounded. Reports the numbers.
 */
export async function expectSettled(t: Test, gw: GatewayProcess, echo: EchoBackend, before: Resources, backendActive: number, opts: SettleOpts = {}): Promise<Resources> {
  const fdSlack = opts.fdSlack ?? 4;
  const until = Date.now() + (opts.timeoutMs ?? 10_000);
  let now = await resources(gw);
  for (let i = 0; i < 1000 && Date.now() < until; i++) {
    if (now.connections <= before.connections && now.activeStreams <= before.activeStreams && now.fds <= before.fds + fdSlack && echo.active <= backendActive) break;
    await sleep(100);
    now = await resources(gw);
  }
  t.equal(now.connections, before.connections, `client connections back to ${before.connections}`);
  t.equal(now.activeStreams, before.activeStreams, `active streams back to ${before.activeStreams}`);
  t.ok(now.fds <= before.fds + fdSlack, `open file descriptors back to ${before.fds} (+${fdSlack}): ${now.fds}`);
  t.equal(echo.active, backendActive, `backend streams back to ${backendActive}`);
  const rssGrowth = opts.rssGrowth ?? 64 * MiB;
  const peakGrowth = opts.peakGrowth ?? 150 * MiB;
  t.ok(now.rss - before.rss < rssGrowth, `RSS ${mib(before.rss)} -> ${mib(now.rss)} (growth under ${mib(rssGrowth)})`);
  t.ok(now.peakRss - before.rss < peakGrowth, `peak RSS ${mib(now.peakRss)} (under ${mib(before.rss + peakGrowth)})`);
  t.comment(`gateway: RSS ${mib(before.rss)} -> ${mib(now.rss)}, peak ${mib(now.peakRss)}, fds ${before.fds} -> ${now.fds}, CPU ${now.cpuMs - before.cpuMs} ms`);
  return now;
}

/**
 * A well-behaved client on its own connection: a server stream held open through the attack,
 * and unary calls that must keep answering promptly.
 */
export interface Bystander {
  readonly client: EchoClient;
  /** A unary call: OK within `maxMs`. */
  check(t: Test, what: string, maxMs?: number): Promise<void>;
  /** Cancels the held stream: it must have stayed open (CANCELLED by us, one reply). */
  finish(t: Test): Promise<void>;
}

export async function startBystander(t: Test, gw: GatewayProcess, auth: MetadataRecord): Promise<Bystander> {
  const client = echoClient(gw.h2c);
  t.teardown(() => client.close());
  const held: HeldStream = await holdStream(client, auth, 'bystander stream open');
  let finished = false;
  return {
    client,
    async check(t, what, maxMs = 2000) {
      const r = await client.unary(auth, {}, { deadlineMs: 10_000 });
      t.equal(r.status, 0, `bystander ${what}: OK (${r.details})`);
      t.ok(r.elapsedMs < maxMs, `bystander ${what}: answered in ${r.elapsedMs.toFixed(0)} ms`);
    },
    async finish(t) {
      if (finished) return;
      finished = true;
      const r = await held.cancel();
      t.equal(r.status, 1, 'the bystander stream stayed open until its client cancelled it');
      t.equal(r.replyCount, 1, 'the bystander stream lost nothing');
    },
  };
}

/** The function has no stream open any more (the bystander's included). */
export async function expectBackendIdle(t: Test, echo: EchoBackend): Promise<void> {
  await echo.waitFor(() => echo.active === 0, 5000).catch(() => {});
  t.equal(echo.active, 0, 'the function has no stream open');
}

/** No log line at level error: an attack is routine, not a gateway failure. */
export function expectNoErrorLogs(t: Test, gw: GatewayProcess): void {
  t.same(gw.logLines().filter((l) => l['level'] === 'error'), [], 'nothing logged at level error');
}

/** A gRPC message frame holding an EchoReply. */
export function replyFrame(backend: string, peer: string, metadata = ''): Buffer {
  const body = echoMethods.Unary.responseSerialize({ backend, peer, metadata, received_bytes: 0, received_messages: 1, payload: Buffer.alloc(0) });
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

export interface RawGrpcBackend {
  readonly address: string;
  /** Calls answered or open. */
  readonly calls: number;
  /** Calls whose stream is still open. */
  readonly open: number;
  /** Calls the caller reset with CANCEL before the answer was complete. */
  readonly cancelled: number;
  close(): Promise<void>;
}

/**
 * A minimal gRPC backend on raw node:http2 that takes no notice of grpc-timeout: each call gets
 * one EchoReply (its `metadata` is the grpc-timeout it received) after `x-sleep-ms`, then OK.
 */
export async function startRawGrpcBackend(): Promise<RawGrpcBackend> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  let calls = 0;
  let open = 0;
  let cancelled = 0;
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    calls++;
    open++;
    stream.on('close', () => {
      open--;
      if (stream.rstCode === http2.constants.NGHTTP2_CANCEL) cancelled++;
    });
    stream.on('error', () => {});
    stream.resume();
    const timeout = headers['grpc-timeout'];
    const reply = replyFrame('raw', '', `grpc-timeout: ${typeof timeout === 'string' ? timeout : ''}`);
    const answer = (): void => {
      if (stream.closed || stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(reply);
    };
    const sleepMs = Number(headers['x-sleep-ms'] ?? 0);
    if (sleepMs > 0) setTimeout(answer, sleepMs);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    get calls() {
      return calls;
    },
    get open() {
      return open;
    },
    get cancelled() {
      return cancelled;
    },
    close: () => closeServer(server, sessions),
  };
}
