// The helm chart against a REAL kube-apiserver (test/helpers/kube.ts): `helm install
// --no-hooks` (which also creates the Function CRD from crds/) and `helm upgrade` succeed,
// the generated session key (also once rotated by hand) surviving upgrades, uninstall and
// reinstall (`lookup`, resource-policy keep);
// the rendered output of every main value combination passes `kubectl apply
// --dry-run=server` (admission, schema and RBAC-escalation checks included); and the
// installed ServiceAccount may do exactly what the gateway needs, no more, as the API
// server's own authorizer answers (`kubectl auth can-i`). No controllers run, so the
// Deployment never gets pods; that is fine here.
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHART_DIR as CHART, helmIn, requireHelm } from '../helpers/helm.ts';
import type { Values } from '../helpers/helm.ts';
import { REPO_ROOT } from '../helpers/gateway.ts';
import { startKubeApiServer } from '../helpers/kube.ts';

const GATEWAY_API_DIR = join(REPO_ROOT, '.cache/gateway-api-v1.6.3');

requireHelm();

const work = mkdtempSync(join(tmpdir(), 'fngate-helm-kube-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const kube = await startKubeApiServer();
t.teardown(() => kube.dispose());

const { run: helm, valuesFile } = helmIn(work, { kubeconfig: kube.kubeconfig, timeoutMs: 120_000 });

async function helmOk(args: string[]): Promise<string> {
  const r = await helm(args);
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')} exited ${r.code}\n--- stderr ---\n${r.stderr}--- stdout ---\n${r.stdout}`);
  return r.stdout;
}

const json = async <T>(args: string[]): Promise<T> => JSON.parse(await kube.kubectlOk([...args, '-o', 'json'])) as T;

/** The session key the chart generated for a release (data key `key`, base64 as stored). */
const sessionKey = (ns: string, secret: string): Promise<string> => kube.kubectlOk(['-n', ns, 'get', 'secret', secret, '-o', 'jsonpath={.data.key}']);
// Release fngate's, as first installed: every upgrade must keep it, or every session id
// the gateways issued stops opening.
let installedKey = '';

// cert-manager and the Prometheus Operator are not installed: stand-ins for their CRDs
// (group, kind and version as the real ones; any spec), so the combinations that render a
// Certificate or a ServiceMonitor can be checked by the server like the rest.
const standInCrd = (group: string, kind: string, plural: string): string =>
  JSON.stringify({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        },
      ],
    },
  });

t.test('helm install --no-hooks: the release, the CRD and every object', async (t) => {
  const out = await helmOk(['install', 'fngate', CHART, '-n', 'fngate', '--create-namespace', '--no-hooks', '-f', valuesFile({ domain: 'example.com' })]);
  t.match(out, /STATUS: deployed/);
  t.match(out, /fngate keys create --name ci/, 'NOTES printed');
  // crds/ is installed by helm install (and only then: upgrades leave CRDs alone).
  const crd = await json<{ status: { conditions: { type: string; status: string }[] } }>(['get', 'crd', 'functions.fngate.dev']);
  t.ok(crd.status.conditions.some((c) => c.type === 'Established' && c.status === 'True'), 'Function CRD established');
  for (const [kind, name] of [
    ['deployment', 'fngate'],
    ['service', 'fngate'],
    ['service', 'fngate-admin'],
    ['configmap', 'fngate'],
    ['serviceaccount', 'fngate'],
    ['poddisruptionbudget', 'fngate'],
    ['role', 'fngate-leases'],
    ['rolebinding', 'fngate-leases'],
    ['secret', 'fngate-session-key'],
  ] as const) {
    t.equal((await kube.kubectl(['-n', 'fngate', 'get', kind, name])).code, 0, `${kind}/${name}`);
  }
  installedKey = await sessionKey('fngate', 'fngate-session-key');
  t.match(Buffer.from(installedKey, 'base64').toString('utf8'), /^[A-Za-z0-9]{64}$/, 'a generated 64-character session key');
  t.equal((await kube.kubectl(['get', 'clusterrole', 'fngate'])).code, 0, 'clusterrole/fngate');
  t.equal((await kube.kubectl(['get', 'clusterrolebinding', 'fngate'])).code, 0, 'clusterrolebinding/fngate');
  const svc = await json<{ spec: { type: string; ports: { name: string; port: number; nodePort?: number }[] } }>(['-n', 'fngate', 'get', 'service', 'fngate']);
  t.equal(svc.spec.type, 'LoadBalancer');
  t.equal(svc.spec.ports[0]?.port, 443);
  t.ok((svc.spec.ports[0]?.nodePort ?? 0) > 0, 'the API server allocated a node port');
  // A Function applies against the CRD helm installed.
  await kube.kubectlOk(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'fngate.dev/v1alpha1',
      kind: 'Function',
      metadata: { name: 'greeter', namespace: 'default' },
      spec: { functionId: 'greeter-1', activeVersion: 'v1', versions: [{ versionId: 'v1', service: { name: 'greeter', port: 'grpc' } }] },
    }),
  });
  t.equal(await kube.kubectlOk(['get', 'fn', 'greeter', '-o', 'jsonpath={.spec.functionId}']), 'greeter-1');
});

