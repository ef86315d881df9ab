// Revoking an API key (docs/reference.md, Credentials) through the real gateway with --api-keys FILE:
// removing a key's entry takes effect for new RPCs within seconds, also on connections
// already open; re-adding it restores access; a broken edit keeps the last good set.
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
import { sleep, waitFor } from '../helpers/wait.ts';

const UNAUTHENTICATED = 16;
const FN = 'fn-guarded';
/** How soon a revocation must reach open connections ("within seconds"). */
const REVOKE_WITHIN_MS = 3000;

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
 * Calls on `c` every 20 ms until a call's status is `want`; returns that call, the time it
 * took from `since`, and the statuses seen before it.
 */
async function callUntil(c: EchoClient, key: string, want: number, since: number, timeoutMs = 10_000): Promise<{ last: CallResult; ms: number; before: number[] }> {
  const before: number[] = [];
  for (;;) {
    const last = await c.unary(md(key));
    const ms = performance.now() - since;
    if (last.status === want || ms > timeoutMs) return { last, ms, before };
    before.push(last.status);
    await sleep(20);
  }
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
  writeKeysFile(env.keysFile, [bob]);
  const revokedAt = performance.now();
  const revoked = await callUntil(ca, alice.key, UNAUTHENTICATED, revokedAt);
  t.equal(revoked.last.status, UNAUTHENTICATED, `the same open channel gets UNAUTHENTICATED: ${summary(revoked.last)}`);
  t.ok(revoked.ms < REVOKE_WITHIN_MS, `within ${REVOKE_WITHIN_MS} ms of the file change: ${Math.round(revoked.ms)} ms`);
  t.ok(revoked.before.every((s) => s === 0), `OK until then: ${revoked.before.join(',')}`);
  t.equal(revoked.last.reply, undefined, 'nothing from the function');
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
  writeKeysFile(env.keysFile, [alice, bob]);
  const readdedAt = performance.now();
  const readded = await callUntil(ca, alice.key, 0, readdedAt);
  t.match([readded.last.status, readded.last.reply?.backend, reqid(readded.last)], [0, 'guarded', aliceSession], `alice works again on her channel: ${summary(readded.last)}`);
  t.ok(readded.ms < REVOKE_WITHIN_MS, `within ${REVOKE_WITHIN_MS} ms: ${Math.round(readded.ms)} ms`);
  t.ok(readded.before.every((s) => s === UNAUTHENTICATED), `UNAUTHENTICATED until then: ${readded.before.join(',')}`);

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
  writeKeysFile(env.keysFile, [alice]);
  const bobRevoked = await callUntil(cb, bob.key, UNAUTHENTICATED, performance.now());
  t.equal(bobRevoked.last.status, UNAUTHENTICATED, `a later valid edit applies: ${summary(bobRevoked.last)}`);
  t.ok(bobRevoked.ms < REVOKE_WITHIN_MS, `within ${REVOKE_WITHIN_MS} ms: ${Math.round(bobRevoked.ms)} ms`);
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

  writeKeysFile(env.keysFile, [dave]);
  const revokedAt = performance.now();
  // When the last authorised call reached the function, relative to the revocation.
  let seen = carolCalls();
  let lastCallMs = 0;
  const watch = setInterval(() => {
    const n = carolCalls();
    if (n !== seen) {
      seen = n;
      lastCallMs = performance.now() - revokedAt;
    }
  }, 5);
  t.teardown(() => clearInterval(watch));
  const out = await run;
  clearInterval(watch);

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
  t.ok(lastCallMs < REVOKE_WITHIN_MS, `the last authorised call reached the function ${Math.round(lastCallMs)} ms after the revocation`);

  const daveRun = await runPythonClient(['--target', env.gw.h2c, '-H', `authorization=Bearer ${dave.key}`, '-H', `function-id=${FN}`, 'unary', '--calls', '2']);
  t.same(daveRun.calls.map((c) => [c.code, c.backend]), [['OK', 'guarded'], ['OK', 'guarded']], 'the remaining key works from Python');
  const carolAgain = await runPythonClient(['--target', env.gw.h2c, '-H', `authorization=Bearer ${carol.key}`, '-H', `function-id=${FN}`, 'unary']);
  t.match(carolAgain.calls[0], { code: 'UNAUTHENTICATED', code_value: UNAUTHENTICATED, backend: null }, 'the revoked key on a new Python channel');
});
