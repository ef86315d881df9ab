// Scale from zero on a real API server (docs/operating.md, Scale to zero): a Function whose
// version names a Deployment at 0 replicas gets its KEDA ScaledObject (once KEDA's CRD,
// fetched from KEDA's own module, is installed; until then the Function says why not); a call
// held on one replica makes the other replica's scaler report active (replica Leases); the
// test then plays KEDA and the kubelet (replicas to 1, a backend and its EndpointSlice) and the
// held call completes, once, on it. With the API server gone the scaler still answers.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { backendSlice, clients, echoBackends, functionObject, RELEASE, startKubeEnv, type FunctionResource, type KubeObject } from '../helpers/kube-fixtures.ts';
import { ask, kedaScalerClient } from '../helpers/keda.ts';
import { waitFor, waitForAsync } from '../helpers/wait.ts';

const SCALED_OBJECT_CRD = fileURLToPath(new URL('../../.cache/keda-v2.21.1/keda.sh_scaledobjects.yaml', import.meta.url));
const SCALER_ADDRESS = 'fngate-scaler.fngate-system.svc:9443';

const env = await startKubeEnv(t);
const backend = echoBackends(t);
// The chart's RBAC with the scaler on: it adds scaledobjects.keda.sh.
const kubeconfig = await env.installChartRbac(RELEASE, { 'scaler.enabled': 'true' });

interface ScaledObjectResource {
  metadata: { name: string; ownerReferences?: Array<{ kind: string; name: string; uid: string; controller?: boolean }>; labels?: Record<string, string> };
  spec: {
    scaleTargetRef: { apiVersion?: string; kind?: string; name: string };
    minReplicaCount?: number;
    maxReplicaCount?: number;
    triggers: Array<{ type: string; metadata: Record<string, string> }>;
  };
}

const deployment = (name: string, replicas: number): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: 'default' },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'fn', image: 'example.invalid/fn:1' }] } },
  },
});

const gpu = (scaleTarget: boolean): KubeObject =>
  functionObject('gpu', {
    functionId: 'fn-gpu',
    activeVersion: 'v1',
    scaling: { holdTimeout: '60s', targetSessionsPerEndpoint: 2 },
    versions: [{ versionId: 'v1', service: { name: 'gpu', port: 'grpc' }, ...(scaleTarget ? { scaleTargetRef: { name: 'gpu', maxReplicas: 4 } } : {}) }],
  });

const scalingCondition = (fn: FunctionResource) => fn.status?.conditions?.find((c) => c.type === 'Scaling');

