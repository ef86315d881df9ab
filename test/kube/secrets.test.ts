// API keys registered as Kubernetes Secrets (docs/reference.md, Credentials), end to end: a Secret
// made by `fngate keys create --output secret` and applied with kubectl lets its key call the
// functions its annotation names; deleting the Secret revokes the key for new RPCs within
// seconds, also on a connection already open; changing the annotation changes what it may
// call; Secrets without the label, or malformed ones, register nothing and take no other
// key down with them. The gateway lists Secrets under the chart's ClusterRole (list, watch).
import t from 'tap';
import { parse } from 'yaml';
import { startEchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import type { CallResult, EchoClient } from '../helpers/echo-client.ts';
import { sha256Hex } from '../helpers/files.ts';
import { endpointAddress } from '../helpers/kube.ts';
import { backendSlice, current, fngateKeysCreate, functionObject, readyEndpointsOf, serviceVersion, startKubeEnv, Status, summary } from '../helpers/kube-fixtures.ts';
import type { KubeObject } from '../helpers/kube-fixtures.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

const env = await startKubeEnv(t, { key: false });
const b = await startEchoBackend({ name: 'keys-a', host: endpointAddress() });
t.teardown(() => b.stop(1000));
await env.apply(
  backendSlice(b, 'keys'),
  functionObject('one', { functionId: 'fn-one', activeVersion: 'v1', versions: [serviceVersion('v1', 'keys', 'grpc')] }),
  functionObject('two', { functionId: 'fn-two', activeVersion: 'v1', versions: [serviceVersion('v1', 'keys', 'grpc')] }),
);
const gw = await env.startGateway('gw-keys');
await env.waitForFunction('one', (f) => current(f) && readyEndpointsOf(f)['v1'] === 1, 'one routed');
await env.waitForFunction('two', (f) => current(f) && readyEndpointsOf(f)['v1'] === 1, 'two routed');

const open: EchoClient[] = [];
t.teardown(() => {
  for (const c of open) c.close();
});
const client = (): EchoClient => {
  const c = echoClient(gw.h2c);
  open.push(c);
  return c;
};
const md = (key: string, functionId: string): Record<string, string> => ({ authorization: `Bearer ${key}`, 'function-id': functionId });

/** Calls on `c` until `pred` holds (the gateway's watch catching up); rejects after `timeoutMs`. */
async function callUntil(c: EchoClient, key: string, functionId: string, pred: (r: CallResult) => boolean, what: string, timeoutMs = 10_000): Promise<{ r: CallResult; ms: number }> {
  const start = Date.now();
  let r = await c.unary(md(key, functionId));
  while (!pred(r)) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms; last: ${summary(r)}\n--- gateway stderr (tail) ---\n${gw.logs().slice(-6000)}`);
    await sleep(100);
    r = await c.unary(md(key, functionId));
  }
  return { r, ms: Date.now() - start };
}

t.test('a key registered by `fngate keys create --output secret | kubectl apply` works; deleting the Secret revokes it on an open connection', async (t) => {
  const { secretYaml, key } = await fngateKeysCreate(['--name', 'ci', '--output', 'secret', '--namespace', 'default']);
  const secret = parse(secretYaml) as KubeObject & { data: { sha256: string } };
  t.match(secret.metadata, { name: 'fngate-key-ci', labels: { 'fngate.dev/api-key': 'true' }, annotations: { 'fngate.dev/functions': '*' } });
  t.equal(Buffer.from(secret.data.sha256, 'base64').toString(), sha256Hex(key), 'the Secret holds only the hash');
  t.notMatch(secretYaml, key, 'never the key itself');

  const c = client();
  const before = await c.unary(md(key, 'fn-one'));
  t.match([before.status, before.details], [Status.UNAUTHENTICATED, /invalid or revoked API key/], `unknown before the Secret exists: ${summary(before)}`);

  await env.kube.kubectlOk(['apply', '-f', '-'], { input: secretYaml });
  const { r: works, ms: addMs } = await callUntil(c, key, 'fn-one', (r) => r.status === Status.OK, 'key accepted');
  t.equal(works.reply?.backend, 'keys-a');
  t.comment(`accepted ${addMs} ms after kubectl apply`);
  t.equal((await c.unary(md(key, 'fn-two'))).status, Status.OK, "'*' allows every function");

  // A stream open when the Secret goes: new RPCs are refused, on this same connection.
  await env.remove('default', 'secret/fngate-key-ci');
  const { r: revoked, ms } = await callUntil(c, key, 'fn-one', (r) => r.status !== Status.OK, 'key revoked', 10_000);
  t.match([revoked.status, revoked.details], [Status.UNAUTHENTICATED, /invalid or revoked API key/], summary(revoked));
  t.ok(ms < 5000, `revoked within seconds (${ms} ms after kubectl delete)`);
  const fresh = echoClient(gw.h2c);
  open.push(fresh);
  t.equal((await fresh.unary(md(key, 'fn-one'))).status, Status.UNAUTHENTICATED, 'and on new connections');
});

t.test('the functions annotation restricts a key; changing it takes effect', async (t) => {
  const { secretYaml, key } = await fngateKeysCreate(['--name', 'only-one', '--functions', 'fn-one', '--output', 'secret', '--namespace', 'default']);
  await env.kube.kubectlOk(['apply', '-f', '-'], { input: secretYaml });
  const c = client();
  await callUntil(c, key, 'fn-one', (r) => r.status === Status.OK, 'restricted key accepted');
  const denied = await c.unary(md(key, 'fn-two'));
  t.match([denied.status, denied.details], [Status.PERMISSION_DENIED, /may not invoke function fn-two/], summary(denied));

  await env.kube.kubectlOk(['-n', 'default', 'annotate', '--overwrite', 'secret', 'fngate-key-only-one', 'fngate.dev/functions=fn-one,fn-two']);
  const { r } = await callUntil(c, key, 'fn-two', (x) => x.status === Status.OK, 'fn-two allowed after the annotation change');
  t.equal(r.reply?.backend, 'keys-a');
  await env.kube.kubectlOk(['-n', 'default', 'annotate', '--overwrite', 'secret', 'fngate-key-only-one', 'fngate.dev/functions=fn-two']);
  const { r: gone } = await callUntil(c, key, 'fn-one', (x) => x.status !== Status.OK, 'fn-one refused after the annotation change');
  t.equal(gone.status, Status.PERMISSION_DENIED, summary(gone));
});

t.test('Secrets in other namespaces count (all-namespaces mode); unlabelled and malformed ones register nothing', async (t) => {
  await env.namespaces('team-k');
  const { secretYaml, key } = await fngateKeysCreate(['--name', 'team', '--output', 'secret', '--namespace', 'team-k']);
  await env.kube.kubectlOk(['apply', '-f', '-'], { input: secretYaml });
  const c = client();
  await callUntil(c, key, 'fn-one', (r) => r.status === Status.OK, 'a key Secret in team-k accepted');

  // The same shape without the label: not an API key.
  const unlabelled = parse((await fngateKeysCreate(['--name', 'unlabelled', '--output', 'secret', '--namespace', 'default'])).secretYaml) as KubeObject;
  const unlabelledKey = (await fngateKeysCreate(['--name', 'x', '--output', 'file'])).key;
  unlabelled.metadata.labels = {};
  (unlabelled as unknown as { data: { sha256: string } }).data.sha256 = Buffer.from(sha256Hex(unlabelledKey)).toString('base64');
  // Malformed: labelled, but data.sha256 is not a digest.
  const malformed: KubeObject = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'fngate-key-broken', namespace: 'default', labels: { 'fngate.dev/api-key': 'true' }, annotations: { 'fngate.dev/functions': '*' } },
    type: 'Opaque',
    data: { sha256: Buffer.from('not-a-digest').toString('base64') },
  };
  await env.apply(unlabelled, malformed);
  await waitFor(() => gw.logLines().some((l) => l['msg'] === 'API key Secret ignored' && l['secret'] === 'default/fngate-key-broken'), 10_000, 'warning about the malformed Secret');
  const warning = gw.logLines().find((l) => l['msg'] === 'API key Secret ignored');
  t.match(warning, { level: 'warn', secret: 'default/fngate-key-broken', error: /data\.sha256/ });
  t.equal((await c.unary(md(unlabelledKey, 'fn-one'))).status, Status.UNAUTHENTICATED, 'an unlabelled Secret is no key');
  t.equal((await c.unary(md(key, 'fn-one'))).status, Status.OK, 'the other keys still work');
  t.notMatch(gw.logs(), new RegExp(key), 'the key never appears in the log');
});
