// Sessions (docs/reference.md, Sessions) through the real gateway: pinning of a client connection
// to one endpoint, least-loaded placement, maxSessionsPerEndpoint, resume by nvcf-reqid
// (header and cookie) within --session-linger, endpoint removal, promotion, and the
// session's upstream connection closing with the client's.
import t from 'tap';
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { ServerHttp2Session } from 'node:http2';
import { join } from 'node:path';
import { closeServer, startEchoBackend } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import type { CallResult, EchoClient, MetadataRecord } from '../helpers/echo-client.ts';
import { echoMethods, ECHO_PATHS } from '../helpers/echo-proto.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import type { TestFunction } from '../helpers/files.ts';
import { metric, metricsText, startGateway, SESSION_ID } from '../helpers/gateway.ts';
import type { GatewayProcess, LogLine } from '../helpers/gateway.ts';
import { grpcFrame } from '../helpers/http2-raw.ts';
import { SessionKeyRing } from '../../lib/sessions/session-token.ts';
import { runPythonClient } from '../helpers/python.ts';
import type { PyCall } from '../helpers/python.ts';
import { sleep, waitFor, waitForAsync } from '../helpers/wait.ts';

const NOT_FOUND = 5;
const RESOURCE_EXHAUSTED = 8;
const NO_SESSION = 'no existing session found';
const LINGER_MS = 2000;
const SESSION_SECRET = randomBytes(32).toString('hex');
const SESSION_KEYS = SessionKeyRing.fromSecrets([SESSION_SECRET]);

/** Enough of a tap Test to register cleanups. */
interface Teardown {
  teardown(fn: () => unknown): void;
  testdir(files: Record<string, string>): string;
}

interface Env {
  gw: GatewayProcess;
  /** The --functions directory. */
  dir: string;
  key: string;
  backends: EchoBackend[];
  /** A new grpc-js channel (its own connection) to the gateway, closed at teardown. */
  client(): EchoClient;
  /** authorization + function-id (+ extra) metadata. */
  md(functionId: string, extra?: MetadataRecord): MetadataRecord;
  /** Python client args: target, authorization, function-id. */
  py(functionId: string): string[];
  /** Rewrites the Function files; resolves once the gateway has loaded `name`'s new file. */
  rewrite(functions: TestFunction[], name: string): Promise<void>;
  /** Live sessions the gateway holds on `address` (admin /metrics). */
  sessionsOn(address: string): Promise<number>;
}

/**
 * Starts `names.length` Echo backends and the gateway with the Functions `functions(backends)`
 * builds. --idle-timeout is long on purpose: an idle close ends sessions, which these tests
 * must control themselves.
 */
