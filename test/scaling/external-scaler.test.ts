// The KEDA external scaler on --scaler-listen (docs/reference.md, Scaling), called by a client
// built from KEDA's own protocol definition (fetched from KEDA's Go module by `make keda-files`),
// so fngate's protos/externalscaler.proto is checked against the real one. A held session makes
// the function active at once on StreamIsActive; the metric counts open plus waiting sessions
// and the target is targetSessionsPerEndpoint.
import t from 'tap';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import { startEchoBackend } from '../helpers/backend.ts';
import { echoClient, type EchoClient } from '../helpers/echo-client.ts';
import { randomKey, writeFunctionsDir, writeKeysFile, type TestFunction } from '../helpers/files.ts';
import { startGateway, type LogLine } from '../helpers/gateway.ts';
import { ask, kedaScalerClient } from '../helpers/keda.ts';
import { waitFor } from '../helpers/wait.ts';

const ref = (metadata: Record<string, string>) => ({ name: 'greeter-v1', namespace: 'default', scalerMetadata: metadata });

t.test('KEDA asks about a function held at zero, then running', async (t) => {
  const dir = t.testdir({});
  const backend = await startEchoBackend({ name: 'late' });
  const key = randomKey();
  writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'tester', key, functions: '*' }]);
  const fnDir = join(dir, 'functions');
  const cold = (endpoints: string[]): TestFunction => ({
    name: 'cold',
    functionId: 'fn-cold',
    activeVersion: 'v1',
    scaling: { holdTimeout: '60s', targetSessionsPerEndpoint: 4 },
    versions: [
      { versionId: 'v1', endpoints },
      { versionId: 'v2', endpoints: [] },
    ],
  });
  writeFunctionsDir(fnDir, [cold([])]);
  const gw = await startGateway(['--functions', fnDir, '--api-keys', join(dir, 'keys.yaml'), '--scaler-listen', '127.0.0.1:0', '--idle-timeout', '60s']);
  const clients: EchoClient[] = [];
  const scaler = kedaScalerClient(gw.scaler as string);
  const stream = scaler.StreamIsActive(ref({ functionId: 'fn-cold' }));
  t.teardown(async () => {
    stream.cancel();
    scaler.close();
    for (const c of clients) c.close();
    await gw.stop();
    await backend.stop(1000);
  });
  t.type(gw.scaler, 'string', 'the readiness line names the scaler listener');
  const pushed: boolean[] = [];
  stream.on('data', (m: { result: boolean }) => pushed.push(m.result));
  stream.on('error', () => {});
  await waitFor(() => pushed.length >= 1, 5000, 'the first StreamIsActive message');
  t.equal(pushed[0], false, 'StreamIsActive starts with the state now: inactive');

  const spec = await ask(scaler.GetMetricSpec.bind(scaler), ref({ functionId: 'fn-cold' }));
  t.same(spec.metricSpecs.map((m) => [m.metricName, Number(m.targetSize), m.targetSizeFloat]), [['sessions', 4, 4]], 'the target is targetSessionsPerEndpoint');
  const metric = async (metadata: Record<string, string>): Promise<number> => {
    const res = await ask(scaler.GetMetrics.bind(scaler), { scaledObjectRef: ref(metadata), metricName: 'sessions' });
    return res.metricValues[0]?.metricValueFloat ?? NaN;
  };
  t.equal(await metric({ functionId: 'fn-cold' }), 0);
  t.same(await ask(scaler.IsActive.bind(scaler), ref({ functionId: 'fn-cold' })), { result: false });

  // A call arrives while nothing runs: it waits, and the scaler is told at once.
  const c = echoClient(gw.h2c);
  clients.push(c);
  const call = c.unary({ authorization: `Bearer ${key}`, 'function-id': 'fn-cold' });
  await waitFor(() => pushed.includes(true), 10_000, 'StreamIsActive pushing active');
  t.same(await ask(scaler.IsActive.bind(scaler), ref({ functionId: 'fn-cold' })), { result: true });
  t.equal(await metric({ functionId: 'fn-cold' }), 1, 'one waiting session');
  t.equal(await metric({ functionId: 'fn-cold', versionId: 'v1' }), 1, 'versionId v1 named: the same');
  t.equal(await metric({ functionId: 'fn-cold', versionId: 'v2' }), 0, 'another version has none');

  // The Deployment scaled up: the endpoint appears, the call completes on it.
  const loaded = (l: LogLine): boolean => l['msg'] === 'functions file loaded';
  const before = gw.logLines().filter(loaded).length;
  writeFunctionsDir(fnDir, [cold([backend.address])]);
  await waitFor(() => gw.logLines().filter(loaded).length > before, 10_000, 'the new endpoint loaded');
  t.equal((await call).status, 0, 'the held call completed');
  t.equal(await metric({ functionId: 'fn-cold' }), 1, 'now one open session (the connection stays)');

  // The client goes: no session left, and the stream says inactive.
  const count = pushed.length;
  c.close();
  await waitFor(() => pushed.length > count && pushed[pushed.length - 1] === false, 10_000, 'StreamIsActive pushing inactive');
  t.equal(await metric({ functionId: 'fn-cold' }), 0);

  await t.test('a trigger that names no function, or an unknown one, is an error naming the ScaledObject', async (t) => {
    await t.rejects(ask(scaler.IsActive.bind(scaler), ref({})), { code: grpc.status.INVALID_ARGUMENT, details: 'ScaledObject default/greeter-v1: trigger metadata has no functionId' });
    await t.rejects(ask(scaler.GetMetricSpec.bind(scaler), ref({ functionId: 'nope' })), { code: grpc.status.NOT_FOUND, details: /no Function has functionId nope/ });
    await t.rejects(ask(scaler.IsActive.bind(scaler), ref({ functionId: 'fn-cold', versionId: 'v9' })), { code: grpc.status.NOT_FOUND, details: /has no version v9/ });
  });

  await t.test('StreamMetricSpec is UNIMPLEMENTED, so KEDA polls GetMetricSpec', async (t) => {
    const s = scaler.StreamMetricSpec(ref({ functionId: 'fn-cold' }));
    const err = await new Promise<grpc.ServiceError>((resolve) => s.on('error', resolve));
    t.equal(err.code, grpc.status.UNIMPLEMENTED);
  });
});
