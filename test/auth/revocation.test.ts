// Revoking an API key (docs/reference.md, Credentials) through the real gateway with --api-keys FILE:
// removing a key's entry takes effect for new RPCs once the gateway has loaded the file, also on
// connections already open; re-adding it restores access; a broken edit keeps the last good set.
import t from 'tap';
import { join } from 'node:path';
import { startEchoBackend } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import type { CallResult, EchoClient, MetadataRecord } from '../helpers/echo-client.ts';
import { randomKey, writeFileAtomic, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import type { TestKey } from '../helpers/files.ts';
import { startGateway } from '../helpers/gateway.ts';
import type { GatewayProcess, LogLine } from '../helpers/gateway.ts';
import { runPythonClient } from '../helpers/python.ts';
import { waitFor } from '../helpers/wait.ts';

const UNAUTHENTICATED = 16;
const FN = 'fn-guarded';

interface Teardown {
  teardown(fn: () => unknown): void;
  testdir(files: Record<string, string>): string;
}

interface Env {
  gw: GatewayProcess;
  backend: EchoBackend;
  keysFile: string;
  client(): EchoClient;
}

async function setup(t: Teardown, keys: TestKey[]): Promise<Env> {
  const dir = t.testdir({});
  const backend = await startEchoBackend({ name: 'guarded' });
  const clients: EchoClient[] = [];
  let gw: GatewayProcess | undefined;
  t.teardown(async () => {
    for (const c of clients) c.close();
    await gw?.stop();
    await backend.stop(1000);
  });
  const keysFile = join(dir, 'keys.yaml');
  writeKeysFile(keysFile, keys);
  const fnDir = join(dir, 'functions');
  writeFunctionsDir(fnDir, [{ name: 'guarded', functionId: FN, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [backend.address] }] }]);
  gw = await startGateway(['--functions', fnDir, '--api-keys', keysFile, '--idle-timeout', '60s', '--drain-timeout', '5s']);
  const running = gw;
  return {
    gw: running,
    backend,
    keysFile,
    client() {
      const c = echoClient(running.h2c);
      clients.push(c);
      return c;
    },
  };
}

const md = (key: string, extra: MetadataRecord = {}): MetadataRecord => ({ authorization: `Bearer ${key}`, 'function-id': FN, ...extra });
const reqid = (r: CallResult): string | undefined => (typeof r.initial['nvcf-reqid'] === 'string' ? r.initial['nvcf-reqid'] : undefined);
const summary = (r: CallResult): string => `status ${r.status} ${JSON.stringify(r.details)} backend ${r.reply?.backend ?? '-'} reqid ${reqid(r) ?? '-'}`;

/**
 * Writes the keys file and waits until the gateway has put it in use (it logs each load once
 * the new keys are in place): RPCs from then on see them.
 */
async function rewriteKeys(gw: GatewayProcess, file: string, keys: TestKey[]): Promise<void> {
  const loads = (): number => gw.logLines().filter((l) => l['msg'] === 'api keys loaded').length;
  const before = loads();
  writeKeysFile(file, keys);
  await waitFor(() => loads() > before, 10_000, 'the gateway loaded the keys file');
}