async function setup(t: Teardown, names: string[], functions: (b: EchoBackend[]) => TestFunction[], extra: string[] = []): Promise<Env> {
  const dir = t.testdir({});
  const backends = await Promise.all(names.map((name) => startEchoBackend({ name })));
  const clients: EchoClient[] = [];
  let gw: GatewayProcess | undefined;
  t.teardown(async () => {
    for (const c of clients) c.close();
    await gw?.stop();
    await Promise.all(backends.map((b) => b.stop(1000)));
  });
  const key = randomKey();
  const keysFile = join(dir, 'keys.yaml');
  writeKeysFile(keysFile, [{ name: 'tester', key, functions: '*' }]);
  const fnDir = join(dir, 'functions');
  writeFunctionsDir(fnDir, functions(backends));
  const sessionKeyFile = join(dir, 'session.key');
  writeFileSync(sessionKeyFile, `${SESSION_SECRET}\n`);
  gw = await startGateway([
    '--session-key-file', sessionKeyFile,
    '--functions', fnDir,
    '--api-keys', keysFile,
    '--session-linger', `${LINGER_MS / 1000}s`,
    '--idle-timeout', '60s',
    '--drain-timeout', '5s',
    ...extra,
  ]);
  const running = gw;
  const loaded = (file: string) => (l: LogLine): boolean => l['msg'] === 'functions file loaded' && l['file'] === file;
  return {
    gw: running,
    dir: fnDir,
    key,
    backends,
    client() {
      const c = echoClient(running.h2c);
      clients.push(c);
      return c;
    },
    md: (functionId, more = {}) => ({ authorization: `Bearer ${key}`, 'function-id': functionId, ...more }),
    py: (functionId) => ['--target', running.h2c, '-H', `authorization=Bearer ${key}`, '-H', `function-id=${functionId}`],
    async rewrite(fns, name) {
      const file = join(fnDir, `${name}.yaml`);
      const before = running.logLines().filter(loaded(file)).length;
      writeFunctionsDir(fnDir, fns);
      await waitFor(() => running.logLines().filter(loaded(file)).length > before, 10_000, `gateway reloading ${file}`);
    },
    async sessionsOn(address) {
      const text = await metricsText(running);
      const m = new RegExp(`^fngate_endpoint_sessions\\{endpoint="${address.replace(/[.]/g, '\\.')}"\\} (\\d+)$`, 'm').exec(text);
      return m === null ? 0 : Number(m[1]);
    },
  };
}

/** The session id (nvcf-reqid) a response carried: what a client sends back to resume. */
const reqid = (r: CallResult): string | undefined => (typeof r.initial['nvcf-reqid'] === 'string' ? r.initial['nvcf-reqid'] : undefined);
/**
 * The session an id names (its sid). Ids are resealed as they age, so "the same session" is
 * the same sid, not always the same id; the tests share the gateway's key to read it.
 */
const sidOf = (token: string | undefined): string | undefined => (token === undefined ? undefined : (SESSION_KEYS.open(token)?.sid ?? `not a session id: ${token}`));
const sess = (r: CallResult): string | undefined => sidOf(reqid(r));
const summary = (r: CallResult): string => `status ${r.status} ${JSON.stringify(r.details)} backend ${r.reply?.backend ?? '-'} reqid ${reqid(r) ?? '-'}`;
const fn = (name: string, functionId: string, endpoints: string[], more: Partial<TestFunction> = {}): TestFunction => ({
  name,
  functionId,
  activeVersion: 'v1',
  versions: [{ versionId: 'v1', endpoints }],
  ...more,
});
const addresses = (bs: EchoBackend[]): string[] => bs.map((b) => b.address);

t.test('50 unary calls on one grpc-js channel: one backend, one session id, one upstream connection', async (t) => {
  const env = await setup(t, ['b0', 'b1', 'b2', 'b3'], (b) => [fn('pin', 'fn-pin', addresses(b))]);
  const c = env.client();
  const results: CallResult[] = [];
  for (let i = 0; i < 50; i++) results.push(await c.unary(env.md('fn-pin')));
  t.same(results.filter((r) => r.status !== 0).map(summary), [], 'every call OK');
  const served = new Set(results.map((r) => r.reply?.backend));
  t.equal(served.size, 1, `one backend served all: ${[...served].join(',')}`);
  t.equal(new Set(results.map(sess)).size, 1, 'one session (nvcf-reqid)');
  t.match(reqid(results[0] as CallResult), SESSION_ID, 'a session id');
  const backend = env.backends.find((b) => served.has(b.name));
  t.equal(backend?.calls, 50, 'that backend saw all 50 calls');
  t.equal(backend?.peers.size, 1, 'over exactly one upstream connection');
  t.equal(env.backends.reduce((n, b) => n + b.calls, 0), 50, 'no other backend saw a call');
});

