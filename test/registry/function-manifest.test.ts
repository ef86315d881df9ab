import t from 'tap';
import { ManifestError, formatFieldPath, parseEndpointAddress, parseFunctionManifest } from '../../lib/registry/function-manifest.ts';

type Obj = Record<string, unknown>;

const base = (): Obj => ({
  apiVersion: 'fngate.dev/v1alpha1',
  kind: 'Function',
  metadata: { name: 'greeter', namespace: 'team-a' },
  spec: {
    functionId: '6f1e2c1a-3b1d-4c55-9a8e-0f7c2d1b9e10',
    activeVersion: 'v2',
    maxSessionsPerEndpoint: 1,
    versions: [
      { versionId: 'v1', service: { name: 'greeter-v1', port: 'grpc' } },
      { versionId: 'v2', endpoints: ['127.0.0.1:50051', '[::1]:50052'] },
    ],
  },
});

const obj = (v: unknown): Obj => v as Obj;

/** The thrown error's message (t.throws only matches substrings). */
const messageOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return err instanceof ManifestError ? err.message : `not a ManifestError: ${String(err)}`;
  }
  return 'did not throw';
};
const spec = (m: Obj): Obj => obj(m['spec']);
const version = (m: Obj, i: number): Obj => obj((spec(m)['versions'] as unknown[])[i]);

t.test('a valid manifest becomes a FunctionSpec', async (t) => {
  const m = base();
  m['status'] = { observedGeneration: 3, anything: [1, 2] };
  t.same(parseFunctionManifest(m, 'fns/greeter.yaml'), {
    name: 'greeter',
    namespace: 'team-a',
    functionId: '6f1e2c1a-3b1d-4c55-9a8e-0f7c2d1b9e10',
    activeVersion: 'v2',
    maxSessionsPerEndpoint: 1,
    scaling: { holdTimeoutMs: 0, maxPendingSessions: 100, targetSessionsPerEndpoint: 1 },
    versions: [
      { versionId: 'v1', backend: { kind: 'service', name: 'greeter-v1', port: 'grpc' } },
      { versionId: 'v2', backend: { kind: 'static', endpoints: ['127.0.0.1:50051', '[::1]:50052'] } },
    ],
    origin: 'fns/greeter.yaml',
  });
});

t.test('defaults and accepted variants', async (t) => {
  const m = base();
  delete obj(m['metadata'])['namespace'];
  delete spec(m)['maxSessionsPerEndpoint'];
  obj(m['metadata'])['labels'] = { app: 'greeter' };
  obj(m['metadata'])['uid'] = 'abc';
  version(m, 0)['service'] = { name: 'greeter-v1', port: 8080 };
  version(m, 1)['endpoints'] = ['Greeter.Example.COM:443', 'localhost:1', '10.0.0.1:65535'];
  const s = parseFunctionManifest(m, 'x');
  t.equal(s.namespace, 'default');
  t.equal(s.maxSessionsPerEndpoint, 0);
  t.same(s.versions[0]?.backend, { kind: 'service', name: 'greeter-v1', port: 8080 });
  t.same(s.versions[1]?.backend, { kind: 'static', endpoints: ['greeter.example.com:443', 'localhost:1', '10.0.0.1:65535'] });
});