t.test('grpc-js: revoke on an open channel, other keys unaffected, re-add, broken edit keeps the last good set', async (t) => {
  const alice: TestKey = { name: 'alice', key: randomKey(), functions: [FN] };
  const bob: TestKey = { name: 'bob', key: randomKey(), functions: '*' };
  const env = await setup(t, [alice, bob]);
  const ca = env.client();
  const cb = env.client();

  const a1 = await ca.unary(md(alice.key));
  t.match([a1.status, a1.reply?.backend], [0, 'guarded'], `alice works: ${summary(a1)}`);
  t.match(a1.reply?.metadata, /^fngate-subject: alice$/m, 'the function sees the key name');
  const aliceSession = reqid(a1);
  const b1 = await cb.unary(md(bob.key));
  t.equal(b1.status, 0, `bob works: ${summary(b1)}`);
  const bobSession = reqid(b1);

  // Revoke alice while her channel stays open.
  await rewriteKeys(env.gw, env.keysFile, [bob]);
  const revoked = await ca.unary(md(alice.key));
  t.equal(revoked.status, UNAUTHENTICATED, `the first call after the load, on the same open channel: UNAUTHENTICATED: ${summary(revoked)}`);
  t.equal(revoked.reply, undefined, 'nothing from the function');
  const callsAfterRevocation = env.backend.calls;
  const again = await ca.unary(md(alice.key));
  t.equal(again.status, UNAUTHENTICATED, `and stays so: ${summary(again)}`);
  const fresh = await env.client().unary(md(alice.key));
  t.equal(fresh.status, UNAUTHENTICATED, `on a new connection too: ${summary(fresh)}`);
  t.equal(env.backend.calls, callsAfterRevocation, 'no revoked call reached the function');

  // Another key on another channel keeps working, in the same session.
  const b2 = await cb.unary(md(bob.key));
  t.match([b2.status, reqid(b2)], [0, bobSession], `bob keeps working: ${summary(b2)}`);
  t.match(b2.reply?.metadata, /^fngate-subject: bob$/m);

  // Re-adding the key restores it on the same open channel (same connection: same session).
  await rewriteKeys(env.gw, env.keysFile, [alice, bob]);
  const readded = await ca.unary(md(alice.key));
  t.match([readded.status, readded.reply?.backend, reqid(readded)], [0, 'guarded', aliceSession], `alice works again on her channel, the first call after the load: ${summary(readded)}`);

  // A broken edit: logged as an error naming the file, and the last good set stays.
  const errorsBefore = env.gw.logLines().filter((l) => l['level'] === 'error').length;
  writeFileAtomic(env.keysFile, `keys:\n  - name: alice\n    sha256: [unclosed\n`);
  const isError = (l: LogLine): boolean => l['level'] === 'error' && JSON.stringify(l).includes(env.keysFile);
  await waitFor(() => env.gw.logLines().filter((l) => l['level'] === 'error').length > errorsBefore, 5000, 'an error logged for the broken keys file');
  const logged = env.gw.logLines().filter((l) => l['level'] === 'error').slice(errorsBefore);
  t.ok(logged.some(isError), `the error names ${env.keysFile}: ${JSON.stringify(logged)}`);
  const a3 = await ca.unary(md(alice.key));
  t.match([a3.status, reqid(a3)], [0, aliceSession], `alice still works: ${summary(a3)}`);
  const b3 = await cb.unary(md(bob.key));
  t.match([b3.status, reqid(b3)], [0, bobSession], `bob still works: ${summary(b3)}`);
  const a3new = await env.client().unary(md(alice.key));
  t.equal(a3new.status, 0, `alice on a new connection: ${summary(a3new)}`);
  const nobody = await env.client().unary(md(randomKey()));
  t.equal(nobody.status, UNAUTHENTICATED, 'an unknown key is still refused');

  // A valid file after the broken one applies again.
  await rewriteKeys(env.gw, env.keysFile, [alice]);
  const bobRevoked = await cb.unary(md(bob.key));
  t.equal(bobRevoked.status, UNAUTHENTICATED, `a later valid edit applies: ${summary(bobRevoked)}`);
  const a4 = await ca.unary(md(alice.key));
  t.match([a4.status, reqid(a4)], [0, aliceSession], `alice unaffected: ${summary(a4)}`);
});

t.test('Python: calls on one open channel turn UNAUTHENTICATED once the key is revoked', async (t) => {
  const carol: TestKey = { name: 'carol', key: randomKey(), functions: [FN] };
  const dave: TestKey = { name: 'dave', key: randomKey(), functions: [FN] };
  const env = await setup(t, [carol, dave]);
  const carolCalls = (): number => env.backend.callLog.filter((c) => /^fngate-subject: carol$/m.test(c.metadata)).length;

  // Each call takes >= 50 ms at the function, so the run lasts well beyond the revocation.
  const run = runPythonClient(['--target', env.gw.h2c, '-H', `authorization=Bearer ${carol.key}`, '-H', `function-id=${FN}`, '-H', 'x-echo-sleep-ms=50', 'unary', '--calls', '150']);
  let failed: unknown;
  run.catch((err: unknown) => {
    failed = err;
  });
  await waitFor(() => carolCalls() >= 3 || failed !== undefined, 20_000, 'Python client making calls');
  if (failed !== undefined) throw failed;

  await rewriteKeys(env.gw, env.keysFile, [dave]);
  const out = await run;

  t.equal(out.calls.length, 150);
  t.same(new Set(out.calls.map((c) => c.channel)), new Set([0]), 'all on one channel');
  const firstRefused = out.calls.findIndex((c) => c.code !== 'OK');
  t.ok(firstRefused >= 3, `calls were OK before the revocation (first refused: #${firstRefused})`);
  const ok = out.calls.slice(0, firstRefused);
  const refused = out.calls.slice(firstRefused);
  t.ok(refused.length > 0, 'some calls came after the revocation took effect');
  t.same(new Set(ok.map((c) => c.initial_metadata['nvcf-reqid'])).size, 1, 'the OK calls share one session (one connection)');
  t.same(
    refused.filter((c) => c.code !== 'UNAUTHENTICATED' || c.code_value !== UNAUTHENTICATED || c.backend !== null).map((c) => `${c.code} ${c.details}`),
    [],
    'every call after the first refused one is UNAUTHENTICATED, without reaching the function',
  );
  t.equal(carolCalls(), firstRefused, 'the function saw exactly the OK calls');

  const daveRun = await runPythonClient(['--target', env.gw.h2c, '-H', `authorization=Bearer ${dave.key}`, '-H', `function-id=${FN}`, 'unary', '--calls', '2']);
  t.same(daveRun.calls.map((c) => [c.code, c.backend]), [['OK', 'guarded'], ['OK', 'guarded']], 'the remaining key works from Python');
  const carolAgain = await runPythonClient(['--target', env.gw.h2c, '-H', `authorization=Bearer ${carol.key}`, '-H', `function-id=${FN}`, 'unary']);
  t.match(carolAgain.calls[0], { code: 'UNAUTHENTICATED', code_value: UNAUTHENTICATED, backend: null }, 'the revoked key on a new Python channel');
});