t.test('50 unary calls on one Python channel: one backend, one session id, one upstream connection', async (t) => {
  const env = await setup(t, ['b0', 'b1', 'b2', 'b3'], (b) => [fn('pin', 'fn-pin', addresses(b))]);
  const out = await runPythonClient([...env.py('fn-pin'), 'unary', '--calls', '50']);
  t.equal(out.calls.length, 50);
  t.same(out.calls.filter((c) => c.code !== 'OK').map((c) => `${c.code} ${c.details}`), [], 'every call OK');
  const served = new Set(out.calls.map((c) => c.backend));
  t.equal(served.size, 1, `one backend served all: ${[...served].join(',')}`);
  t.equal(new Set(out.calls.map((c) => sidOf(c.initial_metadata['nvcf-reqid']))).size, 1, 'one session (nvcf-reqid)');
  t.match(out.calls[0]?.initial_metadata['nvcf-reqid'], SESSION_ID);
  const backend = env.backends.find((b) => served.has(b.name));
  t.equal(backend?.calls, 50);
  t.equal(backend?.peers.size, 1, 'over exactly one upstream connection');
  t.equal(env.backends.reduce((n, b) => n + b.calls, 0), 50);
});

/** Per backend: the distinct session ids it served; asserts per channel: one id, distinct across channels. */
function checkSpread(
  t: Test,
  env: Env,
  perChannel: Array<Array<{ ok: boolean; backend: string | null | undefined; id: string | undefined }>>,
): void {
  const channelIds = perChannel.map((calls, i) => {
    t.same(calls.filter((c) => !c.ok), [], `channel ${i}: every call OK`);
    const ids = new Set(calls.map((c) => c.id));
    const backends = new Set(calls.map((c) => c.backend));
    t.equal(ids.size, 1, `channel ${i}: one session id`);
    t.equal(backends.size, 1, `channel ${i}: one backend`);
    return [...ids][0];
  });
  t.equal(new Set(channelIds).size, perChannel.length, 'every channel got its own session id');
  const byBackend = new Map<string, Set<string | undefined>>();
  for (const calls of perChannel) {
    for (const c of calls) {
      const set = byBackend.get(String(c.backend)) ?? new Set();
      set.add(c.id);
      byBackend.set(String(c.backend), set);
    }
  }
  for (const b of env.backends) {
    t.equal(byBackend.get(b.name)?.size ?? 0, 5, `${b.name}: 5 sessions`);
    t.equal(b.peers.size, 5, `${b.name}: one upstream connection per session`);
  }
}

t.test('20 grpc-js channels: sessions spread by fewest sessions, 5 per backend', async (t) => {
  const env = await setup(t, ['b0', 'b1', 'b2', 'b3'], (b) => [fn('pin', 'fn-pin', addresses(b))]);
  const clients = Array.from({ length: 20 }, () => env.client());
  const perChannel: CallResult[][] = clients.map(() => []);
  // Every channel stays open until the end, so no session ends and frees its endpoint.
  for (let round = 0; round < 3; round++) {
    for (const [i, c] of clients.entries()) perChannel[i]?.push(await c.unary(env.md('fn-pin')));
  }
  checkSpread(t, env, perChannel.map((calls) => calls.map((r) => ({ ok: r.status === 0, backend: r.reply?.backend, id: sess(r) }))));
});

t.test('20 Python channels: sessions spread by fewest sessions, 5 per backend', async (t) => {
  const env = await setup(t, ['b0', 'b1', 'b2', 'b3'], (b) => [fn('pin', 'fn-pin', addresses(b))]);
  const out = await runPythonClient([...env.py('fn-pin'), 'channels', '--channels', '20', '--calls-per-channel', '3']);
  t.equal(out.calls.length, 60);
  const perChannel: PyCall[][] = Array.from({ length: 20 }, () => []);
  for (const c of out.calls) perChannel[c.channel]?.push(c);
  checkSpread(t, env, perChannel.map((calls) => calls.map((c) => ({ ok: c.code === 'OK', backend: c.backend, id: sidOf(c.initial_metadata['nvcf-reqid']) }))));
});