t.test('ScaledObject, cross-replica activity and a cold start', async (t) => {
  await env.apply(deployment('gpu', 0), gpu(true));
  const args = ['--scaler-listen', '127.0.0.1:0', '--scaler-address', SCALER_ADDRESS, '--session-linger', '2s'];
  const [a, b] = await Promise.all([env.startGateway('gw-a', { kubeconfig, args }), env.startGateway('gw-b', { kubeconfig, args })]);

  // KEDA is not installed yet: the Function says so.
  const missing = await env.waitForFunction('gpu', (fn) => scalingCondition(fn)?.reason === 'KedaNotInstalled', 'Scaling condition KedaNotInstalled');
  t.equal(scalingCondition(missing)?.status, 'False');
  t.match(scalingCondition(missing)?.message, /scaledobjects\.keda\.sh/);

  // KEDA's CRD arrives: within the recheck interval the ScaledObject is written.
  await env.kube.kubectlOk(['apply', '--server-side', '-f', SCALED_OBJECT_CRD]);
  await env.kube.kubectlOk(['wait', '--for=condition=Established', 'crd/scaledobjects.keda.sh', '--timeout=60s']);
  const wired = await env.waitForFunction('gpu', (fn) => scalingCondition(fn)?.status === 'True', 'Scaling condition True', { timeoutMs: 40_000 });
  t.equal(scalingCondition(wired)?.reason, 'ScaledObjectsReady');
  const so = await env.get<ScaledObjectResource>('/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/gpu-v1');
  t.ok(so, 'ScaledObject default/gpu-v1 exists');
  t.match(so?.metadata.ownerReferences, [{ kind: 'Function', name: 'gpu', uid: wired.metadata.uid, controller: true }], 'owned by the Function');
  t.same(so?.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'gpu' });
  t.same([so?.spec.minReplicaCount, so?.spec.maxReplicaCount], [0, 4]);
  t.same(so?.spec.triggers, [{ type: 'external-push', metadata: { scalerAddress: SCALER_ADDRESS, functionId: 'fn-gpu', versionId: 'v1' } }]);

  // KEDA holds StreamIsActive open on replica B; a call arrives on replica A.
  const scaler = kedaScalerClient(b.scaler as string);
  const stream = scaler.StreamIsActive({ name: 'gpu-v1', namespace: 'default', scalerMetadata: { functionId: 'fn-gpu' } });
  t.teardown(() => {
    stream.cancel();
    scaler.close();
  });
  const pushed: Array<{ result: boolean; at: number }> = [];
  stream.on('data', (m: { result: boolean }) => pushed.push({ result: m.result, at: performance.now() }));
  stream.on('error', () => {});
  await waitFor(() => pushed.length > 0, 10_000, 'the first StreamIsActive message');
  t.equal(pushed[0]?.result, false, 'nothing runs, nothing waits: inactive');

  const onA = clients(t, a, env.key);
  const sent = performance.now();
  const call = onA.client().unary(onA.md('fn-gpu'), {}, { deadlineMs: 60_000 });
  await waitFor(() => pushed.some((p) => p.result), 10_000, 'replica B reporting the session waiting on replica A');
  const seenAfterMs = Math.round((pushed.find((p) => p.result)?.at ?? 0) - sent);
  t.comment(`replica B's scaler pushed "active" ${seenAfterMs} ms after the call reached replica A`);
  const metrics = await ask(scaler.GetMetrics.bind(scaler), { scaledObjectRef: { name: 'gpu-v1', namespace: 'default', scalerMetadata: { functionId: 'fn-gpu' } }, metricName: 'sessions' });
  t.equal(metrics.metricValues[0]?.metricValueFloat, 1, 'replica B counts the session waiting on replica A');
  const spec = await ask(scaler.GetMetricSpec.bind(scaler), { name: 'gpu-v1', namespace: 'default', scalerMetadata: { functionId: 'fn-gpu' } });
  t.equal(spec.metricSpecs[0]?.targetSizeFloat, 2, 'the target is targetSessionsPerEndpoint');

  // KEDA scales the Deployment to 1; the kubelet starts the pod; its EndpointSlice appears.
  await env.patch('default', 'deployment/gpu', { spec: { replicas: 1 } });
  const pod = await backend('gpu-0');
  await env.apply(backendSlice(pod, 'gpu'));
  const r = await call;
  t.equal(r.status, 0, `the held call completed: ${r.details}`);
  t.equal(r.reply?.backend, 'gpu-0');
  t.ok(Number(r.initial['fngate-wait-ms']) > 0, `it says how long it waited (${String(r.initial['fngate-wait-ms'])} ms)`);
  t.equal(pod.calls, 1, 'forwarded once, never replayed');

  // The version stops naming its Deployment: its ScaledObject goes, and so does the condition.
  await env.apply(gpu(false));
  await env.waitForFunction('gpu', (fn) => scalingCondition(fn) === undefined, 'no Scaling condition');
  await waitForAsync(async () => (await env.get('/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/gpu-v1')) === undefined, 10_000, 'the ScaledObject deleted');
  t.pass('the ScaledObject was deleted');

  // The API server goes away (KEDA's HTTP add-on failed when a component it needed was
  // unreachable): the scaler keeps answering with what it knows, and never fails KEDA's call.
  const c = onA.client();
  t.equal((await c.unary(onA.md('fn-gpu'))).status, 0, 'a session open on replica A');
  const ref = { name: 'gpu-v1', namespace: 'default', scalerMetadata: { functionId: 'fn-gpu' } };
  await waitForAsync(async () => (await ask(scaler.IsActive.bind(scaler), ref)).result, 10_000, 'replica B seeing the open session');
  await env.kube.stop();
  for (let i = 0; i < 3; i++) {
    t.same(await ask(scaler.IsActive.bind(scaler), ref), { result: true }, `with the API server down, replica B still answers (${i + 1})`);
  }
  const down = await ask(scaler.GetMetrics.bind(scaler), { scaledObjectRef: ref, metricName: 'sessions' });
  t.ok((down.metricValues[0]?.metricValueFloat ?? 0) >= 1, 'and counts the session from what it last saw');
});
