// The test Kubernetes API server itself (test/helpers/kube.ts, test/kube/apiserver/):
// kubectl works against it, objects persist, RBAC is enforced for static and
// ServiceAccount tokens, and a stop + start on the same port and data dir is the same cluster.
import t from 'tap';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { endpointAddress, startKubeApiServer } from '../helpers/kube.ts';

const NOBODY_TOKEN = 'nobody-token-0123456789';
const kube = await startKubeApiServer({ tokens: [{ name: 'nobody', token: NOBODY_TOKEN }] });
t.teardown(() => kube.dispose());

const configMap = (ns: string, name: string, data: Record<string, string>): string =>
  JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data });

t.test('ready line and kubeconfig', async (t) => {
  t.match(kube.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  t.equal(kube.url, `https://127.0.0.1:${kube.port}`);
  const kc = readFileSync(kube.kubeconfig, 'utf8');
  t.match(kc, kube.url);
  t.match(kc, /certificate-authority-data:/, 'the serving CA, not insecure-skip-tls-verify');
  const version = JSON.parse(await kube.kubectlOk(['version', '-o', 'json'])) as {
    clientVersion: { gitVersion: string };
    serverVersion: { gitVersion: string };
  };
  t.equal(version.clientVersion.gitVersion, version.serverVersion.gitVersion, 'kubectl and server are one release');
  t.match(version.serverVersion.gitVersion, /^v1\.\d+\.\d+$/);
});

t.test('kubectl get ns default', async (t) => {
  const out = await kube.kubectlOk(['get', 'ns', 'default', '-o', 'jsonpath={.metadata.name} {.status.phase}']);
  t.equal(out, 'default Active');
});

t.test('namespace and ConfigMap', async (t) => {
  await kube.kubectlOk(['create', 'namespace', 'kube-test']);
  await kube.kubectlOk(['apply', '-f', '-'], { input: configMap('kube-test', 'settings', { color: 'blue' }) });
  t.equal(await kube.kubectlOk(['-n', 'kube-test', 'get', 'configmap', 'settings', '-o', 'jsonpath={.data.color}']), 'blue');
});

t.test('EndpointSlices: loopback addresses are rejected, endpointAddress() is not', async (t) => {
  const slice = (name: string, ip: string): string =>
    JSON.stringify({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name, namespace: 'kube-test', labels: { 'kubernetes.io/service-name': 'greeter' } },
      addressType: 'IPv4',
      ports: [{ name: 'grpc', port: 50051, protocol: 'TCP' }],
      endpoints: [{ addresses: [ip], conditions: { ready: true } }],
    });
  const loopback = await kube.kubectl(['apply', '-f', '-'], { input: slice('greeter-lo', '127.0.0.1') });
  t.not(loopback.code, 0);
  t.match(loopback.stderr, /may not be in the loopback range/);
  await kube.kubectlOk(['apply', '-f', '-'], { input: slice('greeter-a', endpointAddress()) });
  t.equal(await kube.kubectlOk(['-n', 'kube-test', 'get', 'endpointslices', '-l', 'kubernetes.io/service-name=greeter', '-o', 'jsonpath={.items[*].endpoints[*].addresses[*]}']), endpointAddress());
});

t.test('RBAC is on', async (t) => {
  const denied = await kube.kubectl(['-n', 'kube-test', 'get', 'secrets'], { token: NOBODY_TOKEN });
  t.not(denied.code, 0);
  t.match(denied.stderr, /Forbidden/);
  t.match(denied.stderr, /User "nobody" cannot list resource "secrets"/);
  const bad = await kube.kubectl(['get', 'ns'], { token: 'not-a-token' });
  t.not(bad.code, 0);
  t.match(bad.stderr, /Unauthorized|must be logged in/);
  t.equal((await kube.kubectl(['-n', 'kube-test', 'get', 'secrets'])).code, 0, 'the admin may');
  const canI = await kube.kubectl(['auth', 'can-i', 'list', 'secrets', '-n', 'kube-test', '--as', 'nobody']);
  t.equal(canI.stdout.trim(), 'no', 'SubjectAccessReview agrees');
});

t.test('ServiceAccount tokens, bound by RBAC', async (t) => {
  await kube.kubectlOk(['-n', 'kube-test', 'create', 'serviceaccount', 'reader']);
  await kube.kubectlOk(['-n', 'kube-test', 'create', 'role', 'cm-reader', '--verb=get,list', '--resource=configmaps']);
  await kube.kubectlOk(['-n', 'kube-test', 'create', 'rolebinding', 'cm-reader', '--role=cm-reader', '--serviceaccount=kube-test:reader']);
  const token = (await kube.kubectlOk(['-n', 'kube-test', 'create', 'token', 'reader', '--duration=1h'])).trim();
  t.match(token, /^ey/, 'a JWT');
  const whoami = JSON.parse(await kube.kubectlOk(['auth', 'whoami', '-o', 'json'], { token })) as { status: { userInfo: { username: string } } };
  t.equal(whoami.status.userInfo.username, 'system:serviceaccount:kube-test:reader');
  t.equal(await kube.kubectlOk(['-n', 'kube-test', 'get', 'cm', 'settings', '-o', 'jsonpath={.data.color}'], { token }), 'blue');
  const denied = await kube.kubectl(['-n', 'kube-test', 'get', 'secrets'], { token });
  t.match(denied.stderr, /Forbidden/);
  // a kubeconfig for that identity (what the gateway will run with)
  const kc = kube.writeKubeconfig(join(kube.dataDir, 'reader.kubeconfig'), token, 'kube-test');
  t.match(readFileSync(kc, 'utf8'), /token: ey/);
  t.equal(await kube.kubectlOk(['get', 'cm', 'settings', '-o', 'jsonpath={.data.color}'], { kubeconfig: kc }), 'blue', 'its namespace, its token');
});

t.test('stop and start on the same port and data dir', async (t) => {
  const { port, url, kubeconfig, adminToken } = kube;
  const saToken = (await kube.kubectlOk(['-n', 'kube-test', 'create', 'token', 'reader'])).trim();
  const before = Date.now();
  await kube.stop();
  t.notOk(kube.running());
  const down = await kube.kubectl(['get', 'ns', 'default', '--request-timeout=2s']);
  t.not(down.code, 0, 'unreachable while stopped');
  await kube.start();
  t.comment(`stop + start took ${Date.now() - before} ms`);
  t.equal(kube.port, port);
  t.equal(kube.url, url);
  t.equal(kube.kubeconfig, kubeconfig);
  t.equal(kube.adminToken, adminToken);
  t.equal(await kube.kubectlOk(['-n', 'kube-test', 'get', 'configmap', 'settings', '-o', 'jsonpath={.data.color}']), 'blue', 'the ConfigMap survived');
  t.equal(await kube.kubectlOk(['-n', 'kube-test', 'get', 'cm', 'settings', '-o', 'jsonpath={.data.color}'], { token: saToken }), 'blue', 'a ServiceAccount token from before still works');
  t.match((await kube.kubectl(['-n', 'kube-test', 'get', 'secrets'], { token: NOBODY_TOKEN })).stderr, /Forbidden/, 'static tokens and RBAC as before');

  await kube.restart();
  t.equal(kube.port, port);
  t.equal(await kube.kubectlOk(['get', 'ns', 'kube-test', '-o', 'jsonpath={.metadata.name}']), 'kube-test', 'and again, via restart()');
});