t.test('another function on the same connection is another session', async (t) => {
  const env = await setup(t, ['b0', 'b1'], (b) => [fn('alpha', 'fn-alpha', addresses(b)), fn('beta', 'fn-beta', addresses(b))]);
  const c = env.client();
  const a1 = await c.unary(env.md('fn-alpha'));
  const b1 = await c.unary(env.md('fn-beta'));
  t.equal(a1.status, 0, summary(a1));
  t.equal(b1.status, 0, summary(b1));
  t.match(reqid(a1), SESSION_ID);
  t.match(reqid(b1), SESSION_ID);
  t.not(sess(b1), sess(a1), 'a different nvcf-reqid');
  t.equal(a1.reply?.backend, 'b0');
  t.equal(b1.reply?.backend, 'b1', 'b0 already holds a session: the new one goes to the endpoint with fewer');
  for (let i = 0; i < 5; i++) {
    const a = await c.unary(env.md('fn-alpha'));
    const b = await c.unary(env.md('fn-beta'));
    t.match([a.status, a.reply?.backend, sess(a)], [0, 'b0', sess(a1)], `round ${i}: alpha stays pinned`);
    t.match([b.status, b.reply?.backend, sess(b)], [0, 'b1', sess(b1)], `round ${i}: beta stays pinned`);
  }
  t.equal(env.backends[0]?.peers.size, 1, 'one upstream connection per session');
  t.equal(env.backends[1]?.peers.size, 1);
});

t.test('maxSessionsPerEndpoint: 1 with 2 endpoints', async (t) => {
  const env = await setup(t, ['b0', 'b1'], (b) => [fn('capped', 'fn-capped', addresses(b), { maxSessionsPerEndpoint: 1 })]);
  const [c1, c2, c3] = [env.client(), env.client(), env.client()];
  const r1 = await c1.unary(env.md('fn-capped'));
  const r2 = await c2.unary(env.md('fn-capped'));
  t.match([r1.status, r1.reply?.backend], [0, 'b0'], summary(r1));
  t.match([r2.status, r2.reply?.backend], [0, 'b1'], summary(r2));
  const r3 = await c3.unary(env.md('fn-capped'));
  t.equal(r3.status, RESOURCE_EXHAUSTED, `third connection: ${summary(r3)}`);
  t.equal(r3.reply, undefined);
  t.equal(reqid(r3), undefined, 'no session, no session id');
  // Both sessions are still there: their connections keep working.
  t.match([(await c1.unary(env.md('fn-capped'))).reply?.backend, (await c2.unary(env.md('fn-capped'))).reply?.backend], ['b0', 'b1']);
  t.equal((await c3.unary(env.md('fn-capped'))).status, RESOURCE_EXHAUSTED, 'still full');

  c1.close();
  // The slot is freed once the gateway sees the connection close: poll a new connection.
  const c4 = env.client();
  const failures: number[] = [];
  let r4 = await c4.unary(env.md('fn-capped'));
  const until = Date.now() + 5000;
  while (r4.status !== 0 && Date.now() < until) {
    failures.push(r4.status);
    await sleep(20);
    r4 = await c4.unary(env.md('fn-capped'));
  }
  t.equal(r4.status, 0, `new connection after c1 closed: ${summary(r4)}`);
  t.equal(r4.reply?.backend, 'b0', 'on the freed endpoint');
  t.not(sess(r4), sess(r1), 'a new session');
  t.ok(failures.every((s) => s === RESOURCE_EXHAUSTED), `only RESOURCE_EXHAUSTED until then: ${failures.join(',')}`);
  t.equal((await c3.unary(env.md('fn-capped'))).status, RESOURCE_EXHAUSTED, 'full again');
});

