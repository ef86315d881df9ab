// Function status as the gateway writes it, on a real API server: status.versions[].readyEndpoints,
// the Ready condition (EndpointsReady / NoReadyEndpoints / DuplicateFunctionId), observedGeneration
// = metadata.generation, `kubectl get fn` columns; no write when nothing changed; a functionId
// claimed by two Functions refused for both; and with two replicas only the holder of the
// Lease fngate-system/fngate-status-writer writes (managedFields name the writer:
// fieldManager fngate/<POD_NAME>), the other taking over when the holder stops (SIGTERM).
// Last, from the API server's audit log: the gateway (under the chart's ServiceAccount) was
// never refused, and used every verb the chart grants it: no missing and no excess RBAC.
import t from 'tap';
import {
  backendSlice,
  clients,
  current,
  echoBackends,
  functionObject,
  readyCondition,
  readyEndpointsOf,
  serviceVersion,
  startKubeEnv,
  Status,
  RELEASE,
  RELEASE_NS,
  statusManagers,
  summary,
} from '../helpers/kube-fixtures.ts';
import type { AuditEvent } from '../helpers/kube-fixtures.ts';
import { metric, type GatewayProcess } from '../helpers/gateway.ts';
import { sleep, waitForAsync } from '../helpers/wait.ts';

const env = await startKubeEnv(t, { audit: true });
const backend = echoBackends(t);

const g1 = await backend('greeter-v1-a');
const g2 = await backend('greeter-v1-b');
const s1 = await backend('greeter-v2-static', '127.0.0.1');
await env.apply(
  backendSlice(g1, 'greeter-v1'),
  backendSlice(g2, 'greeter-v1'),
  functionObject('greeter', {
    functionId: 'fn-greeter',
    activeVersion: 'v1',
    versions: [serviceVersion('v1', 'greeter-v1', 'grpc'), { versionId: 'v2', endpoints: [s1.address] }],
  }),
);
const gwA = await env.startGateway('gw-a');
const cl = clients(t, gwA, env.key);

