// Routing in Kubernetes mode, end to end: `fngate serve --kubernetes` under the chart's
// ServiceAccount watches Functions and hand-made EndpointSlices on a real API server and
// sends calls to local Echo backends (listening on endpointAddress(): EndpointSlices refuse
// loopback). Covers Service-backed versions by port name and by port number, static
// endpoints, endpoints going not-ready (open streams run on, nothing new goes there),
// scale-up (new sessions spread by fewest sessions), promotion (old sessions stay pinned,
// new ones go to the new version), deletion, and --namespace under the chart's namespaced
// Role. The gateway's own status writes are the sync signal: once status.versions shows N
// ready endpoints the gateway's routing has them too (same update).
import t from 'tap';
import type { EchoReply, EchoRequest } from '../helpers/echo-proto.ts';
import { endpointAddress } from '../helpers/kube.ts';
import {
  backendSlice,
  clients,
  current,
  echoBackends,
  endpointSlice,
  functionObject,
  pushable,
  readyEndpointsOf,
  reqid,
  serviceVersion,
  sessionsByEndpoint,
  startKubeEnv,
  Status,
  summary,
} from '../helpers/kube-fixtures.ts';
import type { FunctionResource } from '../helpers/kube-fixtures.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

const env = await startKubeEnv(t);
const backend = echoBackends(t);

// Present before the gateway starts: found by its initial list. Everything later arrives by watch.
const named = await backend('named-a');
const namedDecoy = await backend('named-decoy');
const otherService = await backend('other-service');
await env.apply(
  backendSlice(named, 'named'),
  // The same Service, another port name: not the port the Function asks for.
  backendSlice(namedDecoy, 'named', { portName: 'metrics' }),
  // Another Service: never an endpoint of `named`.
  backendSlice(otherService, 'unrelated'),
  functionObject('named', { functionId: 'fn-named', activeVersion: 'v1', versions: [serviceVersion('v1', 'named', 'grpc')] }),
);

const gw = await env.startGateway('gw-routing');
const cl = clients(t, gw, env.key);

/** Waits until the gateway's status for `name` reflects its spec and shows these ready endpoints. */
const routed = (name: string, ready: Record<string, number>, namespace = 'default'): Promise<FunctionResource> =>
  env.waitForFunction(name, (fn) => current(fn) && JSON.stringify(readyEndpointsOf(fn)) === JSON.stringify(ready), `${namespace}/${name} routed with ${JSON.stringify(ready)}`, { namespace });

t.test('the gateway is ready and ran under the chart ServiceAccount without RBAC errors', async (t) => {
  t.equal((await fetch(`http://${gw.admin}/readyz`)).status, 200);
  t.notMatch(gw.logs(), /forbidden/i, 'no Forbidden answer from the API server');
});

t.test('Service-backed version, named port: every call reaches the named port of that Service', async (t) => {
  await routed('named', { v1: 1 });
  // Sessions held open: were another endpoint a candidate, fewest-sessions would use it.
  for (let i = 0; i < 4; i++) {
    const r = await cl.client().unary(cl.md('fn-named'));
    t.match([r.status, r.reply?.backend], [Status.OK, 'named-a'], summary(r));
  }
  t.equal(namedDecoy.calls, 0, 'not the port named metrics');
  t.equal(otherService.calls, 0, 'not another Service');
});

t.test('Service-backed version, numeric port: the slice port with that number; no ready condition counts as ready', async (t) => {
  const num = await backend('num-a');
  const decoy = await backend('num-decoy');
  await env.apply(
    // Port name irrelevant for a number; `conditions` left empty: ready by the API's rule.
    endpointSlice('numbered-a', { service: 'numbered', port: { name: 'grpc', port: num.port }, endpoints: [{ address: endpointAddress() }] }),
    endpointSlice('numbered-decoy', { service: 'numbered', port: { name: 'grpc', port: decoy.port }, endpoints: [{ address: endpointAddress(), ready: true }] }),
    functionObject('numbered', { functionId: 'fn-numbered', activeVersion: 'v1', versions: [serviceVersion('v1', 'numbered', num.port)] }),
  );
  await routed('numbered', { v1: 1 });
  // Sessions held open: were another endpoint a candidate, fewest-sessions would use it.
  for (let i = 0; i < 4; i++) {
    const r = await cl.client().unary(cl.md('fn-numbered'));
    t.match([r.status, r.reply?.backend], [Status.OK, 'num-a'], summary(r));
  }
  t.equal(decoy.calls, 0, 'the other port number of the same Service got nothing');
});