t.test('resume by nvcf-reqid (header and cookie), within and after --session-linger', async (t) => {
  const env = await setup(t, ['b0', 'b1', 'b2'], (b) => [fn('alpha', 'fn-alpha', addresses(b)), fn('beta', 'fn-beta', addresses(b))]);
  const b0 = env.backends[0] as EchoBackend;
  const c1 = env.client();
  const first = await c1.unary(env.md('fn-alpha'));
  t.match([first.status, first.reply?.backend], [0, 'b0'], summary(first));
  const id = reqid(first) ?? '';
  t.match(id, SESSION_ID);

  // While live: a new connection (which would otherwise go to b1, the least loaded) resumes it.
  const c2 = env.client();
  const live = await c2.unary(env.md('fn-alpha', { 'nvcf-reqid': id }));
  t.match([live.status, live.reply?.backend, sess(live)], [0, 'b0', sidOf(id)], `resume while live: ${summary(live)}`);
  const again = await c2.unary(env.md('fn-alpha'));
  t.match([again.status, again.reply?.backend, sess(again)], [0, 'b0', sidOf(id)], 'later calls of that connection stay on it');

  // The cookie form, as a client that keeps the Set-Cookie would send it.
  const c3 = env.client();
  const cookie = await c3.unary(env.md('fn-alpha', { cookie: `nvcf-request-id=${id}` }));
  t.match([cookie.status, cookie.reply?.backend, sess(cookie)], [0, 'b0', sidOf(id)], `cookie: ${summary(cookie)}`);
  const c3b = env.client();
  const cookieAmong = await c3b.unary(env.md('fn-alpha', { cookie: `theme=dark; nvcf-request-id=${id}; other=1` }));
  t.match([cookieAmong.status, cookieAmong.reply?.backend, sess(cookieAmong)], [0, 'b0', sidOf(id)], `cookie among others: ${summary(cookieAmong)}`);

  // A made-up id, and an id of another function.
  const madeUp = await env.client().unary(env.md('fn-alpha', { 'nvcf-reqid': '5d0c7a36-8a55-4a8e-9a51-000000000000' }));
  t.match([madeUp.status, madeUp.details], [NOT_FOUND, NO_SESSION], `made-up id: ${summary(madeUp)}`);
  const madeUpCookie = await env.client().unary(env.md('fn-alpha', { cookie: 'nvcf-request-id=not-a-session' }));
  t.match([madeUpCookie.status, madeUpCookie.details], [NOT_FOUND, NO_SESSION], `made-up cookie: ${summary(madeUpCookie)}`);
  const beta = await env.client().unary(env.md('fn-beta'));
  t.equal(beta.status, 0, summary(beta));
  const betaId = reqid(beta) ?? '';
  t.match(betaId, SESSION_ID);
  t.not(betaId, id);
  const crossed = await env.client().unary(env.md('fn-alpha', { 'nvcf-reqid': betaId }));
  t.match([crossed.status, crossed.details], [NOT_FOUND, NO_SESSION], `id of another function: ${summary(crossed)}`);
  const crossedBack = await env.client().unary(env.md('fn-beta', { 'nvcf-reqid': id }));
  t.match([crossedBack.status, crossedBack.details], [NOT_FOUND, NO_SESSION], `and the other way: ${summary(crossedBack)}`);

  // Every connection bound to the session closes: it ends, and lingers. (The session gauge is
  // how the test knows the gateway has seen the closes; check it counts this session first.)
  const gauge = await env.sessionsOn(b0.address);
  t.ok(gauge >= 1, `the gateway's session gauge counts the live session on b0 (${gauge})`);
  c1.close();
  c2.close();
  c3.close();
  c3b.close();
  await waitForAsync(async () => (await env.sessionsOn(b0.address)) === 0 && b0.active === 0, 5000, 'gateway saw the connections close');
  const c4 = env.client();
  const resumed = await c4.unary(env.md('fn-alpha', { 'nvcf-reqid': id }));
  t.match([resumed.status, resumed.reply?.backend, sess(resumed)], [0, 'b0', sidOf(id)], `resume after close, within the linger: ${summary(resumed)}`);
  c4.close();
  await waitForAsync(async () => (await env.sessionsOn(b0.address)) === 0, 5000, 'gateway saw c4 close');
  const py = await runPythonClient([...env.py('fn-alpha'), '-H', `nvcf-reqid=${id}`, 'unary', '--calls', '3']);
  t.same(py.calls.map((c) => [c.code, c.backend, sidOf(c.initial_metadata['nvcf-reqid'])]), Array.from({ length: 3 }, () => ['OK', 'b0', sidOf(id)]), 'Python resumes it too');
  await waitForAsync(async () => (await env.sessionsOn(b0.address)) === 0, 5000, 'gateway saw the Python channel close');

  // Nothing observable tells when a lingering session expires, and a successful resume would
  // restart its linger: wait the linger out, and the id's own validity (linger plus the reseal
  // period, max(linger, 1 s), from when it was sealed), plus the gateway's 1 s sweep.
  await sleep(LINGER_MS + Math.max(LINGER_MS, 1000) + 1500);
  const expired = await env.client().unary(env.md('fn-alpha', { 'nvcf-reqid': id }));
  t.match([expired.status, expired.details], [NOT_FOUND, NO_SESSION], `after the linger: ${summary(expired)}`);
  const expiredCookie = await env.client().unary(env.md('fn-alpha', { cookie: `nvcf-request-id=${id}` }));
  t.match([expiredCookie.status, expiredCookie.details], [NOT_FOUND, NO_SESSION], `cookie after the linger: ${summary(expiredCookie)}`);
  const pyExpired = await runPythonClient([...env.py('fn-alpha'), '-H', `nvcf-reqid=${id}`, 'unary']);
  t.match(pyExpired.calls[0], { code: 'NOT_FOUND', code_value: NOT_FOUND, details: NO_SESSION, backend: null }, 'Python after the linger');
});

