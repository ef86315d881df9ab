// The API server stopped and restarted under a running gateway (same port, same etcd data:
// the same cluster). While it is down the gateway routes on its last known state: calls on
// open and new connections succeed, API keys from Secrets keep working, /readyz stays 200,
// a log line and fngate_registry_staleness_seconds say the view is stale. After it is back
// (watches restarted with backoff, a full relist), changes made then are followed: an
// endpoint turned not-ready and a new one added, a Function deleted and another created.
// Last, a network partition (a TCP proxy between a second gateway and the API server, cut
// while the API server stays up): what changed meanwhile, deletions of a Function, of an
// API key Secret and of endpoints included, is caught up by the relist once it heals.
import t from 'tap';
import { join } from 'node:path';
import type { EchoBackend } from '../helpers/backend.ts';
import type { CallResult } from '../helpers/echo-client.ts';
import { metric } from '../helpers/gateway.ts';
import type { GatewayProcess, LogLine } from '../helpers/gateway.ts';
import {
  backendSlice,
  clients,
  current,
  echoBackends,
  functionObject,
  kubeconfigVia,
  readyCondition,
  readyEndpointsOf,
  readyz,
  reqid,
  serviceVersion,
  startApiProxy,
  startKubeEnv,
  Status,
  summary,
} from '../helpers/kube-fixtures.ts';
import type { Clients } from '../helpers/kube-fixtures.ts';
import { sleep, waitFor, waitForAsync } from '../helpers/wait.ts';

const STALE_LOG = 'kubernetes watch failed; routing on the last known state';
const RECOVERED_LOG = 'kubernetes watch recovered';
const STALENESS = 'fngate_registry_staleness_seconds';

const env = await startKubeEnv(t);
const { kube } = env;
const backend = echoBackends(t);

const a = await backend('res-a');
const gone = await backend('gone-a');
await env.apply(
  backendSlice(a, 'res'),
  backendSlice(gone, 'gone'),
  functionObject('res', { functionId: 'fn-res', activeVersion: 'v1', versions: [serviceVersion('v1', 'res', 'grpc')] }),
  functionObject('gone', { functionId: 'fn-gone', activeVersion: 'v1', versions: [serviceVersion('v1', 'gone', 'grpc')] }),
);
const gw = await env.startGateway('gw-res');
const cl = clients(t, gw, env.key);
await env.waitForFunction('res', (f) => current(f) && readyEndpointsOf(f)['v1'] === 1, 'res routed');
await env.waitForFunction('gone', (f) => current(f) && readyEndpointsOf(f)['v1'] === 1, 'gone routed');