t.test('static endpoints are honoured in Kubernetes mode too', async (t) => {
  const local = await backend('static-a', '127.0.0.1');
  await env.apply(functionObject('static', { functionId: 'fn-static', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [local.address] }] }));
  await routed('static', { v1: 1 });
  const r = await cl.once('fn-static');
  t.match([r.status, r.reply?.backend], [Status.OK, 'static-a'], summary(r));
});

t.test('an endpoint turning not-ready: its open stream runs on, no new session or RPC goes there', async (t) => {
  const x = await backend('nr-x');
  const y = await backend('nr-y');
  await env.apply(backendSlice(x, 'notready'), backendSlice(y, 'notready'), functionObject('notready', { functionId: 'fn-notready', activeVersion: 'v1', versions: [serviceVersion('v1', 'notready', 'grpc')] }));
  await routed('notready', { v1: 2 });

  const c1 = cl.client();
  const first = await c1.unary(cl.md('fn-notready'));
  t.equal(first.status, Status.OK, summary(first));
  const [pinned, other] = first.reply?.backend === 'nr-x' ? [x, y] : [y, x];
  const msgs = pushable<EchoRequest>();
  const replies: EchoReply[] = [];
  const stream = c1.bidi(cl.md('fn-notready'), msgs, { onReply: (r) => void replies.push(r) });
  msgs.push({ payload: Buffer.from('one') });
  await waitFor(() => replies.length === 1, 5000, 'first bidi reply');
  t.equal(replies[0]?.backend, pinned.name, 'the stream is on the pinned endpoint');

  // The pinned endpoint's slice now says ready=false (as for a terminating pod).
  await env.apply(backendSlice(pinned, 'notready', { ready: false }));
  await routed('notready', { v1: 1 });
  const callsBefore = pinned.calls;

  msgs.push({ payload: Buffer.from('two') });
  await waitFor(() => replies.length === 2, 5000, 'second bidi reply');
  t.equal(replies[1]?.backend, pinned.name, 'the open stream runs on, on the not-ready endpoint');

  const next = await c1.unary(cl.md('fn-notready'));
  t.match([next.status, next.reply?.backend], [Status.OK, other.name], `the session's next RPC goes elsewhere: ${summary(next)}`);
  t.not(reqid(next), reqid(first), 'with a new session id');
  // New sessions, held open: were the not-ready endpoint still a candidate, fewest-sessions
  // would send some of them there.
  for (let i = 0; i < 4; i++) {
    const r = await cl.client().unary(cl.md('fn-notready'));
    t.match([r.status, r.reply?.backend], [Status.OK, other.name], `new session: ${summary(r)}`);
  }
  t.equal(pinned.calls, callsBefore, 'no new RPC reached the not-ready endpoint');

  msgs.end();
  const done = await stream;
  t.equal(done.status, Status.OK, `the stream ended normally: ${done.details}`);
  t.equal(done.replyCount, 2);

  // Ready again: new sessions may use it again.
  await env.apply(backendSlice(pinned, 'notready', { ready: true }));
  await routed('notready', { v1: 2 });
  const again = await cl.client().unary(cl.md('fn-notready'));
  t.match([again.status, again.reply?.backend], [Status.OK, pinned.name], `back in rotation, it holds the fewest sessions: ${summary(again)}`);
});