t.test('pinned endpoint removed: the open stream runs on, the connection gets a GOAWAY, the next RPC gets a new endpoint and session id', async (t) => {
  const env = await setup(t, ['b0', 'b1', 'b2'], (b) => [fn('moving', 'fn-moving', addresses(b))]);
  const [b0, b1, b2] = env.backends as [EchoBackend, EchoBackend, EchoBackend];
  const c = env.client();
  const first = await c.unary(env.md('fn-moving'));
  t.match([first.status, first.reply?.backend], [0, 'b0'], summary(first));
  const oldId = reqid(first) ?? '';

  let replies = 0;
  const stream = c.serverStream(env.md('fn-moving', { 'x-echo-sleep-ms': '150' }), { count: 20 }, { onReply: () => void replies++ });
  await waitFor(() => replies >= 1, 5000, 'first reply of the stream');
  await env.rewrite([fn('moving', 'fn-moving', [b1.address, b2.address])], 'moving');
  t.ok(replies < 20, `the stream is still open when the change applies (${replies}/20 replies)`);

  const next = await c.unary(env.md('fn-moving'));
  t.equal(next.status, 0, summary(next));
  t.ok(next.reply?.backend === 'b1' || next.reply?.backend === 'b2', `next RPC on another endpoint: ${summary(next)}`);
  t.match(reqid(next), SESSION_ID);
  t.not(sess(next), sidOf(oldId), 'with a new session id');
  t.ok(replies < 20, `... while the old stream is still open (${replies}/20 replies)`);

  const done = await stream;
  t.equal(done.status, 0, `the old stream completed: ${summary(done)}`);
  t.equal(done.replyCount, 20);
  t.same(new Set(done.replies.map((r) => r.backend)), new Set(['b0']), 'all of it on the old endpoint');
  t.equal(sess(done), sidOf(oldId), 'under the old session id');
  t.equal(b0.cancelled, 0, 'nothing cut on the old endpoint');

  // The client connection pinned to b0 was sent a GOAWAY: grpc-js went on over a new one.
  t.equal(await metric(env.gw, 'fngate_connections_closed_by_gateway_total{reason="endpoint_gone"}'), 1, 'one GOAWAY for the removed endpoint');
  const later = await c.unary(env.md('fn-moving'));
  const again = await c.unary(env.md('fn-moving'));
  t.match([later.status, again.status], [0, 0], `${summary(later)} / ${summary(again)}`);
  t.ok(later.reply?.backend === 'b1' || later.reply?.backend === 'b2', 'on a ready endpoint');
  t.match([again.reply?.backend, sess(again)], [later.reply?.backend, sess(later)], 'and pinned there');
  t.equal(b0.calls, 2, 'the removed endpoint got no new call');
});