t.test('helm upgrade: new values roll out; HPA replaces the replica count', async (t) => {
  const before = await json<{ spec: { template: { metadata: { annotations: Record<string, string> } } } }>(['-n', 'fngate', 'get', 'deployment', 'fngate']);
  const out = await helmOk([
    'upgrade', 'fngate', CHART, '-n', 'fngate', '--no-hooks',
    '-f', valuesFile({ domain: 'example.com', config: { 'log-level': 'debug' }, service: { plaintext: { enabled: true } }, autoscaling: { enabled: true, minReplicas: 3 } }),
  ]);
  t.match(out, /STATUS: deployed/);
  t.match(out, /REVISION: 2/);
  const after = await json<{ spec: { template: { metadata: { annotations: Record<string, string> } } } }>(['-n', 'fngate', 'get', 'deployment', 'fngate']);
  t.not(after.spec.template.metadata.annotations['checksum/config'], before.spec.template.metadata.annotations['checksum/config'], 'config change rolls the pods');
  t.match(await kube.kubectlOk(['-n', 'fngate', 'get', 'configmap', 'fngate', '-o', 'jsonpath={.data.config\\.yaml}']), /log-level: debug/);
  const hpa = await json<{ spec: { minReplicas: number; scaleTargetRef: { name: string } } }>(['-n', 'fngate', 'get', 'hpa', 'fngate']);
  t.equal(hpa.spec.minReplicas, 3);
  t.equal(hpa.spec.scaleTargetRef.name, 'fngate');
  const ports = await kube.kubectlOk(['-n', 'fngate', 'get', 'service', 'fngate', '-o', 'jsonpath={.spec.ports[*].name}']);
  t.equal(ports, 'grpc-tls grpc-h2c');
  const history = JSON.parse(await helmOk(['history', 'fngate', '-n', 'fngate', '-o', 'json'])) as { revision: number; status: string }[];
  t.same(history.map((h) => [h.revision, h.status]), [[1, 'superseded'], [2, 'deployed']]);
  t.equal(await sessionKey('fngate', 'fngate-session-key'), installedKey, 'the upgrade kept the session key (lookup)');
  // A key rotated by hand (docs/operating.md: a second line, then first) is what the next
  // upgrade keeps, not the value helm last applied.
  const rotated = Buffer.from(`${'n'.repeat(40)}\n${Buffer.from(installedKey, 'base64').toString('utf8')}\n`).toString('base64');
  await kube.kubectlOk(['-n', 'fngate', 'patch', 'secret', 'fngate-session-key', '-p', JSON.stringify({ data: { key: rotated } })]);
  // And back: upgrade to the defaults removes the HPA and the plaintext port again.
  await helmOk(['upgrade', 'fngate', CHART, '-n', 'fngate', '--no-hooks', '-f', valuesFile({ domain: 'example.com' })]);
  t.not((await kube.kubectl(['-n', 'fngate', 'get', 'hpa', 'fngate'])).code, 0, 'HPA removed');
  t.equal(await kube.kubectlOk(['-n', 'fngate', 'get', 'service', 'fngate', '-o', 'jsonpath={.spec.ports[*].name}']), 'grpc-tls');
  t.equal(await sessionKey('fngate', 'fngate-session-key'), rotated, 'an upgrade keeps a rotated key as it is');
});

