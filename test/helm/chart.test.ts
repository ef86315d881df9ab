// The helm chart (deploy/helm/fngate) without a cluster: `helm lint --strict`, the objects
// `helm template` renders for the main value combinations (kinds, the exact RBAC rules,
// security context, probes, ports, the session-key Secret and its mount, config.yaml
// accepted by the gateway's own config loader), and values.schema.json / template checks
// refusing bad values with clear messages.
// helm comes from `make helm-tools` (.cache/bin/helm; FNGATE_HELM overrides).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../lib/config/load.ts';
import { CHART_DIR as CHART, helmIn, requireHelm } from '../helpers/helm.ts';
import type { HelmRun, Values } from '../helpers/helm.ts';

const KUBE_VERSION = '1.37.1';
const FULLNAME = 'fngate'; // release "fngate": the chart name is not repeated
const NS = 'gateway';

requireHelm();
const work = mkdtempSync(join(tmpdir(), 'fngate-helm-chart-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
// No cluster: KUBECONFIG names a file that does not exist.
const { run: helm, valuesFile } = helmIn(work, { kubeconfig: join(work, 'no-kubeconfig') });

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

async function template(values: Values = {}, extra: string[] = []): Promise<HelmRun> {
  return helm(['template', 'fngate', CHART, '-n', NS, '--kube-version', KUBE_VERSION, '-f', valuesFile(values), ...extra]);
}

async function render(values: Values = {}): Promise<K8sObject[]> {
  const r = await template(values);
  if (r.code !== 0) throw new Error(`helm template failed (${r.code}):\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

const find = (objs: K8sObject[], kind: string, name = FULLNAME): K8sObject => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`no ${kind} ${name} in: ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
};
const kinds = (objs: K8sObject[]): string[] => objs.map((o) => `${o.kind}/${o.metadata.name}`).sort();

// Typed views of the parts asserted below.
interface Container {
  name: string;
  image: string;
  command: string[];
  args: string[];
  env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  startupProbe: { httpGet: { path: string; port: string } };
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  lifecycle?: { preStop: { sleep?: { seconds: number }; exec?: { command: string[] } } };
  securityContext: Record<string, unknown>;
  resources: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
}
interface PodSpec {
  serviceAccountName: string;
  terminationGracePeriodSeconds: number;
  securityContext: Record<string, unknown>;
  containers: Container[];
  volumes: {
    name: string;
    secret?: { secretName: string; items?: { key: string; path: string }[]; defaultMode?: number };
    configMap?: { name: string };
  }[];
  topologySpreadConstraints?: { topologyKey: string; whenUnsatisfiable: string; labelSelector: unknown }[];
}
interface Deployment extends K8sObject {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
}
interface ServicePort {
  name: string;
  port: number;
  targetPort: string;
  appProtocol?: string;
}
interface Service extends K8sObject {
  spec: { type: string; externalTrafficPolicy?: string; selector: Record<string, string>; ports: ServicePort[] };
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
interface RoleObject extends K8sObject {
  rules: Rule[];
}
interface Binding extends K8sObject {
  roleRef: { kind: string; name: string };
  subjects: { kind: string; name: string; namespace: string }[];
}

const deployment = (objs: K8sObject[]): Deployment => find(objs, 'Deployment') as Deployment;
const container = (objs: K8sObject[]): Container => {
  const c = deployment(objs).spec.template.spec.containers[0];
  if (c === undefined) throw new Error('no container');
  return c;
};
const configYaml = (objs: K8sObject[]): Record<string, unknown> => {
  const cm = find(objs, 'ConfigMap') as K8sObject & { data: Record<string, string> };
  return parseAllDocuments(cm.data['config.yaml'] ?? '')[0]?.toJS() as Record<string, unknown>;
};

// The rules the gateway needs, no more (the RBAC tests run under the same ones).
const GATEWAY_RULES: Rule[] = [
  { apiGroups: ['fngate.dev'], resources: ['functions'], verbs: ['list', 'watch'] },
  { apiGroups: ['fngate.dev'], resources: ['functions/status'], verbs: ['patch'] },
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] },
];
const LEASE_RULES: Rule[] = [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'] }];

t.test('helm lint --strict passes for the default values and every combination', async (t) => {
  const combos: Values[] = [
    {},
    { service: { plaintext: { enabled: true } } },
    { tls: { enabled: false }, service: { plaintext: { enabled: true }, type: 'ClusterIP' } },
    { domain: 'example.com', tls: { certManager: { enabled: true, issuerRef: { name: 'letsencrypt' } } } },
    { autoscaling: { enabled: true } },
    { watchNamespace: 'team-a' },
    { serviceMonitor: { enabled: true }, networkPolicy: { enabled: true } },
    { sessions: { key: { existingSecret: 'gateway-session-keys', secretKey: 'keys' } } },
  ];
  for (const values of combos) {
    const r = await helm(['lint', '--strict', CHART, '--kube-version', KUBE_VERSION, '-f', valuesFile(values)]);
    t.equal(r.code, 0, `lint ${JSON.stringify(values)}\n${r.stdout}${r.stderr}`);
    t.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    t.notMatch(r.stdout, /\[(WARNING|ERROR)\]/, 'no warnings');
  }
});

t.test('default values: the objects, and no optional ones', async (t) => {
  const objs = await render();
  t.same(kinds(objs), [
    'ClusterRole/fngate',
    'ClusterRoleBinding/fngate',
    'ConfigMap/fngate',
    'Deployment/fngate',
    'Pod/fngate-test-readyz', // the `helm test` hook
    'PodDisruptionBudget/fngate',
    'Role/fngate-leases',
    'RoleBinding/fngate-leases',
    'Secret/fngate-session-key',
    'Service/fngate',
    'Service/fngate-admin',
    'ServiceAccount/fngate',
  ]);
  for (const o of objs) {
    if (!o.kind.startsWith('Cluster')) t.equal(o.metadata.namespace, NS, `${o.kind} in the release namespace`);
    t.equal(o.metadata.labels?.['app.kubernetes.io/instance'], 'fngate');
    t.equal(o.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm');
  }
  t.notOk(objs.some((o) => o.kind === 'CustomResourceDefinition'), 'CRDs come from crds/, not templates');
});

t.test('RBAC: exactly the verbs the gateway uses, cluster-wide by default', async (t) => {
  const objs = await render();
  const role = find(objs, 'ClusterRole') as RoleObject;
  t.same(role.rules, GATEWAY_RULES);
  const binding = find(objs, 'ClusterRoleBinding') as Binding;
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: FULLNAME });
  t.same(binding.subjects, [{ kind: 'ServiceAccount', name: FULLNAME, namespace: NS }]);
  const leases = find(objs, 'Role', `${FULLNAME}-leases`) as RoleObject;
  t.equal(leases.metadata.namespace, NS, 'the Lease Role is in the release namespace');
  t.same(leases.rules, LEASE_RULES);
  const leaseBinding = find(objs, 'RoleBinding', `${FULLNAME}-leases`) as Binding;
  t.same(leaseBinding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `${FULLNAME}-leases` });
  t.same(leaseBinding.subjects, [{ kind: 'ServiceAccount', name: FULLNAME, namespace: NS }]);
  t.equal(deployment(objs).spec.template.spec.serviceAccountName, FULLNAME);
  // --show-only, as the gateway's RBAC tests render it.
  const only = await template({}, ['--show-only', 'templates/rbac.yaml']);
  t.equal(only.code, 0, only.stderr);
  t.same(
    parseAllDocuments(only.stdout).map((d) => (d.toJS() as K8sObject).kind),
    ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'],
  );
});

t.test('RBAC: namespace-scoped mode', async (t) => {
  const objs = await render({ watchNamespace: 'team-a' });
  t.notOk(objs.some((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding'), 'nothing cluster-wide');
  const role = find(objs, 'Role') as RoleObject;
  t.equal(role.metadata.namespace, 'team-a');
  t.same(role.rules, GATEWAY_RULES);
  const binding = find(objs, 'RoleBinding') as Binding;
  t.equal(binding.metadata.namespace, 'team-a');
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: FULLNAME });
  t.same(binding.subjects, [{ kind: 'ServiceAccount', name: FULLNAME, namespace: NS }]);
  const leases = find(objs, 'Role', `${FULLNAME}-leases`) as RoleObject;
  t.equal(leases.metadata.namespace, NS, 'the Lease stays in the release namespace');
  t.same(leases.rules, LEASE_RULES);
  t.same(container(objs).args, ['serve', '--kubernetes', '--namespace', 'team-a', '--config', '/etc/fngate/config.yaml']);
  t.same(await render({ rbac: { create: false } }).then((o) => o.filter((x) => /Role/.test(x.kind))), [], 'rbac.create=false');
});

t.test('Deployment: command, env, ports, probes, security, shutdown, spread', async (t) => {
  const objs = await render();
  const d = deployment(objs);
  const pod = d.spec.template.spec;
  const c = container(objs);
  t.equal(d.spec.replicas, 2);
  t.equal(c.image, 'fngate:0.1.0', 'the chart appVersion is the default tag');
  t.same(c.command, ['node', '/app/dist/cmd/fngate.js']);
  t.same(c.args, ['serve', '--kubernetes', '--config', '/etc/fngate/config.yaml']);
  t.same(
    c.env.filter((e) => e.name.startsWith('POD_')),
    [
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    ],
  );
  t.same(
    c.ports.map((p) => [p.name, p.containerPort]),
    [
      ['grpc-h2c', 10081],
      ['grpc-tls', 10443],
      ['admin', 9090],
    ],
  );
  t.match(c.startupProbe, { httpGet: { path: '/healthz', port: 'admin' } });
  t.match(c.livenessProbe, { httpGet: { path: '/healthz', port: 'admin' } });
  t.match(c.readinessProbe, { httpGet: { path: '/readyz', port: 'admin' } });
  t.match(pod.securityContext, { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } });
  t.match(c.securityContext, {
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
  t.match(c.resources, { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '1Gi' } });
  // Shutdown: preStop sleep, then a drain of drain-timeout, inside the grace period.
  t.same(c.lifecycle, { preStop: { sleep: { seconds: 10 } } });
  t.equal(configYaml(objs)['drain-timeout'], '30s');
  t.equal(pod.terminationGracePeriodSeconds, 50);
  t.ok(pod.terminationGracePeriodSeconds > 10 + 30, 'grace period > preStop sleep + drain timeout');
  const custom = await render({ shutdown: { drainTimeoutSeconds: 120, preStopSleepSeconds: 0 } });
  t.equal(deployment(custom).spec.template.spec.terminationGracePeriodSeconds, 130);
  t.equal(container(custom).lifecycle, undefined, 'no preStop when its sleep is 0');
  t.equal(configYaml(custom)['drain-timeout'], '120s');
  const old = await helm(['template', 'fngate', CHART, '-n', NS, '--kube-version', '1.29.0']);
  t.equal(old.code, 0, old.stderr);
  t.match(old.stdout, /preStop:\n\s+exec:\n\s+command: \[sleep, "10"\]/, 'Kubernetes < 1.30: exec sleep instead of the sleep action');
  // Volumes: config.yaml, the TLS Secret and the session key (not subPaths, so renewals and
  // rotations show), a writable /tmp.
  t.same(
    c.volumeMounts.map((m) => [m.name, m.mountPath, m.subPath]),
    [
      ['config', '/etc/fngate/config.yaml', 'config.yaml'],
      ['tls', '/etc/fngate/tls', undefined],
      ['session-key', '/etc/fngate/session-key', undefined],
      ['tmp', '/tmp', undefined],
    ],
  );
  t.match(pod.volumes, [
    { name: 'config', configMap: { name: FULLNAME } },
    { name: 'tls', secret: { secretName: 'fngate-tls' } },
    { name: 'session-key', secret: { secretName: 'fngate-session-key' } },
    { name: 'tmp' },
  ]);
  t.same(
    pod.topologySpreadConstraints?.map((s) => [s.topologyKey, s.whenUnsatisfiable]),
    [
      ['topology.kubernetes.io/zone', 'ScheduleAnyway'],
      ['kubernetes.io/hostname', 'ScheduleAnyway'],
    ],
  );
  t.same(pod.topologySpreadConstraints?.[0]?.labelSelector, { matchLabels: d.spec.selector.matchLabels });
  const annotations = d.spec.template.metadata as { annotations?: Record<string, string> };
  t.match(annotations.annotations?.['checksum/config'], /^[0-9a-f]{64}$/, 'a config change rolls the pods');
  const pdb = find(objs, 'PodDisruptionBudget') as K8sObject & { spec: { maxUnavailable: number; selector: unknown } };
  t.equal(pdb.spec.maxUnavailable, 1);
  t.same(pdb.spec.selector, d.spec.selector);
});

t.test('config.yaml: what the gateway is given, accepted by its own config loader', async (t) => {
  const objs = await render({
    config: { 'log-level': 'debug', 'max-connection-age': '30m', 'jwks-url': 'https://id.example.com/jwks.json', 'jwt-issuer': 'https://id.example.com/' },
  });
  const cfg = configYaml(objs);
  t.same(cfg, {
    admin: '0.0.0.0:9090',
    'access-log': 'off',
    'drain-timeout': '30s',
    'idle-timeout': '30s',
    'jwks-url': 'https://id.example.com/jwks.json',
    'jwt-issuer': 'https://id.example.com/',
    listen: '0.0.0.0:10081',
    'log-level': 'debug',
    'max-connection-age': '30m',
    'session-key-file': '/etc/fngate/session-key/key',
    'session-linger': '30s',
    'tls-cert': '/etc/fngate/tls/tls.crt',
    'tls-key': '/etc/fngate/tls/tls.key',
    'tls-listen': '0.0.0.0:10443',
    workers: 1,
  });
  // The Deployment's arguments, with the rendered config.yaml in place of the mounted one.
  const loaded = (rendered: K8sObject[]) => {
    const file = valuesFile(configYaml(rendered), 'config');
    const args = container(rendered).args;
    t.same(args.slice(0, 2), ['serve', '--kubernetes']);
    t.same(args.slice(-2), ['--config', '/etc/fngate/config.yaml']);
    return loadConfig([...args.slice(1, -2), '--config', file], {});
  };
  const config = loaded(objs);
  t.equal(config.kubernetes, true);
  t.equal(config.listen.port, 10081);
  t.equal(config.tlsListen.port, 10443);
  t.equal(config.admin.port, 9090);
  t.equal(config.tlsCert, '/etc/fngate/tls/tls.crt');
  t.equal(config.drainTimeoutMs, 30_000);
  t.equal(config.logLevel, 'debug');
  t.equal(config.jwksUrl, 'https://id.example.com/jwks.json');
  // (the loader accepting session-key-file and max-connection-age is the check that the
  // gateway knows those flags)
  const scoped = await render({ watchNamespace: 'team-a', bindAddress: '::', tls: { enabled: false }, service: { plaintext: { enabled: true } } });
  const c2 = loaded(scoped);
  t.equal(c2.namespace, 'team-a');
  t.equal(c2.listen.host, '::');
  t.equal(c2.tlsCert, undefined, 'no TLS files without TLS');
  t.equal(configYaml(scoped)['max-connection-age'], '0s', 'max-connection-age off by default');
});

t.test('session key: a Secret made once per release, or the operator\'s; mounted, never fetched', async (t) => {
  type Secret = K8sObject & { type: string; data: Record<string, string> };
  const secretValue = (objs: K8sObject[], dataKey = 'key'): string => {
    const secret = find(objs, 'Secret', `${FULLNAME}-session-key`) as Secret;
    t.same(Object.keys(secret.data), [dataKey], 'one data key');
    return Buffer.from(secret.data[dataKey] ?? '', 'base64').toString('utf8');
  };
  const objs = await render();
  const secret = find(objs, 'Secret', `${FULLNAME}-session-key`) as Secret;
  t.equal(secret.metadata.namespace, NS);
  t.equal(secret.type, 'Opaque');
  t.equal(secret.metadata.annotations?.['helm.sh/resource-policy'], 'keep', 'helm uninstall leaves it (and its sessions valid)');
  const value = secretValue(objs);
  t.match(value, /^[A-Za-z0-9]{64}$/, 'one key line of 64 random characters (the gateway wants >= 32)');
  // helm template has no cluster to look the live Secret up in (apiserver.test.ts checks
  // that an upgrade keeps it), so each render makes a new one.
  t.not(secretValue(await render()), value, 'random per render without a live Secret');

  // Mounted read-only as a directory (a rotated key appears in place), the data key mapped
  // to the file config.yaml names; 0440, readable by the non-root user through fsGroup.
  const pod = deployment(objs).spec.template.spec;
  t.same(pod.volumes.find((v) => v.name === 'session-key'), {
    name: 'session-key',
    secret: { secretName: 'fngate-session-key', items: [{ key: 'key', path: 'key' }], defaultMode: 0o440 },
  });
  t.same(container(objs).volumeMounts.find((m) => m.name === 'session-key'), { name: 'session-key', mountPath: '/etc/fngate/session-key', readOnly: true });
  t.equal(configYaml(objs)['session-key-file'], '/etc/fngate/session-key/key', '--session-key-file, in config.yaml like the TLS files');
  t.match(pod.securityContext, { runAsUser: 1000, fsGroup: 1000 });
  t.notOk(container(objs).args.some((a) => a.includes('session-key')), 'not on the command line too');

  // Another data key name: the Secret and the mount follow, the file stays the same.
  const renamed = await render({ sessions: { key: { secretKey: 'current' } } });
  t.match(secretValue(renamed, 'current'), /^[A-Za-z0-9]{64}$/);
  t.same(deployment(renamed).spec.template.spec.volumes.find((v) => v.name === 'session-key')?.secret?.items, [{ key: 'current', path: 'key' }]);
  t.equal(configYaml(renamed)['session-key-file'], '/etc/fngate/session-key/key');

  // The operator's Secret: none made, theirs mounted.
  const own = await render({ sessions: { key: { existingSecret: 'gateway-session-keys', secretKey: 'keys.txt' } } });
  t.notOk(own.some((o) => o.kind === 'Secret'), 'the chart makes no Secret');
  t.same(deployment(own).spec.template.spec.volumes.find((v) => v.name === 'session-key')?.secret, {
    secretName: 'gateway-session-keys',
    items: [{ key: 'keys.txt', path: 'key' }],
    defaultMode: 0o440,
  });
  t.equal(configYaml(own)['session-key-file'], '/etc/fngate/session-key/key');
  // The gateway reads the file, not the API: RBAC is the same either way.
  t.same((find(own, 'ClusterRole') as RoleObject).rules, GATEWAY_RULES);
});

t.test('Service: LoadBalancer, 443 -> TLS; plaintext on and off; externalTrafficPolicy', async (t) => {
  const svc = (objs: K8sObject[]) => find(objs, 'Service') as Service;
  const def = svc(await render());
  t.equal(def.spec.type, 'LoadBalancer');
  t.equal(def.spec.externalTrafficPolicy, 'Cluster');
  t.same(def.spec.ports, [{ name: 'grpc-tls', port: 443, targetPort: 'grpc-tls', protocol: 'TCP' }]);
  t.same(def.spec.selector, { 'app.kubernetes.io/name': 'fngate', 'app.kubernetes.io/instance': 'fngate', 'app.kubernetes.io/component': 'gateway' });

  const both = svc(await render({ service: { plaintext: { enabled: true }, externalTrafficPolicy: 'Local' } }));
  t.equal(both.spec.externalTrafficPolicy, 'Local');
  t.same(
    both.spec.ports.map((p) => [p.name, p.port, p.targetPort, p.appProtocol]),
    [
      ['grpc-tls', 443, 'grpc-tls', undefined],
      ['grpc-h2c', 10081, 'grpc-h2c', 'kubernetes.io/h2c'],
    ],
  );

  const plainObjs = await render({ tls: { enabled: false }, service: { type: 'ClusterIP', plaintext: { enabled: true, port: 8080 } } });
  const plain = svc(plainObjs);
  t.equal(plain.spec.type, 'ClusterIP');
  t.equal(plain.spec.externalTrafficPolicy, undefined, 'only LoadBalancer and NodePort take externalTrafficPolicy');
  t.same(plain.spec.ports.map((p) => [p.name, p.port]), [['grpc-h2c', 8080]]);
  t.notOk(container(plainObjs).ports.some((p) => p.name === 'grpc-tls'), 'no TLS port in the pod');
  t.notOk(deployment(plainObjs).spec.template.spec.volumes.some((v) => v.name === 'tls'), 'no TLS Secret mounted');
  t.notOk('tls-listen' in configYaml(plainObjs));

  const admin = find(await render(), 'Service', 'fngate-admin') as Service;
  t.equal(admin.spec.type, 'ClusterIP', 'admin (metrics) never public');
  t.same(admin.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [['admin', 9090, 'admin']]);
});

t.test('TLS from an existing Secret', async (t) => {
  const objs = await render({ tls: { secretName: 'grpc-example-com' } });
  t.match(deployment(objs).spec.template.spec.volumes, [{ name: 'config' }, { name: 'tls', secret: { secretName: 'grpc-example-com' } }]);
  t.notOk(objs.some((o) => o.kind === 'Certificate'));
});

t.test('TLS from a cert-manager Certificate', async (t) => {
  const objs = await render({ domain: 'example.com', tls: { certManager: { enabled: true, issuerRef: { name: 'letsencrypt' } } } });
  const cert = find(objs, 'Certificate') as K8sObject & { spec: Record<string, unknown> };
  t.equal(cert.apiVersion, 'cert-manager.io/v1');
  t.match(cert.spec, {
    secretName: 'fngate-tls',
    dnsNames: ['grpc.example.com'],
    issuerRef: { name: 'letsencrypt', kind: 'ClusterIssuer', group: 'cert-manager.io' },
    usages: ['server auth', 'digital signature', 'key encipherment'],
  });
  t.match(deployment(objs).spec.template.spec.volumes, [{ name: 'config' }, { name: 'tls', secret: { secretName: 'fngate-tls' } }]);
  const names = await render({ tls: { certManager: { enabled: true, dnsNames: ['a.example.org', 'b.example.org'], issuerRef: { name: 'ca', kind: 'Issuer' } } } });
  t.match((find(names, 'Certificate') as K8sObject & { spec: Record<string, unknown> }).spec, {
    dnsNames: ['a.example.org', 'b.example.org'],
    issuerRef: { name: 'ca', kind: 'Issuer' },
  });
});

t.test('HPA on and off', async (t) => {
  const off = await render();
  t.notOk(off.some((o) => o.kind === 'HorizontalPodAutoscaler'));
  const on = await render({ autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 12, targetMemoryUtilizationPercentage: 80 } });
  const hpa = find(on, 'HorizontalPodAutoscaler') as K8sObject & { spec: Record<string, unknown> };
  t.equal(hpa.apiVersion, 'autoscaling/v2');
  t.match(hpa.spec, {
    scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: FULLNAME },
    minReplicas: 3,
    maxReplicas: 12,
    metrics: [
      { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } },
      { type: 'Resource', resource: { name: 'memory', target: { type: 'Utilization', averageUtilization: 80 } } },
    ],
    behavior: { scaleDown: { stabilizationWindowSeconds: 300 } },
  });
  t.equal(deployment(on).spec.replicas, undefined, 'the HPA owns the replica count');
});