t.test('promotion: activeVersion v1 -> v2 affects new sessions only', async (t) => {
  const fnV = (active: string, b: EchoBackend[]): TestFunction => ({
    name: 'promo',
    functionId: 'fn-promo',
    activeVersion: active,
    versions: [
      { versionId: 'v1', endpoints: [b[0]?.address ?? '', b[1]?.address ?? ''] },
      { versionId: 'v2', endpoints: [b[2]?.address ?? ''] },
    ],
  });
  const env = await setup(t, ['v1a', 'v1b', 'v2a'], (b) => [fnV('v1', b)]);
  const c1 = env.client();
  const before = await c1.unary(env.md('fn-promo'));
  t.match([before.status, before.reply?.backend], [0, 'v1a'], summary(before));
  const id = reqid(before);
  const pinnedPeer = before.reply?.peer;

  // Naming the version the session is pinned to is the same (function, version): the same
  // session, so the same endpoint and upstream connection (the other v1 endpoint holds fewer
  // sessions, so a new session would go there).
  const explicit = await c1.unary(env.md('fn-promo', { 'function-version-id': 'v1' }));
  t.match([explicit.status, explicit.reply?.backend, sess(explicit), explicit.reply?.peer], [0, 'v1a', sidOf(id), pinnedPeer], `explicit v1 on the same connection: ${summary(explicit)}`);
  // And the other way round: a session started naming v1, then a call naming no version while v1 is active.
  const c0 = env.client();
  const named0 = await c0.unary(env.md('fn-promo', { 'function-version-id': 'v1' }));
  t.equal(named0.status, 0, summary(named0));
  const implicit0 = await c0.unary(env.md('fn-promo'));
  t.match([implicit0.status, implicit0.reply?.backend, sess(implicit0), implicit0.reply?.peer], [0, named0.reply?.backend, sess(named0), named0.reply?.peer], `no version after naming the active one: ${summary(implicit0)}`);

  await env.rewrite([fnV('v2', env.backends)], 'promo');

  const stays = await c1.unary(env.md('fn-promo'));
  t.match([stays.status, stays.reply?.backend, sess(stays), stays.reply?.peer], [0, 'v1a', sidOf(id), pinnedPeer], `existing channel stays on v1: ${summary(stays)}`);
  const c2 = env.client();
  const fresh = await c2.unary(env.md('fn-promo'));
  t.match([fresh.status, fresh.reply?.backend], [0, 'v2a'], `new channel goes to v2: ${summary(fresh)}`);
  t.not(sess(fresh), sidOf(id));
  const c3 = env.client();
  const named = await c3.unary(env.md('fn-promo', { 'function-version-id': 'v1' }));
  t.equal(named.status, 0, `new channel naming v1: ${summary(named)}`);
  t.ok(named.reply?.backend === 'v1a' || named.reply?.backend === 'v1b', `... lands on v1: ${summary(named)}`);
  t.not(sess(named), sidOf(id), '... in a session of its own');
  const stillExplicit = await c1.unary(env.md('fn-promo', { 'function-version-id': 'v1' }));
  t.match([stillExplicit.status, stillExplicit.reply?.backend, sess(stillExplicit)], [0, 'v1a', sidOf(id)], `explicit v1 on the old channel: ${summary(stillExplicit)}`);
  const v2OnOld = await c1.unary(env.md('fn-promo', { 'function-version-id': 'v2' }));
  t.match([v2OnOld.status, v2OnOld.reply?.backend], [0, 'v2a'], `explicit v2 on the old channel: ${summary(v2OnOld)}`);
  t.not(sess(v2OnOld), sidOf(id), '... is another session');
  const pinnedAfter = await c1.unary(env.md('fn-promo'));
  t.match([pinnedAfter.status, pinnedAfter.reply?.backend, sess(pinnedAfter), pinnedAfter.reply?.peer], [0, 'v1a', sidOf(id), pinnedPeer], 'still pinned to v1, on its one upstream connection');
  const py = await runPythonClient([...env.py('fn-promo'), 'unary', '--calls', '2']);
  t.same(py.calls.map((c) => [c.code, c.backend]), [['OK', 'v2a'], ['OK', 'v2a']], 'a new Python channel goes to v2');
});

