// The Function CRD (deploy/helm/fngate/crds/function.yaml) on a real API server: applied
// with kubectl; valid Functions accepted; invalid ones refused at `kubectl apply` with the
// validation message (docs/reference.md, Functions: missing functionId, duplicate versionId, a
// version with both or neither of service and endpoints, activeVersion naming no version);
// the short name and the printer columns. No gateway runs here: status is status.test.ts.
import t from 'tap';
import { functionObject, serviceVersion, startKubeEnv } from '../helpers/kube-fixtures.ts';
import type { FunctionResource, FunctionSpecInput } from '../helpers/kube-fixtures.ts';

const env = await startKubeEnv(t, { key: false, rbac: false });
const { kube } = env;

t.test('the CRD is established: group, version, scope, short name, status subresource', async (t) => {
  const crd = JSON.parse(await kube.kubectlOk(['get', 'crd', 'functions.fngate.dev', '-o', 'json'])) as {
    spec: { group: string; scope: string; names: { shortNames: string[]; kind: string }; versions: { name: string; subresources?: { status?: object } }[] };
    status: { conditions: { type: string; status: string }[] };
  };
  t.equal(crd.spec.group, 'fngate.dev');
  t.equal(crd.spec.scope, 'Namespaced');
  t.equal(crd.spec.names.kind, 'Function');
  t.same(crd.spec.names.shortNames, ['fn']);
  t.same(crd.spec.versions.map((v) => v.name), ['v1alpha1']);
  t.ok(crd.spec.versions[0]?.subresources?.status, 'status subresource');
  t.ok(crd.status.conditions.some((c) => c.type === 'Established' && c.status === 'True'));
  const resources = await kube.kubectlOk(['api-resources', '--api-group=fngate.dev', '--no-headers']);
  t.match(resources, /^functions\s+fn\s+fngate\.dev\/v1alpha1\s+true\s+Function$/m, 'kubectl api-resources: short name fn, namespaced');
});

const VALID: Array<[string, FunctionSpecInput]> = [
  ['service-named-port', { functionId: 'fn-named', activeVersion: 'v1', versions: [serviceVersion('v1', 'greeter', 'grpc')] }],
  ['service-number-port', { functionId: 'fn-number', activeVersion: 'v1', versions: [serviceVersion('v1', 'greeter', 50051)] }],
  ['static-endpoints', { functionId: '6f1e2c1a-3b1d-4c55-9a8e-0f7c2d1b9e10', activeVersion: 'v2', versions: [{ versionId: 'v2', endpoints: ['10.0.0.1:50051', '[fd00::1]:50051', 'backend.example.com:8080'] }] }],
  [
    'two-versions',
    {
      functionId: 'fn.two_versions-1',
      activeVersion: 'v2',
      maxSessionsPerEndpoint: 1,
      versions: [serviceVersion('v1', 'greeter-v1', 'grpc'), { versionId: 'v2', endpoints: ['10.0.0.2:50051'] }],
    },
  ],
];

t.test('valid Functions are accepted', async (t) => {
  for (const [name, spec] of VALID) {
    const r = await env.tryApply(functionObject(name, spec));
    t.equal(r.code, 0, `${name}: ${r.stderr}`);
    t.match(r.stdout, `function.fngate.dev/${name} created`);
  }
  const fn = JSON.parse(await kube.kubectlOk(['get', 'fn', 'service-named-port', '-o', 'json'])) as FunctionResource;
  t.equal(fn.spec.maxSessionsPerEndpoint, 0, 'maxSessionsPerEndpoint defaults to 0');
  t.equal(fn.metadata.generation, 1);
  const numbered = JSON.parse(await kube.kubectlOk(['get', 'fn', 'service-number-port', '-o', 'json'])) as FunctionResource;
  t.equal(numbered.spec.versions?.[0]?.service?.port, 50051, 'a numeric port stays a number (int-or-string)');
});

const base = (more: Partial<FunctionSpecInput> = {}): FunctionSpecInput => ({
  functionId: 'fn-bad',
  activeVersion: 'v1',
  versions: [serviceVersion('v1', 'greeter', 'grpc')],
  ...more,
});