t.test('status filled in: readyEndpoints per version, Ready True EndpointsReady, observedGeneration', async (t) => {
  const fn = await env.waitForFunction('greeter', (f) => current(f) && readyCondition(f)?.status === 'True', 'greeter Ready');
  t.same(fn.status?.versions, [
    { versionId: 'v1', readyEndpoints: 2 },
    { versionId: 'v2', readyEndpoints: 1 },
  ]);
  t.equal(fn.status?.observedGeneration, fn.metadata.generation, 'status.observedGeneration = metadata.generation');
  const cond = readyCondition(fn);
  t.match(cond, { type: 'Ready', status: 'True', reason: 'EndpointsReady', observedGeneration: fn.metadata.generation });
  t.match(cond?.message, /v1/, `message names the active version: ${cond?.message}`);
  t.match(cond?.lastTransitionTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  t.same(statusManagers(fn), ['fngate/gw-a'], 'written by this replica (fieldManager fngate/<POD_NAME>)');
  const [header, row] = (await env.kube.kubectlOk(['get', 'fn', 'greeter'])).trim().split('\n');
  t.same(header?.split(/\s+/), ['NAME', 'FUNCTION-ID', 'ACTIVE', 'READY', 'AGE'], 'kubectl get fn columns');
  t.match(row, /^greeter\s+fn-greeter\s+v1\s+True\s+\d+s$/, 'READY filled in from status');
  const lease = await env.getLease();
  t.equal(lease?.spec?.holderIdentity, 'gw-a', 'the only replica holds the Lease');
  t.equal(lease?.spec?.leaseDurationSeconds, 15);
});

t.test('a Function the API accepts but the gateway cannot route: Ready False InvalidSpec naming the field', async (t) => {
  // The CRD lets a string port of digits through; as a Service port it is a name, and port
  // names need a letter (IANA_SVC_NAME), so the gateway refuses it and says why.
  const applied = await env.tryApply(functionObject('digits', { functionId: 'fn-digits', activeVersion: 'v1', versions: [serviceVersion('v1', 'digits', '8080')] }));
  t.comment(`kubectl apply: ${applied.code === 0 ? 'accepted' : applied.stderr.trim()}`);
  if (applied.code !== 0) return; // a stricter CRD refusing it is fine too
  const fn = await env.waitForFunction('digits', (f) => readyCondition(f)?.reason === 'InvalidSpec', 'digits refused by the gateway');
  t.match(readyCondition(fn), { status: 'False', reason: 'InvalidSpec', message: /spec\.versions\[0\]\.service\.port/ });
  t.equal(fn.status?.observedGeneration, fn.metadata.generation);
  t.same(fn.status?.versions, []);
  const r = await cl.once('fn-digits');
  t.equal(r.status, Status.NOT_FOUND, summary(r));
  t.equal(gwA.logLines().filter((l) => l['msg'] === 'invalid Function refused' && l['function'] === 'default/digits').length, 1, 'one warning');
  await env.remove('default', 'function/digits');
});

t.test('no ready endpoint: Ready False NoReadyEndpoints, calls UNAVAILABLE; promotion to a ready version: True again', async (t) => {
  const before = readyCondition(await env.getFunction('greeter'));
  await sleep(1100); // lastTransitionTime has 1 s resolution
  await env.apply(backendSlice(g1, 'greeter-v1', { ready: false }), backendSlice(g2, 'greeter-v1', { ready: false }));
  const down = await env.waitForFunction('greeter', (f) => readyCondition(f)?.status === 'False', 'greeter not Ready');
  t.same(readyEndpointsOf(down), { v1: 0, v2: 1 });
  t.match(readyCondition(down), { status: 'False', reason: 'NoReadyEndpoints' });
  t.not(readyCondition(down)?.lastTransitionTime, before?.lastTransitionTime, 'lastTransitionTime moves with the status');
  t.match(await env.kube.kubectlOk(['get', 'fn', 'greeter', '--no-headers']), /^greeter\s+fn-greeter\s+v1\s+False\s+/);
  const r = await cl.once('fn-greeter');
  t.match([r.status, r.details], [Status.UNAVAILABLE, /no ready endpoint/], summary(r));

  await env.patch('default', 'function/greeter', { spec: { activeVersion: 'v2' } });
  const promoted = await env.waitForFunction('greeter', (f) => current(f) && f.metadata.generation === 2, 'generation 2 observed');
  t.equal(promoted.status?.observedGeneration, 2);
  t.match(readyCondition(promoted), { status: 'True', reason: 'EndpointsReady', observedGeneration: 2 });
  t.match(await env.kube.kubectlOk(['get', 'fn', 'greeter', '--no-headers']), /^greeter\s+fn-greeter\s+v2\s+True\s+/);
  const ok = await cl.once('fn-greeter');
  t.match([ok.status, ok.reply?.backend], [Status.OK, 'greeter-v2-static'], summary(ok));

  // Back to v1 with its endpoints ready, for the tests below.
  await env.apply(backendSlice(g1, 'greeter-v1'), backendSlice(g2, 'greeter-v1'));
  await env.patch('default', 'function/greeter', { spec: { activeVersion: 'v1' } });
  await env.waitForFunction('greeter', (f) => current(f) && f.metadata.generation === 3 && readyEndpointsOf(f)['v1'] === 2, 'generation 3, v1 ready');
});

t.test('a functionId claimed by two Functions: both refused (NOT_FOUND), DuplicateFunctionId on both', async (t) => {
  const d = await backend('dup-a');
  await env.apply(backendSlice(d, 'dup'), functionObject('dup-a', { functionId: 'fn-dup', activeVersion: 'v1', versions: [serviceVersion('v1', 'dup', 'grpc')] }));
  await env.waitForFunction('dup-a', (f) => current(f) && readyCondition(f)?.status === 'True', 'dup-a Ready');
  t.equal((await cl.once('fn-dup')).status, Status.OK, 'routable while it is the only claim');

  // The second claim in another namespace: function ids are global to the gateway.
  await env.namespaces('team-x');
  await env.apply(functionObject('dup-b', { functionId: 'fn-dup', activeVersion: 'v1', versions: [serviceVersion('v1', 'dup', 'grpc')] }, 'team-x'));
  const dupA = await env.waitForFunction('dup-a', (f) => readyCondition(f)?.reason === 'DuplicateFunctionId', 'dup-a refused');
  const dupB = await env.waitForFunction('dup-b', (f) => readyCondition(f)?.reason === 'DuplicateFunctionId', 'dup-b refused', { namespace: 'team-x' });
  for (const [fn, other] of [
    [dupA, 'team-x/dup-b'],
    [dupB, 'default/dup-a'],
  ] as const) {
    t.match(readyCondition(fn), { status: 'False', reason: 'DuplicateFunctionId', observedGeneration: fn.metadata.generation }, `${fn.metadata.namespace}/${fn.metadata.name}`);
    t.match(readyCondition(fn)?.message, other, `names the other claim: ${readyCondition(fn)?.message}`);
    t.equal(fn.status?.observedGeneration, fn.metadata.generation);
  }
  const r = await cl.once('fn-dup');
  t.match([r.status, r.details], [Status.NOT_FOUND, /fn-dup/], `refused for both: ${summary(r)}`);
  // Unrelated endpoint changes while the conflict lasts.
  const conflictLogs = (): number => gwA.logLines().filter((l) => l['functionId'] === 'fn-dup' && l['level'] === 'error').length;
  const logsBefore = conflictLogs();
  const u = await backend('dup-unrelated');
  for (const ready of [true, false, true]) await env.apply(backendSlice(u, 'dup-unrelated', { ready }));
  // Then a slice change that is written: slice changes are taken in order, so the three
  // unrelated ones have been by the time it shows.
  const d2 = await backend('dup-a2');
  await env.apply(backendSlice(d2, 'dup'));
  await env.waitForFunction('dup-a', (f) => readyEndpointsOf(f)['v1'] === 2, 'dup-a: a second endpoint, written during the conflict');
  t.ok(logsBefore >= 1, 'the conflict is logged');
  t.equal(conflictLogs(), logsBefore, `and not again on every EndpointSlice change (${logsBefore} lines when it began, ${conflictLogs()} after 4 changes)`);
  t.match(await env.kube.kubectlOk(['get', 'fn', '-A', '--no-headers']), /team-x\s+dup-b\s+fn-dup\s+v1\s+False/);

  await env.remove('team-x', 'function/dup-b');
  const back = await env.waitForFunction('dup-a', (f) => readyCondition(f)?.status === 'True', 'dup-a Ready again');
  t.equal(readyCondition(back)?.reason, 'EndpointsReady');
  const ok = await cl.once('fn-dup');
  t.match([ok.status, ok.reply?.backend], [Status.OK, 'dup-a'], `routable again: ${summary(ok)}`);
});

t.test('no status write when nothing changed (Lease renewals, unrelated slices)', async (t) => {
  const fn = await env.waitForFunction('greeter', (f) => current(f) && readyCondition(f)?.status === 'True', 'greeter settled');
  const renewed = (await env.getLease())?.spec?.renewTime;
  const other = await backend('unrelated-0');
  await env.apply(backendSlice(other, 'unrelated'));
  await waitForAsync(async () => (await env.getLease())?.spec?.renewTime !== renewed, 15_000, 'a Lease renewal after the unrelated slice');
  // Then a change that is written. Status is written one pass at a time, in the order the
  // changes came, so a write for greeter caused by the slice or the renewal has landed by now.
  const d3 = await backend('dup-a3');
  await env.apply(backendSlice(d3, 'dup'));
  await env.waitForFunction('dup-a', (f) => readyEndpointsOf(f)['v1'] === 3, 'dup-a: its third endpoint written');
  const later = await env.getFunction('greeter');
  t.equal(later.metadata.resourceVersion, fn.metadata.resourceVersion, 'greeter was not rewritten');
});

const closedBy = (gw: GatewayProcess, reason: string): Promise<number> => metric(gw, `fngate_connections_closed_by_gateway_total{reason="${reason}"}`).catch(() => 0);

t.test('two replicas: only the Lease holder writes status; when it stops, the other takes over', async (t) => {
  const gwB = await env.startGateway('gw-b');
  const clB = clients(t, gwB, env.key);
  const rB = await clB.once('fn-greeter');
  t.match([rB.status, rB.reply?.backend], [Status.OK, /^greeter-v1-/], `the non-holder routes too: ${summary(rB)}`);
  let lease = await env.getLease();
  t.equal(lease?.spec?.holderIdentity, 'gw-a', 'gw-a still holds the Lease');
  const transitions = lease?.spec?.leaseTransitions ?? 0;

  // A change while both run: written, and by gw-a only.
  const g3 = await backend('greeter-v1-c');
  await env.apply(backendSlice(g3, 'greeter-v1'));
  let fn = await env.waitForFunction('greeter', (f) => readyEndpointsOf(f)['v1'] === 3, 'v1: 3 ready endpoints');
  t.same(statusManagers(fn), ['fngate/gw-a'], 'only the holder wrote');
  // A session of gw-b on the new endpoint: gw-b ending it when the endpoint goes is the mark
  // that gw-b has taken the change in (where a wrong write of its own would start).
  await waitForAsync(async () => (await clB.client().unary(clB.md('fn-greeter'))).reply?.backend === 'greeter-v1-c', 10_000, 'a gw-b session on greeter-v1-c');
  const goneBefore = await closedBy(gwB, 'endpoint_gone');
  await env.apply(backendSlice(g3, 'greeter-v1', { ready: false }));
  await env.waitForFunction('greeter', (f) => readyEndpointsOf(f)['v1'] === 2, 'v1: 2 ready endpoints');
  await waitForAsync(async () => (await closedBy(gwB, 'endpoint_gone')) > goneBefore, 10_000, 'gw-b applied the change');
  fn = await env.getFunction('greeter');
  t.same(statusManagers(fn), ['fngate/gw-a'], 'still only the holder');
  t.notOk(gwB.logLines().some((l) => l['msg'] === 'status writer lease acquired'), 'gw-b never acquired the Lease');

  // The holder stops (SIGTERM): it gives the Lease up as it goes, so gw-b takes it at its
  // next try (every 5 s) instead of waiting out the 15 s lease duration. A change made while
  // nobody leads is written by gw-b when it takes over, with no further change needed.
  const lastRenew = new Date((await env.getLease())?.spec?.renewTime ?? 0).getTime();
  await gwA.stop();
  await env.apply(backendSlice(g3, 'greeter-v1', { ready: true }));
  const exited = await gwA.exited;
  t.match(exited, { code: 0 }, `gw-a exited cleanly on SIGTERM: ${JSON.stringify(exited)}`);
  const shutdown = gwA.logLines().slice(gwA.logLines().findIndex((l) => l['msg'] === 'signal received, draining'));
  t.comment(`gw-a's last log lines: ${shutdown.map((l) => l['msg']).join(' | ')}`);
  const released = await env.getLease();
  t.notOk(released?.spec?.holderIdentity === 'gw-a', `gw-a released the Lease on its way out (holder now: ${JSON.stringify(released?.spec?.holderIdentity)})`);
  lease = await env.waitForLease((l) => l?.spec?.holderIdentity === 'gw-b', 'gw-b holds the Lease', 25_000);
  const acquired = new Date(lease?.spec?.acquireTime ?? NaN).getTime();
  t.ok(acquired < lastRenew + 15_000, `gw-b took the Lease before gw-a's would have expired (${acquired - lastRenew} ms after gw-a's last renewal seen; the lease lasts 15 s)`);
  t.equal(lease?.spec?.leaseTransitions, transitions + 1, 'one transition');
  await gwB.waitForLog((l) => l['msg'] === 'status writer lease acquired', 5000);
  fn = await env.waitForFunction('greeter', (f) => readyEndpointsOf(f)['v1'] === 3, 'v1: 3 ready endpoints, written by gw-b on taking over', { gateways: [gwB], timeoutMs: 5000 });
  t.ok(statusManagers(fn).includes('fngate/gw-b'), `gw-b wrote: ${statusManagers(fn).join(',')}`);
  t.ok(gwB.logLines().some((l) => l['msg'] === 'status writer lease acquired'), 'gw-b logged the acquisition');
  t.match(readyCondition(fn), { status: 'True', reason: 'EndpointsReady' });
  const r = await clB.once('fn-greeter');
  t.equal(r.status, Status.OK, summary(r));
});

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
}