t.test('ServiceMonitor and NetworkPolicy', async (t) => {
  const objs = await render({
    serviceMonitor: { enabled: true, labels: { release: 'prom' } },
    networkPolicy: { enabled: true, adminFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] },
  });
  const sm = find(objs, 'ServiceMonitor') as K8sObject & { spec: Record<string, unknown> };
  t.equal(sm.metadata.labels?.['release'], 'prom');
  t.match(sm.spec, {
    selector: { matchLabels: { 'app.kubernetes.io/instance': 'fngate', 'app.kubernetes.io/component': 'admin' } },
    endpoints: [{ port: 'admin', path: '/metrics' }],
  });
  const np = find(objs, 'NetworkPolicy') as K8sObject & { spec: { policyTypes: string[]; ingress: { ports: { port: string }[]; from?: unknown[] }[] } };
  t.same(np.spec.policyTypes, ['Ingress'], 'egress is left open unless rules are given');
  t.same(np.spec.ingress[0]?.ports.map((p) => p.port), ['grpc-tls']);
  t.equal(np.spec.ingress[0]?.from, undefined, 'gRPC from anywhere by default');
  t.same(np.spec.ingress[1]?.ports.map((p) => p.port), ['admin']);
  t.equal(np.spec.ingress[1]?.from?.length, 2, 'admin: the helm test pod and adminFrom');
});