// [description, mutation, field path, reason fragment]
const invalid: [string, (m: Obj) => void, string, string][] = [
  ['wrong apiVersion', (m) => { m['apiVersion'] = 'fngate.dev/v1'; }, 'apiVersion', 'must be fngate.dev/v1alpha1'],
  ['missing apiVersion', (m) => { delete m['apiVersion']; }, 'apiVersion', 'required'],
  ['wrong kind', (m) => { m['kind'] = 'Service'; }, 'kind', 'must be Function'],
  ['unknown top-level field', (m) => { m['specs'] = {}; }, 'specs', 'unknown field'],
  ['missing metadata', (m) => { delete m['metadata']; }, 'metadata', 'required'],
  ['missing name', (m) => { delete obj(m['metadata'])['name']; }, 'metadata.name', 'required'],
  ['upper-case name', (m) => { obj(m['metadata'])['name'] = 'Greeter'; }, 'metadata.name', 'DNS-1123 subdomain'],
  ['name too long', (m) => { obj(m['metadata'])['name'] = 'a'.repeat(254); }, 'metadata.name', 'DNS-1123 subdomain'],
  ['dotted namespace', (m) => { obj(m['metadata'])['namespace'] = 'a.b'; }, 'metadata.namespace', 'DNS-1123 label'],
  ['missing spec', (m) => { delete m['spec']; }, 'spec', 'required'],
  ['spec is a list', (m) => { m['spec'] = []; }, 'spec', 'must be a mapping'],
  ['unknown spec field', (m) => { spec(m)['activeVersions'] = 'v1'; }, 'spec.activeVersions', 'unknown field'],
  ['missing functionId', (m) => { delete spec(m)['functionId']; }, 'spec.functionId', 'required'],
  ['empty functionId', (m) => { spec(m)['functionId'] = ''; }, 'spec.functionId', 'required'],
  ['functionId with a space', (m) => { spec(m)['functionId'] = 'my fn'; }, 'spec.functionId', '1-128 characters'],
  ['functionId too long', (m) => { spec(m)['functionId'] = 'f'.repeat(129); }, 'spec.functionId', '1-128 characters'],
  ['numeric functionId', (m) => { spec(m)['functionId'] = 12345; }, 'spec.functionId', 'must be a string'],
  ['missing activeVersion', (m) => { delete spec(m)['activeVersion']; }, 'spec.activeVersion', 'required'],
  ['activeVersion names no version', (m) => { spec(m)['activeVersion'] = 'v3'; }, 'spec.activeVersion', '"v3" names no version (versions: v1, v2)'],
  ['negative maxSessionsPerEndpoint', (m) => { spec(m)['maxSessionsPerEndpoint'] = -1; }, 'spec.maxSessionsPerEndpoint', 'integer >= 0'],
  ['fractional maxSessionsPerEndpoint', (m) => { spec(m)['maxSessionsPerEndpoint'] = 1.5; }, 'spec.maxSessionsPerEndpoint', 'integer >= 0'],
  ['string maxSessionsPerEndpoint', (m) => { spec(m)['maxSessionsPerEndpoint'] = '2'; }, 'spec.maxSessionsPerEndpoint', 'integer >= 0'],
  ['missing versions', (m) => { delete spec(m)['versions']; }, 'spec.versions', 'required'],
  ['empty versions', (m) => { spec(m)['versions'] = []; }, 'spec.versions', 'at least one version'],
  ['versions not a list', (m) => { spec(m)['versions'] = { v1: {} }; }, 'spec.versions', 'must be a list'],
  ['version not a mapping', (m) => { (spec(m)['versions'] as unknown[])[1] = 'v2'; }, 'spec.versions[1]', 'must be a mapping'],
  ['missing versionId', (m) => { delete version(m, 1)['versionId']; }, 'spec.versions[1].versionId', 'required'],
  ['bad versionId', (m) => { version(m, 0)['versionId'] = 'v/1'; }, 'spec.versions[0].versionId', '1-128 characters'],
  ['duplicate versionId', (m) => { version(m, 1)['versionId'] = 'v1'; spec(m)['activeVersion'] = 'v1'; }, 'spec.versions[1].versionId', 'duplicate "v1"'],
  ['unknown version field', (m) => { version(m, 0)['weight'] = 1; }, 'spec.versions[0].weight', 'unknown field'],
  ['both service and endpoints', (m) => { version(m, 0)['endpoints'] = ['a:1']; }, 'spec.versions[0]', 'has both service and endpoints'],
  ['neither service nor endpoints', (m) => { delete version(m, 1)['endpoints']; }, 'spec.versions[1]', 'needs exactly one of service or endpoints'],
  ['service not a mapping', (m) => { version(m, 0)['service'] = 'greeter'; }, 'spec.versions[0].service', 'must be a mapping'],
  ['service without name', (m) => { version(m, 0)['service'] = { port: 80 }; }, 'spec.versions[0].service.name', 'required'],
  ['service bad name', (m) => { version(m, 0)['service'] = { name: '1greeter', port: 80 }; }, 'spec.versions[0].service.name', 'DNS-1035'],
  ['service without port', (m) => { version(m, 0)['service'] = { name: 'greeter' }; }, 'spec.versions[0].service.port', 'required'],
  ['service port 0', (m) => { version(m, 0)['service'] = { name: 'greeter', port: 0 }; }, 'spec.versions[0].service.port', '1..65535'],
  ['service port 65536', (m) => { version(m, 0)['service'] = { name: 'greeter', port: 65536 }; }, 'spec.versions[0].service.port', '1..65535'],
  ['service port name too long', (m) => { version(m, 0)['service'] = { name: 'greeter', port: 'a-very-long-port-name' }; }, 'spec.versions[0].service.port', 'port name'],
  ['service port digits as string', (m) => { version(m, 0)['service'] = { name: 'greeter', port: '8080' }; }, 'spec.versions[0].service.port', 'port name'],
  ['unknown service field', (m) => { version(m, 0)['service'] = { name: 'greeter', port: 80, namespace: 'x' }; }, 'spec.versions[0].service.namespace', 'unknown field'],
  ['endpoints not a list', (m) => { version(m, 1)['endpoints'] = '127.0.0.1:1'; }, 'spec.versions[1].endpoints', 'must be a list'],
  ['endpoint without port', (m) => { version(m, 1)['endpoints'] = ['127.0.0.1:1', 'localhost']; }, 'spec.versions[1].endpoints[1]', 'host:port'],
  ['endpoint port 0', (m) => { version(m, 1)['endpoints'] = ['localhost:0']; }, 'spec.versions[1].endpoints[0]', 'host:port'],
  ['endpoint bare ipv6', (m) => { version(m, 1)['endpoints'] = ['::1:50051']; }, 'spec.versions[1].endpoints[0]', 'host:port'],
  ['endpoint bad ipv4', (m) => { version(m, 1)['endpoints'] = ['300.1.1.1:80']; }, 'spec.versions[1].endpoints[0]', 'host:port'],
  ['endpoint with scheme', (m) => { version(m, 1)['endpoints'] = ['http://a:80']; }, 'spec.versions[1].endpoints[0]', 'host:port'],
  ['endpoint not a string', (m) => { version(m, 1)['endpoints'] = [50051]; }, 'spec.versions[1].endpoints[0]', 'host:port'],
  ['duplicate endpoint', (m) => { version(m, 1)['endpoints'] = ['LocalHost:80', 'localhost:80']; }, 'spec.versions[1].endpoints[1]', 'duplicate "localhost:80"'],
  ['scaling not a mapping', (m) => { spec(m)['scaling'] = '60s'; }, 'spec.scaling', 'must be a mapping'],
  ['unknown scaling field', (m) => { spec(m)['scaling'] = { holdTimeOut: '1s' }; }, 'spec.scaling.holdTimeOut', 'unknown field'],
  ['holdTimeout without unit', (m) => { spec(m)['scaling'] = { holdTimeout: '60' }; }, 'spec.scaling.holdTimeout', 'missing unit'],
  ['holdTimeout as a number', (m) => { spec(m)['scaling'] = { holdTimeout: 60 }; }, 'spec.scaling.holdTimeout', 'must be a string'],
  ['negative holdTimeout', (m) => { spec(m)['scaling'] = { holdTimeout: '-1s' }; }, 'spec.scaling.holdTimeout', 'negative duration'],
  ['maxPendingSessions 0', (m) => { spec(m)['scaling'] = { maxPendingSessions: 0 }; }, 'spec.scaling.maxPendingSessions', 'integer from 1'],
  ['fractional target', (m) => { spec(m)['scaling'] = { targetSessionsPerEndpoint: 1.5 }; }, 'spec.scaling.targetSessionsPerEndpoint', 'integer from 1'],
  ['scaleTargetRef of a StatefulSet', (m) => { version(m, 0)['scaleTargetRef'] = { kind: 'StatefulSet', name: 'g' }; }, 'spec.versions[0].scaleTargetRef.kind', 'must be Deployment'],
  ['scaleTargetRef without name', (m) => { version(m, 0)['scaleTargetRef'] = { maxReplicas: 2 }; }, 'spec.versions[0].scaleTargetRef.name', 'required'],
  ['scaleTargetRef max below min', (m) => { version(m, 0)['scaleTargetRef'] = { name: 'g', minReplicas: 3, maxReplicas: 2 }; }, 'spec.versions[0].scaleTargetRef.maxReplicas', 'below minReplicas 3'],
  ['scaleTargetRef unknown field', (m) => { version(m, 0)['scaleTargetRef'] = { name: 'g', replicas: 2 }; }, 'spec.versions[0].scaleTargetRef.replicas', 'unknown field'],
];