t.test("RBAC: the gateway used every verb the chart's roles grant, and was refused none (audit log)", async (t) => {
  const sa = `system:serviceaccount:${RELEASE_NS}:${RELEASE}`;
  const events = env.auditEvents(sa).filter((e) => e.objectRef?.resource !== undefined);
  t.ok(events.length > 0, `the audit log has the gateway's requests (${events.length})`);
  const describe = (verb: string, ref: AuditEvent['objectRef']): string =>
    `${verb} ${ref?.resource}${ref?.subresource ? `/${ref.subresource}` : ''}.${ref?.apiGroup || 'core'}`;
  const forbidden = events.filter((e) => e.responseStatus?.code === 403).map((e) => `${describe(e.verb, e.objectRef)} ${e.requestURI}`);
  t.same([...new Set(forbidden)], [], 'no request was forbidden: no verb is missing from the chart');
  const used = new Set(events.map((e) => describe(e.verb, e.objectRef)));

  const role = JSON.parse(await env.kube.kubectlOk(['get', 'clusterrole', RELEASE, '-o', 'json'])) as { rules: PolicyRule[] };
  const leases = JSON.parse(await env.kube.kubectlOk(['-n', RELEASE_NS, 'get', 'role', `${RELEASE}-leases`, '-o', 'json'])) as { rules: PolicyRule[] };
  const granted = new Set<string>();
  for (const rule of [...role.rules, ...leases.rules]) {
    for (const group of rule.apiGroups ?? ['']) {
      for (const resource of rule.resources ?? []) {
        const [res, sub] = resource.split('/');
        for (const verb of rule.verbs) granted.add(describe(verb, { resource: res, subresource: sub, apiGroup: group }));
      }
    }
  }
  t.comment(`granted by the chart: ${[...granted].sort().join(', ')}`);
  t.comment(`used by the gateway:  ${[...used].sort().join(', ')}`);
  t.same([...used].filter((u) => !granted.has(u)).sort(), [], 'every verb used is granted');
  t.same([...granted].filter((g) => !used.has(g)).sort(), [], 'every verb granted was used: no excess RBAC');
});