t.test('NOTES: how to create a key and call a function', async (t) => {
  const r = await helm(['install', 'fngate', CHART, '-n', NS, '--dry-run=client', '-f', valuesFile({ domain: 'example.com', service: { plaintext: { enabled: true } } })]);
  t.equal(r.code, 0, r.stderr);
  const notes = r.stdout.slice(r.stdout.indexOf('NOTES:'));
  t.match(notes, 'fngate keys create --name ci --functions 6f1e2c1a-3b1d-4c55-9a8e-0f7c2d1b9e10 --output secret | kubectl apply -f -');
  t.match(notes, /grpcurl -H "authorization: Bearer \$FNGATE_API_KEY" \\\n\s+-H "function-id: [^"]+"/);
  t.match(notes, 'grpc.example.com:443 helloworld.Greeter/SayHello');
  t.match(notes, 'grpcurl -plaintext');
  t.match(notes, 'grpc.example.com:10081');
  t.match(notes, 'kubectl -n gateway create secret tls fngate-tls');
  t.match(notes, 'kind: Function');
  t.notMatch(notes, 'session-key', 'the chart-made session key needs no step');
  const own = await helm(['install', 'fngate', CHART, '-n', NS, '--dry-run=client', '-f', valuesFile({ sessions: { key: { existingSecret: 'gw-keys' } } })]);
  t.equal(own.code, 0, own.stderr);
  t.match(own.stdout.slice(own.stdout.indexOf('NOTES:')), 'kubectl -n gateway create secret generic gw-keys --from-literal=key="$(openssl rand -base64 48)"');
});