t.test('scaling and scaleTargetRef', async (t) => {
  const m = base();
  spec(m)['scaling'] = { holdTimeout: '1m30s', maxPendingSessions: 7, targetSessionsPerEndpoint: 4 };
  version(m, 0)['scaleTargetRef'] = { name: 'greeter-v1', maxReplicas: 8 };
  const s = parseFunctionManifest(m, 'x');
  t.same(s.scaling, { holdTimeoutMs: 90_000, maxPendingSessions: 7, targetSessionsPerEndpoint: 4 });
  version(m, 1)['endpoints'] = [];
  t.same(parseFunctionManifest(m, 'x').versions[1]?.backend, { kind: 'static', endpoints: [] }, 'no endpoints: a version scaled to zero');
  t.same(s.versions[0]?.scaleTarget, { kind: 'Deployment', name: 'greeter-v1', minReplicas: 0, maxReplicas: 8 });
  t.equal(s.versions[1]?.scaleTarget, undefined, 'a version without scaleTargetRef has none');
  // The target follows maxSessionsPerEndpoint unless given.
  spec(m)['scaling'] = { holdTimeout: '0' };
  spec(m)['maxSessionsPerEndpoint'] = 3;
  t.same(parseFunctionManifest(m, 'x').scaling, { holdTimeoutMs: 0, maxPendingSessions: 100, targetSessionsPerEndpoint: 3 });
});