t.test('scale-up: new endpoints take the new sessions (fewest sessions first), old sessions stay', async (t) => {
  const a = await backend('scale-a');
  await env.apply(backendSlice(a, 'scale'), functionObject('scale', { functionId: 'fn-scale', activeVersion: 'v1', versions: [serviceVersion('v1', 'scale', 'grpc')] }));
  await routed('scale', { v1: 1 });
  const old = [cl.client(), cl.client(), cl.client()];
  for (const c of old) {
    const r = await c.unary(cl.md('fn-scale'));
    t.match([r.status, r.reply?.backend], [Status.OK, 'scale-a'], summary(r));
  }
  t.equal((await sessionsByEndpoint(gw))[a.address], 3, 'three sessions on the one endpoint');

  const b = await backend('scale-b');
  const c = await backend('scale-c');
  await env.apply(backendSlice(b, 'scale'), backendSlice(c, 'scale'));
  await routed('scale', { v1: 3 });
  const fresh: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await cl.client().unary(cl.md('fn-scale'));
    t.equal(r.status, Status.OK, summary(r));
    fresh.push(r.reply?.backend ?? '-');
  }
  t.same(
    Object.fromEntries(['scale-a', 'scale-b', 'scale-c'].map((n) => [n, fresh.filter((f) => f === n).length])),
    { 'scale-a': 0, 'scale-b': 3, 'scale-c': 3 },
    `six new sessions went to the new endpoints, evenly: ${fresh.join(',')}`,
  );
  for (const cc of old) {
    const r = await cc.unary(cl.md('fn-scale'));
    t.equal(r.reply?.backend, 'scale-a', 'an old session stays where it was');
  }
  t.same(await sessionsByEndpoint(gw).then((s) => [s[a.address], s[b.address], s[c.address]]), [3, 3, 3], 'fngate_endpoint_sessions: 3 each');
});

t.test('promotion (activeVersion change): pinned sessions stay on the old version, new ones go to the new', async (t) => {
  const p1 = await backend('promo-v1');
  const p2 = await backend('promo-v2');
  await env.apply(
    backendSlice(p1, 'promo-v1'),
    backendSlice(p2, 'promo-v2'),
    functionObject('promo', { functionId: 'fn-promo', activeVersion: 'v1', versions: [serviceVersion('v1', 'promo-v1', 'grpc'), serviceVersion('v2', 'promo-v2', 'grpc')] }),
  );
  await routed('promo', { v1: 1, v2: 1 });
  const c1 = cl.client();
  const before = await c1.unary(cl.md('fn-promo'));
  t.match([before.status, before.reply?.backend], [Status.OK, 'promo-v1'], summary(before));
  const held = await (async () => {
    const msgs = pushable<EchoRequest>();
    const replies: EchoReply[] = [];
    const done = c1.bidi(cl.md('fn-promo'), msgs, { onReply: (r) => void replies.push(r) });
    msgs.push({});
    await waitFor(() => replies.length === 1, 5000, 'bidi reply');
    return { msgs, replies, done };
  })();

  await env.patch('default', 'function/promo', { spec: { activeVersion: 'v2' } });
  const promoted = await env.waitForFunction('promo', (fn) => current(fn) && fn.metadata.generation === 2, 'the gateway saw generation 2');
  t.equal(promoted.spec.activeVersion, 'v2');

  const stays = await c1.unary(cl.md('fn-promo'));
  // Same session = same upstream connection (ids are resealed as they age, so not compared).
  t.match([stays.status, stays.reply?.backend, stays.reply?.peer], [Status.OK, 'promo-v1', before.reply?.peer], `the pinned session stays on v1: ${summary(stays)}`);
  held.msgs.push({});
  await waitFor(() => held.replies.length === 2, 5000, 'second bidi reply');
  t.equal(held.replies[1]?.backend, 'promo-v1', 'an open stream on v1 runs on');
  held.msgs.end();
  t.equal((await held.done).status, Status.OK);

  for (let i = 0; i < 3; i++) {
    const r = await cl.once('fn-promo');
    t.match([r.status, r.reply?.backend], [Status.OK, 'promo-v2'], `a new session goes to v2: ${summary(r)}`);
    t.not(reqid(r), reqid(before));
  }
  const explicit = await c1.unary(cl.md('fn-promo', { 'function-version-id': 'v1' }));
  t.match([explicit.reply?.backend, explicit.reply?.peer], ['promo-v1', before.reply?.peer], 'naming v1 on the pinned connection is the same session');
  const other = await cl.once('fn-promo', { 'function-version-id': 'v1' });
  t.equal(other.reply?.backend, 'promo-v1', 'v1 can still be named explicitly');
});