/** A raw node:http2 server answering Echo/Unary, counting its HTTP/2 connections. */
interface RawEcho {
  readonly address: string;
  readonly opened: number;
  readonly closed: number;
  close(): Promise<void>;
}

async function startRawEcho(name: string): Promise<RawEcho> {
  const server = http2.createServer();
  const sessions = new Set<ServerHttp2Session>();
  let opened = 0;
  let closed = 0;
  server.on('session', (s) => {
    opened++;
    sessions.add(s);
    s.on('error', () => {});
    s.once('close', () => {
      closed++;
      sessions.delete(s);
    });
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    if (headers[':path'] !== ECHO_PATHS.Unary) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
      return;
    }
    stream.resume();
    stream.on('end', () => {
      const reply = echoMethods.Unary.responseSerialize({ backend: name, received_bytes: 0, received_messages: 1, payload: Buffer.alloc(0), metadata: '', peer: '' });
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(grpcFrame(reply));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    get opened() {
      return opened;
    },
    get closed() {
      return closed;
    },
    close: () => closeServer(server, sessions),
  };
}

t.test("the session's upstream connection closes with the client's", async (t) => {
  const raw = await startRawEcho('raw');
  t.teardown(() => raw.close());
  const env = await setup(t, [], () => [fn('rawfn', 'fn-raw', [raw.address])]);
  const c1 = env.client();
  const c2 = env.client();
  for (let i = 0; i < 3; i++) {
    const r = await c1.unary(env.md('fn-raw'));
    t.match([r.status, r.reply?.backend], [0, 'raw'], summary(r));
  }
  t.equal(raw.opened, 1, 'one upstream connection for the session');
  const r2 = await c2.unary(env.md('fn-raw'));
  t.match([r2.status, r2.reply?.backend], [0, 'raw'], summary(r2));
  t.equal(raw.opened, 2, "the second client's session has its own");
  t.equal(raw.closed, 0);

  c1.close();
  await waitFor(() => raw.closed === 1, 5000, "upstream connection closing after c1's");
  const r3 = await c2.unary(env.md('fn-raw'));
  t.match([r3.status, r3.reply?.backend, sess(r3)], [0, 'raw', sess(r2)], 'the other session is untouched');
  t.equal(raw.opened, 2, 'and still uses its connection');
  c2.close();
  await waitFor(() => raw.closed === 2, 5000, "upstream connection closing after c2's");

  const py = await runPythonClient([...env.py('fn-raw'), 'unary', '--calls', '3']);
  t.same(py.calls.map((c) => [c.code, c.backend]), Array.from({ length: 3 }, () => ['OK', 'raw']), 'Python calls');
  t.equal(raw.opened, 3, 'one upstream connection for the Python session');
  await waitFor(() => raw.closed === 3, 5000, "upstream connection closing after the Python client's");
});