/** Retries a call on fresh connections until `pred` holds (routing catching up). */
async function until(functionId: string, pred: (r: CallResult) => boolean, what: string, g: GatewayProcess, timeoutMs = 30_000, via: Clients = cl): Promise<CallResult> {
  const end = Date.now() + timeoutMs;
  let r = await via.once(functionId);
  while (!pred(r)) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms; last: ${summary(r)}\n--- gateway stderr (tail) ---\n${g.logs().slice(-8000)}`);
    await sleep(200);
    r = await via.once(functionId);
  }
  return r;
}

let resB: EchoBackend | undefined;
const staleLines = (): LogLine[] => gw.logLines().filter((l) => l['msg'] === STALE_LOG);

t.test('API server down: calls keep succeeding on the last known state, readiness stays, staleness is reported', async (t) => {
  const pinned = cl.client();
  const first = await pinned.unary(cl.md('fn-res'));
  t.match([first.status, first.reply?.backend], [Status.OK, 'res-a'], summary(first));
  t.equal(await metric(gw, STALENESS), 0, 'not stale while the API server is up');

  await kube.stop();
  const stale = await gw.waitForLog((l) => l['msg'] === STALE_LOG, 15_000);
  t.match(stale, { level: 'warn' }, `logged: ${JSON.stringify(stale)}`);
  t.ok(typeof stale['resource'] === 'string', 'names the watched resource');

  for (let i = 0; i < 3; i++) {
    const onOpen = await pinned.unary(cl.md('fn-res'));
    // The same session: its one upstream connection (its id may have been resealed meanwhile).
    t.match([onOpen.status, onOpen.reply?.backend, onOpen.reply?.peer], [Status.OK, 'res-a', first.reply?.peer], `open connection, same session: ${summary(onOpen)}`);
    const fresh = await cl.once('fn-res');
    t.match([fresh.status, fresh.reply?.backend], [Status.OK, 'res-a'], `new connection (API key from a Secret, still known): ${summary(fresh)}`);
    const other = await cl.once('fn-gone');
    t.equal(other.status, Status.OK, `another Function: ${summary(other)}`);
  }
  t.equal(await readyz(gw), 200, '/readyz stays 200 while the view is stale');
  t.ok((await metric(gw, STALENESS)) > 0, `${STALENESS} > 0 while stale`);
  // One warning per resource per outage, not one per retry: counted once every failed watch
  // has retried and failed again (logged at debug).
  const retried = (resource: unknown): boolean => gw.logLines().some((l) => l['msg'] === 'kubernetes watch still failing' && l['resource'] === resource);
  await waitFor(() => staleLines().every((l) => retried(l['resource'])), 30_000, 'every failed watch retried');
  const perResource = new Map<string, number>();
  for (const l of staleLines()) perResource.set(String(l['resource']), (perResource.get(String(l['resource'])) ?? 0) + 1);
  t.ok([...perResource.values()].every((n) => n === 1), `one warning per resource: ${JSON.stringify([...perResource])}`);
  t.equal(gw.logLines().filter((l) => l['level'] === 'error').length, 0, 'no error-level line');
});

t.test('API server back (same port, same data): routing catches up with changes made after the restart', async (t) => {
  await kube.start();
  t.equal(kube.running(), true);
  const recovered = await gw.waitForLog((l) => l['msg'] === RECOVERED_LOG, 30_000).catch(() => undefined);
  t.ok(recovered, 'a log line says the watch recovered');

  // Changes, made while the API server is up again.
  const b = await backend('res-b');
  resB = b;
  await env.apply(backendSlice(a, 'res', { ready: false }), backendSlice(b, 'res'));
  await env.remove('default', 'function/gone');
  const fresh = await backend('fresh-a');
  await env.apply(backendSlice(fresh, 'fresh'), functionObject('fresh', { functionId: 'fn-fresh', activeVersion: 'v1', versions: [serviceVersion('v1', 'fresh', 'grpc')] }));

  const moved = await until('fn-res', (r) => r.reply?.backend === 'res-b', 'new sessions on res-b', gw);
  t.equal(moved.status, Status.OK, summary(moved));
  // Held open: were res-a still a candidate, fewest-sessions would send some there.
  for (let i = 0; i < 3; i++) {
    const r = await cl.client().unary(cl.md('fn-res'));
    t.match([r.status, r.reply?.backend], [Status.OK, 'res-b'], `not-ready res-a gets no new session: ${summary(r)}`);
  }
  const deleted = await until('fn-gone', (r) => r.status === Status.NOT_FOUND, 'deleted Function refused', gw);
  t.match(deleted.details, /fn-gone not found/);
  const created = await until('fn-fresh', (r) => r.status === Status.OK, 'new Function routed', gw);
  t.equal(created.reply?.backend, 'fresh-a');

  // And status follows too (the Lease is renewed or re-acquired after the outage).
  const fn = await env.waitForFunction('res', (f) => current(f) && readyEndpointsOf(f)['v1'] === 1 && readyCondition(f)?.status === 'True', 'res status after restart', { timeoutMs: 30_000 });
  t.same(fn.status?.versions, [{ versionId: 'v1', readyEndpoints: 1 }]);
  t.equal((await env.getLease())?.spec?.holderIdentity, 'gw-res');
  // The gauge is refreshed once a second.
  await waitForAsync(async () => (await metric(gw, STALENESS)) === 0, 3000, `${STALENESS} back to 0`).then(
    () => t.pass('no longer stale'),
    (err: Error) => t.fail(err.message),
  );
  t.equal(await readyz(gw), 200);
});

t.test('a second outage is reported again, and recovered from again', async (t) => {
  const b = resB;
  if (b === undefined) throw new Error('needs the previous test');
  const before = staleLines().length;
  await kube.restart();
  t.ok(staleLines().length > before, `the outage was reported again (${staleLines().length - before} warnings)`);
  // res-b (holding the sessions of the test before) goes, res-c comes.
  const c = await backend('res-c');
  await env.apply(backendSlice(b, 'res', { ready: false }), backendSlice(c, 'res'));
  const moved = await until('fn-res', (r) => r.reply?.backend === 'res-c', 'new sessions on res-c', gw);
  t.equal(moved.status, Status.OK);
  t.equal(gw.logLines().filter((l) => l['level'] === 'error').length, 0, 'no error-level line');
  t.equal(await readyz(gw), 200);
});

t.test('a partition while the API server stays up: changes made meanwhile (deletions included) are caught up on healing', async (t) => {
  const proxy = await startApiProxy(t, kube.port);
  const kubeconfig = kubeconfigVia(env.gatewayKubeconfig, proxy.port, join(env.work, 'via-proxy.kubeconfig'));
  const p1 = await backend('part-1');
  const p2 = await backend('part-2');
  const p3 = await backend('part-3');
  const pg = await backend('part-gone');
  await env.apply(
    backendSlice(p1, 'part'),
    backendSlice(p2, 'part'),
    backendSlice(pg, 'part-gone'),
    functionObject('part', { functionId: 'fn-part', activeVersion: 'v1', versions: [serviceVersion('v1', 'part', 'grpc')] }),
    functionObject('part-gone', { functionId: 'fn-part-gone', activeVersion: 'v1', versions: [serviceVersion('v1', 'part-gone', 'grpc')] }),
  );
  const doomedKey = await env.createKeySecret('doomed');
  const gp = await env.startGateway('gw-partitioned', { kubeconfig });
  const cp = clients(t, gp, env.key);
  const doomed = clients(t, gp, doomedKey);
  t.equal((await until('fn-part-gone', (r) => r.status === Status.OK, 'fn-part-gone routed', gp, 10_000, cp)).status, Status.OK);
  t.equal((await until('fn-part', (r) => r.status === Status.OK, 'doomed key accepted', gp, 10_000, doomed)).status, Status.OK);

  proxy.cut();
  await gp.waitForLog((l) => l['msg'] === STALE_LOG, 10_000);
  // Changes the partitioned gateway cannot see: a Function and a key Secret deleted, an
  // endpoint turned not-ready, another added.
  await env.remove('default', 'function/part-gone', 'secret/fngate-key-doomed');
  await env.apply(backendSlice(p1, 'part', { ready: false }), backendSlice(p3, 'part'));
  // Meanwhile it routes on what it knew.
  const stillGone = await cp.once('fn-part-gone');
  t.match([stillGone.status, stillGone.reply?.backend], [Status.OK, 'part-gone'], `the deleted Function is still routed while partitioned: ${summary(stillGone)}`);
  t.equal((await doomed.once('fn-part')).status, Status.OK, 'the deleted key still works while partitioned (last known state)');
  t.equal(await readyz(gp), 200);
  t.ok((await waitForAsync(async () => (await metric(gp, STALENESS)) > 0, 3000, 'stale gauge').then(() => true, () => false)), `${STALENESS} > 0`);

  proxy.heal();
  const recovered = await gp.waitForLog((l) => l['msg'] === RECOVERED_LOG && l['resource'] === 'functions', 30_000);
  t.ok(recovered, 'the watches recovered');
  const gone = await until('fn-part-gone', (r) => r.status === Status.NOT_FOUND, 'deleted Function caught up', gp, 30_000, cp);
  t.match(gone.details, /fn-part-gone not found/);
  const revoked = await until('fn-part', (r) => r.status === Status.UNAUTHENTICATED, 'deleted key Secret caught up', gp, 30_000, doomed);
  t.match(revoked.details, /invalid or revoked API key/);
  await gp.waitForLog((l) => l['msg'] === RECOVERED_LOG && l['resource'] === 'endpointslices', 30_000);
  await sleep(200);
  // Sessions held open, so that fewest-sessions spreads them (ties go to the first endpoint).
  const p1Calls = p1.calls;
  const spread: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await cp.client().unary(cp.md('fn-part'));
    t.equal(r.status, Status.OK, summary(r));
    spread.push(r.reply?.backend ?? '-');
  }
  t.same(
    Object.fromEntries(['part-1', 'part-2', 'part-3'].map((n) => [n, spread.filter((x) => x === n).length])),
    { 'part-1': 0, 'part-2': 2, 'part-3': 2 },
    `the endpoint added meanwhile is used, the one turned not-ready is not: ${spread.join(',')}`,
  );
  t.equal(p1.calls, p1Calls, 'part-1 got no new call');
  await waitForAsync(async () => (await metric(gp, STALENESS)) === 0, 5000, `${STALENESS} back to 0`);
});