t.test('maxSessionsPerEndpoint from the Function: 1 session per endpoint, then RESOURCE_EXHAUSTED', async (t) => {
  const m1 = await backend('max-a');
  const m2 = await backend('max-b');
  await env.apply(backendSlice(m1, 'max'), backendSlice(m2, 'max'), functionObject('max', { functionId: 'fn-max', activeVersion: 'v1', maxSessionsPerEndpoint: 1, versions: [serviceVersion('v1', 'max', 'grpc')] }));
  await routed('max', { v1: 2 });
  const served = new Set<string>();
  for (let i = 0; i < 2; i++) {
    const r = await cl.client().unary(cl.md('fn-max'));
    t.equal(r.status, Status.OK, summary(r));
    served.add(r.reply?.backend ?? '-');
  }
  t.same([...served].sort(), ['max-a', 'max-b'], 'one session on each endpoint');
  const third = await cl.client().unary(cl.md('fn-max'));
  t.equal(third.status, Status.RESOURCE_EXHAUSTED, `a third client session: ${summary(third)}`);
});

t.test('a Function deleted: its calls are refused NOT_FOUND, also on an open connection', async (t) => {
  const d = await backend('deleted-a');
  await env.apply(backendSlice(d, 'deleted'), functionObject('deleted', { functionId: 'fn-deleted', activeVersion: 'v1', versions: [serviceVersion('v1', 'deleted', 'grpc')] }));
  await routed('deleted', { v1: 1 });
  const c = cl.client();
  t.equal((await c.unary(cl.md('fn-deleted'))).status, Status.OK);
  await env.remove('default', 'function/deleted');
  const until = Date.now() + 10_000;
  let fresh = await cl.once('fn-deleted');
  while (fresh.status !== Status.NOT_FOUND && Date.now() < until) {
    await sleep(100);
    fresh = await cl.once('fn-deleted');
  }
  t.match([fresh.status, fresh.details], [Status.NOT_FOUND, /fn-deleted not found/], summary(fresh));
  const onOpen = await c.unary(cl.md('fn-deleted'));
  t.equal(onOpen.status, Status.NOT_FOUND, `the open connection too: ${summary(onOpen)}`);
});

t.test('--namespace under the chart namespaced Role: only that namespace is routed', async (t) => {
  await env.namespaces('team-a', 'team-b');
  // A second release of the chart, watchNamespace=team-a: a Role + RoleBinding in team-a
  // (no cluster-wide rights), its Lease Role in its own release namespace.
  const kubeconfig = await env.installChartRbac('scoped', { watchNamespace: 'team-a' }, 'fngate-scoped');
  const key = await env.createKeySecret('team-a-key', { namespace: 'team-a' });
  const a = await backend('team-a-0');
  const b = await backend('team-b-0');
  await env.apply(
    backendSlice(a, 'svc', { namespace: 'team-a' }),
    backendSlice(b, 'svc', { namespace: 'team-b' }),
    functionObject('fa', { functionId: 'fn-team-a', activeVersion: 'v1', versions: [serviceVersion('v1', 'svc', 'grpc')] }, 'team-a'),
    functionObject('fb', { functionId: 'fn-team-b', activeVersion: 'v1', versions: [serviceVersion('v1', 'svc', 'grpc')] }, 'team-b'),
  );
  // The all-namespaces gateway sees both (and, holding the Lease in fngate-system, writes their status).
  await routed('fa', { v1: 1 }, 'team-a');
  await routed('fb', { v1: 1 }, 'team-b');

  const scoped = await env.startGateway('scoped-0', { args: ['--namespace', 'team-a'], kubeconfig, env: { POD_NAMESPACE: 'fngate-scoped' } });
  const sc = clients(t, scoped, key);
  const ra = await sc.once('fn-team-a');
  t.match([ra.status, ra.reply?.backend], [Status.OK, 'team-a-0'], `team-a's Function: ${summary(ra)}`);
  const rb = await sc.once('fn-team-b');
  t.equal(rb.status, Status.NOT_FOUND, `team-b's Function is not this gateway's: ${summary(rb)}`);
  const other = await clients(t, scoped, env.key).once('fn-team-a');
  t.equal(other.status, Status.UNAUTHENTICATED, `a key Secret in another namespace is not this gateway's: ${summary(other)}`);
  t.notMatch(scoped.logs(), /forbidden/i, 'no Forbidden answer: the namespaced Role is enough');
  t.equal((await fetch(`http://${scoped.admin}/readyz`)).status, 200);
});