// Bad values: each stops `helm template` (and so install/upgrade) with a message naming the
// value at fault. The first ones are values.schema.json, the last the template's own checks.
const BAD: { what: string; values: Values; message: RegExp; template?: true }[] = [
  { what: 'negative replica count', values: { replicaCount: -1 }, message: /at '\/replicaCount': minimum: got -1, want 0/ },
  { what: 'misspelt Service type', values: { service: { type: 'Loadbalancer' } }, message: /at '\/service\/type': value must be one of 'LoadBalancer', 'NodePort', 'ClusterIP'/ },
  { what: 'bad externalTrafficPolicy', values: { service: { externalTrafficPolicy: 'Global' } }, message: /at '\/service\/externalTrafficPolicy': value must be one of 'Cluster', 'Local'/ },
  { what: 'port out of range', values: { service: { port: 70000 } }, message: /at '\/service\/port': maximum: got 70,?000, want 65,?535/ },
  { what: 'unknown gateway setting (typo)', values: { config: { 'idle-timout': '10s' } }, message: /at '\/config': additional properties 'idle-timout' not allowed/ },
  { what: 'a setting the chart owns', values: { config: { listen: ':8080' } }, message: /at '\/config': additional properties 'listen' not allowed/ },
  { what: 'the session key file (the chart mounts it)', values: { config: { 'session-key-file': '/keys' } }, message: /at '\/config': additional properties 'session-key-file' not allowed/ },
  { what: 'session key Secret not a DNS-1123 name', values: { sessions: { key: { existingSecret: 'Gateway_Keys' } } }, message: /at '\/sessions\/key\/existingSecret': 'Gateway_Keys' does not match pattern/ },
  { what: 'empty session key data key', values: { sessions: { key: { secretKey: '' } } }, message: /at '\/sessions\/key\/secretKey': minLength: got 0, want 1/ },
  { what: 'session key data key with a slash', values: { sessions: { key: { secretKey: 'keys/current' } } }, message: /at '\/sessions\/key\/secretKey': 'keys\/current' does not match pattern/ },
  { what: 'unknown sessions value (typo)', values: { sessions: { key: { existingSecrets: 'k' } } }, message: /at '\/sessions\/key': additional properties 'existingSecrets' not allowed/ },
  { what: 'duration without a unit', values: { config: { 'idle-timeout': '30' } }, message: /at '\/config\/idle-timeout': '30' does not match pattern/ },
  { what: 'max connection age without a unit', values: { config: { 'max-connection-age': '1800' } }, message: /at '\/config\/max-connection-age': '1800' does not match pattern/ },
  { what: 'negative max connection age', values: { config: { 'max-connection-age': '-5m' } }, message: /at '\/config\/max-connection-age': '-5m' does not match pattern/ },
  { what: 'max connection age as a number', values: { config: { 'max-connection-age': 1800 } }, message: /at '\/config\/max-connection-age': got number, want string/ },
  { what: 'unknown log level', values: { config: { 'log-level': 'verbose' } }, message: /at '\/config\/log-level': value must be one of 'debug', 'info', 'warn', 'error'/ },
  { what: 'drain timeout as a duration string', values: { shutdown: { drainTimeoutSeconds: '30s' } }, message: /at '\/shutdown\/drainTimeoutSeconds': got string, want integer/ },
  { what: 'invalid namespace name', values: { watchNamespace: 'Team_A' }, message: /at '\/watchNamespace': 'Team_A' does not match pattern/ },
  { what: 'unknown top-level value (typo)', values: { replicas: 3 }, message: /at '': additional properties 'replicas' not allowed/ },
  { what: 'cert-manager without an issuer', values: { domain: 'example.com', tls: { certManager: { enabled: true } } }, message: /at '\/tls\/certManager\/issuerRef\/name': minLength: got 0, want 1/ },
  { what: 'a file access log (read-only root filesystem)', values: { config: { 'access-log': '/var/log/fngate.log' } }, message: /at '\/config\/access-log': value must be one of 'off', 'stdout', 'stderr'/ },
  { what: 'no port at all', values: { tls: { enabled: false } }, message: /tls\.enabled=false and service\.plaintext\.enabled=false: the Service would have no port/, template: true },
  { what: 'cert-manager without names', values: { tls: { certManager: { enabled: true, issuerRef: { name: 'le' } } } }, message: /tls\.certManager\.enabled=true needs the certificate's names: set domain/, template: true },
  { what: 'autoscaling min > max', values: { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } }, message: /autoscaling\.minReplicas \(5\) is greater than autoscaling\.maxReplicas \(2\)/, template: true },
  { what: 'both PDB bounds', values: { podDisruptionBudget: { minAvailable: 1 } }, message: /podDisruptionBudget: set minAvailable or maxUnavailable, not both/, template: true },
  { what: 'a route kind the Gateway API has no passthrough for', values: { gatewayApi: { enabled: true, kind: 'HTTPRoute' } }, message: /at '\/gatewayApi\/kind': value must be one of 'TLSRoute', 'TCPRoute'/ },
  { what: 'a parentRef without a name', values: { gatewayApi: { parentRefs: [{ namespace: 'infra' }] } }, message: /at '\/gatewayApi\/parentRefs\/0': missing property 'name'/ },
  { what: 'a route to no Gateway', values: { domain: 'example.com', gatewayApi: { enabled: true } }, message: /gatewayApi\.enabled=true needs gatewayApi\.parentRefs/, template: true },
  { what: 'TLS passthrough without TLS', values: { tls: { enabled: false }, service: { plaintext: { enabled: true } }, gatewayApi: { enabled: true, parentRefs: [{ name: 'edge' }], hostnames: ['grpc.example.com'] } }, message: /gatewayApi\.kind=TLSRoute passes TLS through .* needs tls\.enabled=true/, template: true },
  { what: 'a TLSRoute without SNI names', values: { gatewayApi: { enabled: true, parentRefs: [{ name: 'edge' }] } }, message: /gatewayApi\.kind=TLSRoute needs the SNI names it routes/, template: true },
];