// The verbs the gateway's ServiceAccount may use, as the API server's authorizer says.
const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'];
const canI = async (sa: string, verb: string, resource: string, ns: string | undefined, sub?: string): Promise<boolean> => {
  const args = ['auth', 'can-i', verb, resource, '--as', sa];
  args.push(...(ns === undefined ? ['--all-namespaces'] : ['-n', ns]));
  if (sub !== undefined) args.push('--subresource', sub);
  const r = await kube.kubectl(args);
  const answer = r.stdout.trim();
  if (answer !== 'yes' && answer !== 'no') throw new Error(`kubectl auth can-i: ${r.stderr}`);
  return answer === 'yes';
};
/** Every (resource, verb) the ServiceAccount may use among those asked, as "verb resource". */
async function allowed(sa: string, ns: string | undefined, leaseNs: string): Promise<string[]> {
  const asks: [string, string | undefined, string | undefined][] = [
    ['functions.fngate.dev', ns, undefined],
    ['functions.fngate.dev', ns, 'status'],
    ['endpointslices.discovery.k8s.io', ns, undefined],
    ['secrets', ns, undefined],
    ['leases.coordination.k8s.io', leaseNs, undefined],
    ['pods', ns, undefined],
    ['services', ns, undefined],
    ['configmaps', ns, undefined],
    ['endpoints', ns, undefined],
  ];
  const out: string[] = [];
  for (const [resource, where, sub] of asks) {
    const answers = await Promise.all(VERBS.map((verb) => canI(sa, verb, resource, where, sub)));
    VERBS.forEach((verb, i) => {
      if (answers[i]) out.push(`${verb} ${resource}${sub === undefined ? '' : `/${sub}`}`);
    });
  }
  return out;
}

const GATEWAY = [
  'list functions.fngate.dev',
  'watch functions.fngate.dev',
  'patch functions.fngate.dev/status',
  'list endpointslices.discovery.k8s.io',
  'watch endpointslices.discovery.k8s.io',
  'list secrets',
  'watch secrets',
];
const LEASES = ['get', 'list', 'watch', 'create', 'update', 'delete'].map((verb) => `${verb} leases.coordination.k8s.io`);

t.test('RBAC: the ServiceAccount may do exactly what the gateway needs', async (t) => {
  const sa = 'system:serviceaccount:fngate:fngate';
  t.same(await allowed(sa, undefined, 'fngate'), [...GATEWAY, ...LEASES], 'all namespaces (+ leases in the release namespace)');
  t.same(await allowed(sa, 'team-x', 'team-x'), GATEWAY, 'another namespace: no leases there');
});

t.test('namespace-scoped install: a Role in the watched namespace only', async (t) => {
  await kube.kubectlOk(['create', 'namespace', 'team-a']);
  const edgeValues = valuesFile({ watchNamespace: 'team-a', tls: { secretName: 'edge-cert' } });
  await helmOk(['install', 'edge', CHART, '-n', 'edge', '--create-namespace', '--no-hooks', '-f', edgeValues]);
  const key = await sessionKey('edge', 'edge-fngate-session-key');
  const sa = 'system:serviceaccount:edge:edge-fngate';
  t.equal((await kube.kubectl(['get', 'clusterrole', 'edge-fngate'])).code === 0, false, 'no ClusterRole');
  t.same(await allowed(sa, 'team-a', 'edge'), [...GATEWAY, ...LEASES], 'in team-a (+ leases in edge)');
  t.same(await allowed(sa, 'team-b', 'team-b'), [], 'nothing in another namespace');
  const args = await kube.kubectlOk(['-n', 'edge', 'get', 'deployment', 'edge-fngate', '-o', 'jsonpath={.spec.template.spec.containers[0].args}']);
  t.same(JSON.parse(args), ['serve', '--kubernetes', '--namespace', 'team-a', '--config', '/etc/fngate/config.yaml']);
  await helmOk(['uninstall', 'edge', '-n', 'edge']);
  t.not((await kube.kubectl(['-n', 'team-a', 'get', 'role', 'edge-fngate'])).code, 0, 'uninstall removes the Role');
  t.equal(await sessionKey('edge', 'edge-fngate-session-key'), key, 'uninstall leaves the session key (resource-policy keep)');
  // Installed again under the same name, the release adopts the kept Secret and its value.
  await helmOk(['install', 'edge', CHART, '-n', 'edge', '--no-hooks', '-f', edgeValues]);
  t.equal(await sessionKey('edge', 'edge-fngate-session-key'), key, 'a reinstall keeps the session key');
  await helmOk(['uninstall', 'edge', '-n', 'edge']);
});

