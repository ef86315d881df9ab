// Held sessions (docs/reference.md, Scaling) in local mode: a Function whose version has no
// endpoint, with scaling.holdTimeout, keeps new sessions waiting instead of answering
// UNAVAILABLE; grpc-js and grpcio calls complete once an endpoint is added to the YAML, each
// forwarded once, with fngate-wait-ms. Deadline, cancel, holdTimeout, a full queue, the Function's
// removal, a drain and a capped endpoint each end or release a wait as documented, and leave
// nothing waiting.
import t from 'tap';
import type { Test } from 'tap';
import { join } from 'node:path';
import { startEchoBackend, type EchoBackend } from '../helpers/backend.ts';
import { echoClient, type CallResult, type EchoClient, type MetadataRecord } from '../helpers/echo-client.ts';
import { randomKey, removeFunction, writeFunctionsDir, writeKeysFile, type TestFunction } from '../helpers/files.ts';
import { ECHO_PATHS } from '../helpers/echo-proto.ts';
import { metricsText, startGateway, type GatewayProcess, type LogLine } from '../helpers/gateway.ts';
import { grpcFrame, rawGrpcCall } from '../helpers/http2-raw.ts';
import { runPythonClient } from '../helpers/python.ts';
import { waitFor, waitForAsync } from '../helpers/wait.ts';

const OK = 0;
const NOT_FOUND = 5;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;
const UNAVAILABLE = 14;

interface Env {
  gw: GatewayProcess;
  /** The --functions directory. */
  dir: string;
  backend: EchoBackend;
  /** A second backend, for a Function that must not share an endpoint's session count. */
  spare: EchoBackend;
  md(functionId: string, extra?: MetadataRecord): MetadataRecord;
  py(functionId: string): string[];
  client(): EchoClient;
  /** Rewrites the Function `fn` and resolves once the gateway has loaded it. */
  rewrite(fn: TestFunction): Promise<void>;
  /** A series of /metrics with these labels (0 when absent). */
  series(name: string, labels: Record<string, string>): Promise<number>;
  waiting(functionId: string): Promise<number>;
  /** Resolves once `n` sessions of `functionId` wait. */
  untilWaiting(functionId: string, n: number): Promise<void>;
}