/** [case, spec, what kubectl must say (stderr)] */
const INVALID: Array<[string, FunctionSpecInput, RegExp[]]> = [
  ['missing functionId', { activeVersion: 'v1', versions: [serviceVersion('v1', 'greeter', 'grpc')] }, [/spec\.functionId: Required value/]],
  [
    'duplicate versionId',
    base({ versions: [serviceVersion('v1', 'greeter', 'grpc'), { versionId: 'v1', endpoints: ['10.0.0.1:1'] }] }),
    [/spec\.versions\[1\]: Duplicate value/, /"versionId":"v1"/],
  ],
  [
    'a version with both service and endpoints',
    base({ versions: [{ versionId: 'v1', service: { name: 'greeter', port: 'grpc' }, endpoints: ['10.0.0.1:1'] }] }),
    [/spec\.versions\[0\]: Invalid value: .*a version needs exactly one of service and endpoints/],
  ],
  ['a version with neither', base({ versions: [{ versionId: 'v1' }] }), [/spec\.versions\[0\]: Invalid value: .*a version needs exactly one of service and endpoints/]],
  ['activeVersion naming no version', base({ activeVersion: 'v9' }), [/spec\.activeVersion: Invalid value: .*activeVersion must name one of spec\.versions\[\]\.versionId/]],
  ['missing activeVersion', { functionId: 'fn-bad', versions: [serviceVersion('v1', 'greeter', 'grpc')] }, [/spec\.activeVersion: Required value/]],
  ['no versions', base({ versions: [] }), [/spec\.versions: Invalid value: 0: spec\.versions in body should have at least 1 items/]],
  ['functionId with a space', base({ functionId: 'fn bad' }), [/spec\.functionId: Invalid value: "fn bad": spec\.functionId in body should match/]],
  ['negative maxSessionsPerEndpoint', base({ maxSessionsPerEndpoint: -1 }), [/spec\.maxSessionsPerEndpoint: Invalid value: -1: spec\.maxSessionsPerEndpoint in body should be greater than or equal to 0/]],
  ['port 0', base({ versions: [serviceVersion('v1', 'greeter', 0)] }), [/spec\.versions\[0\]\.service\.port/]],
  ['port 65536', base({ versions: [serviceVersion('v1', 'greeter', 65536)] }), [/spec\.versions\[0\]\.service\.port/]],
  ['a port name that is no name', base({ versions: [serviceVersion('v1', 'greeter', 'Grpc_Port')] }), [/spec\.versions\[0\]\.service\.port/]],
  ['endpoint without a port', base({ versions: [{ versionId: 'v1', endpoints: ['10.0.0.1'] }] }), [/spec\.versions\[0\]\.endpoints\[0\]: Invalid value: "10\.0\.0\.1"/]],
];

t.test('invalid Functions are refused by kubectl apply, with the validation message', async (t) => {
  for (const [what, spec, messages] of INVALID) {
    const r = await env.tryApply(functionObject('bad', spec));
    t.not(r.code, 0, `${what}: refused`);
    t.match(r.stderr, /The Function "bad" is invalid/, `${what}: names the object`);
    for (const m of messages) t.match(r.stderr, m, `${what}: ${m.source}`);
  }
  const got = await kube.kubectl(['get', 'fn', 'bad']);
  t.not(got.code, 0, 'none of them was stored');
  t.match(got.stderr, /NotFound|not found/);
});

t.test('an update is validated too: activeVersion moved to a version that does not exist', async (t) => {
  const r = await kube.kubectl(['patch', 'fn', 'two-versions', '--type', 'merge', '-p', JSON.stringify({ spec: { activeVersion: 'v3' } })]);
  t.not(r.code, 0);
  t.match(r.stderr, /activeVersion must name one of spec\.versions\[\]\.versionId/);
  const ok = await kube.kubectl(['patch', 'fn', 'two-versions', '--type', 'merge', '-p', JSON.stringify({ spec: { activeVersion: 'v1' } })]);
  t.equal(ok.code, 0, ok.stderr);
  t.equal(await kube.kubectlOk(['get', 'fn', 'two-versions', '-o', 'jsonpath={.spec.activeVersion} {.metadata.generation}']), 'v1 2', 'promotion bumps the generation');
});

t.test('kubectl get fn: NAME, FUNCTION-ID, ACTIVE, READY, AGE', async (t) => {
  const out = await kube.kubectlOk(['get', 'fn']);
  const [header, ...rows] = out.trim().split('\n');
  t.same(header?.trim().split(/\s+/), ['NAME', 'FUNCTION-ID', 'ACTIVE', 'READY', 'AGE']);
  const row = rows.find((r) => r.startsWith('static-endpoints '));
  t.match(row, /^static-endpoints\s+6f1e2c1a-3b1d-4c55-9a8e-0f7c2d1b9e10\s+v2\s+(<none>\s+)?\d+s$/, `a row: ${row}`);
  t.equal(rows.length, VALID.length, 'one row per Function');
  // Status is the gateway's to write; with it present the READY column shows it.
  await kube.kubectlOk([
    'patch', 'fn', 'static-endpoints', '--subresource=status', '--type', 'merge',
    '-p', JSON.stringify({ status: { observedGeneration: 1, versions: [{ versionId: 'v2', readyEndpoints: 3 }], conditions: [{ type: 'Ready', status: 'True', reason: 'EndpointsReady', message: 'x' }] } }),
  ]);
  t.match(await kube.kubectlOk(['get', 'fn', 'static-endpoints', '--no-headers']), /^static-endpoints\s+6f1e2c1a-3b1d-4c55-9a8e-0f7c2d1b9e10\s+v2\s+True\s+\d+s\s*$/);
  const bad = await kube.kubectl([
    'patch', 'fn', 'static-endpoints', '--subresource=status', '--type', 'merge',
    '-p', JSON.stringify({ status: { conditions: [{ type: 'Ready', status: 'Maybe' }] } }),
  ]);
  t.not(bad.code, 0, 'the status schema is enforced too');
  t.match(bad.stderr, /Unsupported value: "Maybe"/);
});