t.test('kubectl apply --dry-run=server accepts every main combination', async (t) => {
  await kube.kubectlOk(['apply', '-f', '-'], { input: standInCrd('cert-manager.io', 'Certificate', 'certificates') });
  await kube.kubectlOk(['apply', '-f', '-'], { input: standInCrd('monitoring.coreos.com', 'ServiceMonitor', 'servicemonitors') });
  await kube.kubectlOk(['wait', '--for=condition=Established', 'crd/certificates.cert-manager.io', 'crd/servicemonitors.monitoring.coreos.com']);
  // The Gateway API's own CRDs (standard channel, from its Go module: make upstream-files).
  for (const file of readdirSync(GATEWAY_API_DIR).filter((f) => f.endsWith('.yaml'))) await kube.kubectlOk(['apply', '--server-side', '-f', join(GATEWAY_API_DIR, file)]);
  await kube.kubectlOk(['wait', '--for=condition=Established', 'crd/tlsroutes.gateway.networking.k8s.io', 'crd/tcproutes.gateway.networking.k8s.io']);
  await kube.kubectlOk(['create', 'namespace', 'dry']);
  // The `helm test` Pod runs as the namespace's default ServiceAccount, which a real
  // cluster's ServiceAccount controller creates (none runs here).
  await kube.kubectlOk(['-n', 'dry', 'create', 'serviceaccount', 'default']);
  const combos: [string, Values][] = [
    ['defaults (TLS from a Secret)', {}],
    ['TLS from cert-manager', { domain: 'example.com', tls: { certManager: { enabled: true, issuerRef: { name: 'letsencrypt' } } } }],
    ['TLS + plaintext, Local traffic policy', { service: { plaintext: { enabled: true }, externalTrafficPolicy: 'Local' } }],
    ['plaintext only, ClusterIP', { tls: { enabled: false }, service: { type: 'ClusterIP', plaintext: { enabled: true } } }],
    ['HPA', { autoscaling: { enabled: true, targetMemoryUtilizationPercentage: 80 } }],
    ['namespace-scoped', { watchNamespace: 'team-a' }],
    ['ServiceMonitor + NetworkPolicy', { serviceMonitor: { enabled: true }, networkPolicy: { enabled: true, egress: [{ ports: [{ port: 53, protocol: 'UDP' }] }] } }],
    ['NodePort, IPv6 bind, no PDB', { service: { type: 'NodePort' }, bindAddress: '::', podDisruptionBudget: { enabled: false } }],
    ['KEDA scaler', { scaler: { enabled: true }, networkPolicy: { enabled: true } }],
    ['Gateway API TLSRoute', { domain: 'example.com', service: { type: 'ClusterIP' }, gatewayApi: { enabled: true, parentRefs: [{ name: 'edge', namespace: 'infra', sectionName: 'grpc-tls' }] } }],
    ['Gateway API TCPRoute', { tls: { enabled: false }, service: { type: 'ClusterIP', plaintext: { enabled: true } }, gatewayApi: { enabled: true, kind: 'TCPRoute', parentRefs: [{ name: 'edge', sectionName: 'grpc' }] } }],
  ];
  for (const [what, values] of combos) {
    const rendered = await helmOk(['template', 'dry', CHART, '-n', 'dry', '--include-crds', '-f', valuesFile(values)]);
    const r = await kube.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: rendered });
    t.equal(r.code, 0, `${what}\n${r.stderr}`);
    t.match(r.stdout, /deployment\.apps\/dry-fngate (created|configured) \(server dry run\)/, what);
  }
  // The server really checks: a Deployment the API server refuses fails the same way.
  const broken = (await helmOk(['template', 'dry', CHART, '-n', 'dry'])).replace('terminationGracePeriodSeconds: 50', 'terminationGracePeriodSeconds: -5');
  const r = await kube.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: broken });
  t.not(r.code, 0, 'a broken manifest is refused');
  t.match(r.stderr, /terminationGracePeriodSeconds/);
});

t.test('the CRD in crds/ is the one the API server stores', async (t) => {
  const file = readFileSync(join(CHART, 'crds/function.yaml'), 'utf8');
  const r = await kube.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: file });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /functions\.fngate\.dev (unchanged|configured) \(server dry run\)/);
});

t.test('helm install with gatewayApi: the TLSRoute is served by the Gateway API CRDs', async (t) => {
  // The CRDs came with the dry-run test above (same API server).
  const values = valuesFile({ domain: 'example.com', service: { type: 'ClusterIP' }, gatewayApi: { enabled: true, parentRefs: [{ name: 'edge', namespace: 'infra', sectionName: 'grpc-tls' }] } });
  await helmOk(['install', 'routed', CHART, '-n', 'routed', '--create-namespace', '--no-hooks', '-f', values]);
  const got = await kube.kubectlOk(['-n', 'routed', 'get', 'tlsroute', '-o', 'custom-columns=NAME:.metadata.name,HOSTS:.spec.hostnames[*],BACKEND:.spec.rules[0].backendRefs[0].name,PORT:.spec.rules[0].backendRefs[0].port', '--no-headers']);
  t.match(got.trim().split(/\s+/), ['routed-fngate', 'grpc.example.com', 'routed-fngate', '443'], 'kubectl get tlsroute');
  await helmOk(['uninstall', 'routed', '-n', 'routed']);
  t.equal((await kube.kubectl(['-n', 'routed', 'get', 'tlsroute', 'routed-fngate'])).code, 1, 'gone with the release');
});
