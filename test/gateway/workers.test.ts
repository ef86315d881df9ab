// --workers N: N processes share the listeners; each serves calls, session ids resume on any
// of them, and SIGTERM drains them all.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { startGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/wait.ts';

const OK = 0;

/** Child pids of a process (the cluster's workers). */
function children(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

t.test('two workers serve calls from many connections and drain on SIGTERM', async (t) => {
  const dir = t.testdir();
  const backend = await startEchoBackend({ name: 'w' });
  t.teardown(() => backend.stop(1000));
  writeFunctionsDir(join(dir, 'fns'), [
    { name: 'echo', functionId: 'fn-echo', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [backend.address] }] },
  ]);
  const key = randomKey();
  writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'k', key, functions: '*' }]);
  const gw = await startGateway(['--workers', '2', '--functions', join(dir, 'fns'), '--api-keys', join(dir, 'keys.yaml'), '--drain-timeout', '10s']);
  t.teardown(() => gw.stop());
  await gw.waitForLog(() => gw.logLines().filter((l) => l['msg'] === 'fngate listening').length === 2, 20_000);
  t.equal(children(gw.pid).length, 2, 'the primary runs two worker processes');

  const md = { authorization: `Bearer ${key}`, 'function-id': 'fn-echo' };
  const clients = Array.from({ length: 12 }, () => echoClient(gw.h2c));
  t.teardown(() => clients.forEach((c) => c.close()));
  const results = await Promise.all(clients.map((c) => c.unary(md, { payload: Buffer.from('hi') })));
  t.same(results.map((r) => r.status), results.map(() => OK), 'every connection is served');
  t.equal(new Set(results.map((r) => String(r.initial['nvcf-reqid']))).size, 12, 'one session per connection');

  // The primary hands both workers one session secret: an id resumes on whichever worker
  // the next connection lands on (with a key per worker, about half of these would fail).
  const id = String(results[0]?.initial['nvcf-reqid']);
  const resumers = Array.from({ length: 8 }, () => echoClient(gw.h2c));
  t.teardown(() => resumers.forEach((c) => c.close()));
  const resumed = await Promise.all(resumers.map((c) => c.unary({ ...md, 'nvcf-reqid': id })));
  t.same(resumed.map((r) => [r.status, r.initial['nvcf-reqid']]), resumed.map(() => [OK, id]), 'every new connection resumes the session, on either worker');

  // A stream in flight when SIGTERM arrives completes before the workers exit.
  const held = clients[0]!.serverStream({ ...md, 'x-echo-sleep-ms': '300' }, { count: 4 });
  await waitFor(() => backend.active === 1, 5000, 'stream open');
  gw.signal('SIGTERM');
  const done = await held;
  t.equal(done.status, OK, 'in-flight stream finished during the drain');
  t.equal(done.replyCount, 4);
  t.same(await gw.exited, { code: 0, signal: null }, 'primary exits 0 after its workers drained');
});

t.test('maxSessionsPerEndpoint 1 with two workers: each endpoint holds one session over both', async (t) => {
  const dir = t.testdir();
  const backends = await Promise.all(['w-a', 'w-b'].map((name) => startEchoBackend({ name })));
  t.teardown(() => Promise.all(backends.map((b) => b.stop(1000))));
  writeFunctionsDir(join(dir, 'fns'), [
    { name: 'solo', functionId: 'fn-solo', activeVersion: 'v1', maxSessionsPerEndpoint: 1, versions: [{ versionId: 'v1', endpoints: backends.map((b) => b.address) }] },
  ]);
  const key = randomKey();
  writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'k', key, functions: '*' }]);
  const gw = await startGateway(['--workers', '2', '--functions', join(dir, 'fns'), '--api-keys', join(dir, 'keys.yaml')]);
  t.teardown(() => gw.stop());
  await gw.waitForLog(() => gw.logLines().filter((l) => l['msg'] === 'fngate listening').length === 2, 20_000);

  // Six connections, dealt to the workers in turn, all kept open: two sessions in all, one per
  // endpoint, whichever worker holds each endpoint's one slot.
  const md = { authorization: `Bearer ${key}`, 'function-id': 'fn-solo' };
  const clients = Array.from({ length: 6 }, () => echoClient(gw.h2c));
  t.teardown(() => clients.forEach((c) => c.close()));
  const results = [];
  for (const c of clients) results.push(await c.unary(md));
  t.same(results.map((r) => r.status).sort(), [OK, OK, 8, 8, 8, 8], 'two sessions; the other four RESOURCE_EXHAUSTED');
  t.match(results.find((r) => r.status === 8)?.details, /this gateway's share of its 1 sessions \(2 gateway processes share the cap\)/);
  t.same(backends.map((b) => b.peers.size), [1, 1], 'each endpoint serves one client session');
});