t.test('scaler.enabled: the KEDA scaler port, Service, config and RBAC', async (t) => {
  const off = await render();
  t.notOk(kinds(off).includes('Service/fngate-scaler'), 'no scaler Service by default');
  t.notMatch(JSON.stringify(find(off, 'ClusterRole')), /scaledobjects/, 'no ScaledObject rights by default');
  const on = await render({ scaler: { enabled: true } });
  const svc = find(on, 'Service', `${FULLNAME}-scaler`) as K8sObject & { spec: { type: string; ports: { port: number; targetPort: string }[] } };
  t.same([svc.spec.type, svc.spec.ports[0]?.port, svc.spec.ports[0]?.targetPort], ['ClusterIP', 9443, 'scaler']);
  t.match(JSON.stringify(find(on, 'ClusterRole')), /"apiGroups":\["keda.sh"\],"resources":\["scaledobjects"\],"verbs":\["list","create","patch","delete"\]/);
  const config = String((find(on, 'ConfigMap') as K8sObject & { data: Record<string, string> }).data['config.yaml']);
  t.match(config, /^scaler-listen: 0\.0\.0\.0:9443$/m);
  t.match(config, new RegExp(`^scaler-address: ${FULLNAME}-scaler\\.${NS}\\.svc:9443$`, 'm'));
});