t.test('invalid manifests name the field', async (t) => {
  t.ok(invalid.length >= 20);
  for (const [desc, mutate, field, reason] of invalid) {
    const m = base();
    mutate(m);
    const message = messageOf(() => parseFunctionManifest(m, 'fns/greeter.yaml'));
    const prefix = `fns/greeter.yaml: ${field}: `;
    t.ok(message.startsWith(prefix), `${desc}: message starts with "${prefix}"`, { found: message });
    t.ok(message.slice(prefix.length).includes(reason), `${desc}: reason mentions "${reason}"`, { found: message });
  }
});

t.test('a document that is not a mapping', async (t) => {
  t.equal(messageOf(() => parseFunctionManifest(['a'], 'f.yaml')), 'f.yaml: must be a mapping');
  t.equal(messageOf(() => parseFunctionManifest('Function', 'f.yaml')), 'f.yaml: must be a mapping');
  t.equal(messageOf(() => parseFunctionManifest(null, 'f.yaml')), 'f.yaml: required');
});

t.test('message format', async (t) => {
  const m = base();
  version(m, 1)['versionId'] = 'v1';
  t.equal(
    messageOf(() => parseFunctionManifest(m, 'fns/greeter.yaml (document 2)')),
    'fns/greeter.yaml (document 2): spec.versions[1].versionId: duplicate "v1"',
  );
  t.equal(formatFieldPath(['metadata', 'labels', 'app.kubernetes.io/name', 0]), 'metadata.labels["app.kubernetes.io/name"][0]');
});

t.test('parseEndpointAddress', async (t) => {
  t.same(parseEndpointAddress('127.0.0.1:50051'), { host: '127.0.0.1', port: 50051, key: '127.0.0.1:50051' });
  t.same(parseEndpointAddress('[::1]:443'), { host: '::1', port: 443, key: '[::1]:443' });
  t.same(parseEndpointAddress('[FE80::1]:8080'), { host: 'fe80::1', port: 8080, key: '[fe80::1]:8080' });
  t.same(parseEndpointAddress('Svc.NS.svc.cluster.local:0080'), { host: 'svc.ns.svc.cluster.local', port: 80, key: 'svc.ns.svc.cluster.local:80' });
  for (const bad of ['', 'host', ':80', 'host:', 'host:65536', 'host:-1', 'host:+80', '[::1]', '[nope]:80', '::1:80', 'a b:80', 'host:80:80', '-host:80', '1.2.3:80', 'a..b:80']) {
    t.equal(parseEndpointAddress(bad), undefined, JSON.stringify(bad));
  }
});