async function setup(t: Test, functions: (backend: EchoBackend, spare: EchoBackend) => TestFunction[]): Promise<Env> {
  const dir = t.testdir({});
  const backend = await startEchoBackend({ name: 'warm' });
  const spare = await startEchoBackend({ name: 'spare' });
  const clients: EchoClient[] = [];
  let gw: GatewayProcess | undefined;
  t.teardown(async () => {
    for (const c of clients) c.close();
    await gw?.stop();
    await backend.stop(1000);
    await spare.stop(1000);
  });
  const key = randomKey();
  writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'tester', key, functions: '*' }]);
  const fnDir = join(dir, 'functions');
  writeFunctionsDir(fnDir, functions(backend, spare));
  gw = await startGateway(['--functions', fnDir, '--api-keys', join(dir, 'keys.yaml'), '--idle-timeout', '60s', '--drain-timeout', '10s']);
  const running = gw;
  const series = async (name: string, labels: Record<string, string>): Promise<number> => {
    const text = await metricsText(running);
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    for (const line of text.split('\n')) {
      const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
      if (m === null || m[1] !== name) continue;
      const have = (m[2] as string).split(/,(?=[a-z_]+=")/);
      if (want.every((w) => have.includes(w)) && have.length === want.length) return Number(m[3]);
    }
    return 0;
  };
  const waiting = (functionId: string): Promise<number> => series('fngate_sessions_waiting', { fngate_function_id: functionId, fngate_version_id: 'v1' });
  return {
    gw: running,
    dir: fnDir,
    backend,
    spare,
    md: (functionId, extra = {}) => ({ authorization: `Bearer ${key}`, 'function-id': functionId, ...extra }),
    py: (functionId) => ['--target', running.h2c, '-H', `authorization=Bearer ${key}`, '-H', `function-id=${functionId}`],
    client() {
      const c = echoClient(running.h2c);
      clients.push(c);
      return c;
    },
    async rewrite(fn) {
      const file = join(fnDir, `${fn.name}.yaml`);
      const loaded = (l: LogLine): boolean => l['msg'] === 'functions file loaded' && l['file'] === file;
      const before = running.logLines().filter(loaded).length;
      writeFunctionsDir(fnDir, [fn]);
      await waitFor(() => running.logLines().filter(loaded).length > before, 10_000, `gateway reloading ${file}`);
    },
    series,
    waiting,
    untilWaiting: (functionId, n) => waitForAsync(async () => (await waiting(functionId)) === n, 10_000, `${n} sessions of ${functionId} waiting`),
  };
}

const cold = (holdTimeout: string, more: Partial<TestFunction> = {}): TestFunction => ({
  name: 'cold',
  functionId: 'fn-cold',
  activeVersion: 'v1',
  scaling: { holdTimeout },
  versions: [{ versionId: 'v1', endpoints: [] }],
  ...more,
});

const waitMs = (r: CallResult): number => Number(r.initial['fngate-wait-ms'] ?? r.trailing['fngate-wait-ms'] ?? NaN);
const summary = (r: CallResult): string => `status ${r.status} ${JSON.stringify(r.details)} backend ${r.reply?.backend ?? '-'}`;

t.test('calls wait for a function scaled to zero and complete once it has an endpoint', async (t) => {
  const env = await setup(t, () => [cold('60s')]);
  const a = env.client();
  const b = env.client();
  const md = env.md('fn-cold');
  const unary = a.unary(md, { payload: Buffer.from('first') });
  const stream = a.serverStream(md, { count: 3 });
  const bidi = b.bidi(md, [{ payload: Buffer.from('one') }, { payload: Buffer.from('two') }]);
  const clientStream = b.clientStream(md, [{ payload: Buffer.alloc(1000, 1) }, { payload: Buffer.alloc(2000, 2) }]);
  const py = runPythonClient([...env.py('fn-cold'), '--timeout', '60', 'unary', '--calls', '2', '--payload-size', '10']);
  // One waiting session per connection: a's two calls wait on one, b's two on another, Python's on a third.
  await env.untilWaiting('fn-cold', 3);
  t.equal(env.backend.calls, 0, 'nothing reached a backend yet');

  await env.rewrite(cold('60s', { versions: [{ versionId: 'v1', endpoints: [env.backend.address] }] }));
  const results = await Promise.all([unary, stream, bidi, clientStream]);
  t.same(results.filter((r) => r.status !== OK).map(summary), [], 'every grpc-js call OK');
  t.equal(results[1]?.replyCount, 3, 'the server stream got all its replies');
  t.equal(results[2]?.replyCount, 2, 'the bidi stream got both replies');
  t.equal(results[3]?.reply?.received_bytes, 3000, 'the client stream body, sent while waiting, arrived whole');
  for (const r of results) t.ok(waitMs(r) >= 0, `fngate-wait-ms in the response headers (${waitMs(r)})`);
  const pyCalls = (await py).calls;
  t.same(pyCalls.map((c) => c.code), ['OK', 'OK'], 'both grpcio calls OK');
  t.ok(Number(pyCalls[0]?.initial_metadata['fngate-wait-ms']) >= 0, 'the grpcio call that waited has fngate-wait-ms');
  t.equal(env.backend.calls, 6, 'each call forwarded exactly once (never replayed)');
  t.equal(env.backend.peers.size, 3, 'three sessions, three upstream connections');
  t.equal(await env.waiting('fn-cold'), 0, 'nothing waits any more');
  t.equal(await env.series('fngate_session_waits_total', { fngate_function_id: 'fn-cold', fngate_version_id: 'v1', outcome: 'bound' }), 3, 'three waits ended bound');

  // A later call on a connection that waited goes straight to its session, without waiting.
  const again = await a.unary(md);
  t.equal(again.status, OK);
  t.equal(again.initial['fngate-wait-ms'], undefined, 'a call that did not wait has no fngate-wait-ms');
});

t.test('each way a wait ends', async (t) => {
  // maxSessionsPerEndpoint counts every session on an endpoint, of any Function: fn-capped has its own.
  const env = await setup(t, (_backend, spare) => [
    cold('60s'),
    { ...cold('300ms'), name: 'brief', functionId: 'fn-brief' },
    { ...cold('60s', { scaling: { holdTimeout: '60s', maxPendingSessions: 1 } }), name: 'narrow', functionId: 'fn-narrow' },
    { ...cold('60s'), name: 'gone', functionId: 'fn-gone' },
    { ...cold('60s'), name: 'capped', functionId: 'fn-capped', maxSessionsPerEndpoint: 1, versions: [{ versionId: 'v1', endpoints: [spare.address] }] },
  ]);
  const outcome = (functionId: string, o: string): Promise<number> =>
    env.series('fngate_session_waits_total', { fngate_function_id: functionId, fngate_version_id: 'v1', outcome: o });

  await t.test('the RPC deadline: DEADLINE_EXCEEDED', async (t) => {
    // A raw HTTP/2 call: its grpc-timeout is the only deadline (a grpc-js client would also cancel
    // at its own deadline, and on a loaded machine its cancel can arrive first).
    const r = await rawGrpcCall(env.gw.h2c, { ':path': ECHO_PATHS.Unary, ...env.md('fn-cold'), 'grpc-timeout': '400m' }, [grpcFrame(Buffer.alloc(0))]);
    t.equal(r.trailers['grpc-status'] ?? r.headers['grpc-status'], String(DEADLINE_EXCEEDED), `the gateway's own DEADLINE_EXCEEDED: ${String(r.headers['grpc-message'])}`);
    t.match(String(r.headers['grpc-message']), /while waiting for function fn-cold version v1/);
    await waitForAsync(async () => (await outcome('fn-cold', 'deadline')) === 1, 10_000, 'the deadline counted');
    t.equal(await env.waiting('fn-cold'), 0, 'the session stopped waiting with its only call');
  });

  await t.test('a cancel', async (t) => {
    const abort = new AbortController();
    const call = env.client().unary(env.md('fn-cold'), {}, { signal: abort.signal });
    await env.untilWaiting('fn-cold', 1);
    abort.abort();
    t.equal((await call).status, 1, 'CANCELLED on the client');
    await waitForAsync(async () => (await outcome('fn-cold', 'cancelled')) === 1, 10_000, 'the cancel counted');
    t.equal(await env.waiting('fn-cold'), 0, 'nothing left waiting');
  });

  await t.test('holdTimeout: UNAVAILABLE saying how long it waited', async (t) => {
    const r = await env.client().unary(env.md('fn-brief'));
    t.equal(r.status, UNAVAILABLE, summary(r));
    t.equal(r.details, 'function fn-brief version v1 had no ready endpoint after 300ms');
    t.ok(waitMs(r) >= 300, `fngate-wait-ms on the trailers-only answer (${waitMs(r)})`);
    t.equal(await outcome('fn-brief', 'timeout'), 1);
  });

  await t.test('a full queue: RESOURCE_EXHAUSTED at once', async (t) => {
    const first = env.client();
    const held = first.unary(env.md('fn-narrow'));
    await env.untilWaiting('fn-narrow', 1);
    const r = await env.client().unary(env.md('fn-narrow'));
    t.equal(r.status, RESOURCE_EXHAUSTED, summary(r));
    t.match(r.details, /1 sessions already wait for function fn-narrow version v1/);
    t.equal(await outcome('fn-narrow', 'queue_full'), 1);
    // A second call of the connection already waiting joins its session, not the queue.
    const same = first.unary(env.md('fn-narrow'));
    await env.rewrite({ ...cold('60s', { scaling: { holdTimeout: '60s', maxPendingSessions: 1 } }), name: 'narrow', functionId: 'fn-narrow', versions: [{ versionId: 'v1', endpoints: [env.backend.address] }] });
    t.same([(await held).status, (await same).status], [OK, OK], 'both calls of the waiting connection completed');
  });

  await t.test('the Function removed while a session waits: NOT_FOUND', async (t) => {
    const call = env.client().unary(env.md('fn-gone'));
    await env.untilWaiting('fn-gone', 1);
    removeFunction(env.dir, 'gone');
    const r = await call;
    t.equal(r.status, NOT_FOUND, summary(r));
    t.equal(r.details, 'function fn-gone version v1 was removed while sessions waited for it');
    t.equal(await outcome('fn-gone', 'removed'), 1);
    t.equal(await env.waiting('fn-gone'), 0, 'nothing left waiting');
  });

  await t.test('a capped endpoint: the next session waits for the one holding it', async (t) => {
    const owner = env.client();
    t.equal((await owner.unary(env.md('fn-capped'))).status, OK, 'the first connection holds the only slot');
    const waiter = env.client();
    const call = waiter.unary(env.md('fn-capped'));
    await env.untilWaiting('fn-capped', 1);
    owner.close(); // its session ends, the slot frees
    const r = await call;
    t.equal(r.status, OK, summary(r));
    t.ok(waitMs(r) >= 0, 'it waited');
  });
});

t.test('a drain ends waiting calls with UNAVAILABLE and the gateway exits 0', async (t) => {
  const env = await setup(t, () => [cold('60s')]);
  const call = env.client().unary(env.md('fn-cold'));
  await env.untilWaiting('fn-cold', 1);
  env.gw.signal('SIGTERM');
  const r = await call;
  t.equal(r.status, UNAVAILABLE, summary(r));
  t.match(r.details, /draining/);
  t.same(await env.gw.exited, { code: 0, signal: null }, 'exited 0, long before the drain timeout');
});