t.test('gatewayApi: a TLSRoute (TLS passthrough) or a TCPRoute to the Service', async (t) => {
  const parentRefs = [{ name: 'edge', namespace: 'infra', sectionName: 'grpc-tls' }];
  const tlsRoute = find(await render({ domain: 'example.com', gatewayApi: { enabled: true, parentRefs } }), 'TLSRoute') as K8sObject & { spec: Record<string, unknown> };
  t.equal(tlsRoute.apiVersion, 'gateway.networking.k8s.io/v1');
  t.same(tlsRoute.spec, {
    parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge', namespace: 'infra', sectionName: 'grpc-tls' }],
    hostnames: ['grpc.example.com'],
    rules: [{ backendRefs: [{ name: FULLNAME, port: 443 }] }],
  }, 'SNI grpc.<domain> to the TLS port: fngate terminates TLS itself');
  const named = find(await render({ gatewayApi: { enabled: true, parentRefs, hostnames: ['a.example.com', 'b.example.com'] } }), 'TLSRoute') as K8sObject & { spec: { hostnames: string[] } };
  t.same(named.spec.hostnames, ['a.example.com', 'b.example.com']);
  const tcp = find(await render({ tls: { enabled: false }, service: { type: 'ClusterIP', plaintext: { enabled: true } }, gatewayApi: { enabled: true, kind: 'TCPRoute', parentRefs: [{ name: 'edge', port: 10081 }] } }), 'TCPRoute') as K8sObject & { spec: Record<string, unknown> };
  t.same(tcp.spec, {
    parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge', port: 10081 }],
    rules: [{ backendRefs: [{ name: FULLNAME, port: 10081 }] }],
  }, 'a TCPRoute has no hostnames; without TLS it goes to the plaintext port');
  t.notOk((await render()).some((o) => o.kind === 'TLSRoute' || o.kind === 'TCPRoute'), 'no route by default');
});

t.test('bad values are refused with clear messages', async (t) => {
  for (const bad of BAD) {
    const r = await template(bad.values);
    t.not(r.code, 0, `${bad.what}: refused`);
    t.match(r.stderr, bad.message, `${bad.what}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
    // helm lint reports a template's `fail` only as INFO; schema errors fail it.
    if (bad.template) continue;
    const lint = await helm(['lint', '--strict', CHART, '--kube-version', KUBE_VERSION, '-f', valuesFile(bad.values)]);
    t.not(lint.code, 0, `${bad.what}: helm lint fails too`);
    t.match(lint.stdout, bad.message, `${bad.what}: helm lint says why`);
  }
});
