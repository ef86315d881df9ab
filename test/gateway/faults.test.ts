// Faults (docs/reference.md, Clients): a function endpoint that dies mid-call (UNAVAILABLE at once,
// no hang, the gateway keeps serving), an endpoint that accepts TCP and never answers
// (the client's deadline ends the call; nothing leaks), and a storm of client cancels
// (every upstream stream is cancelled too). Throughout: no error-level log line, and the
// client connection gauge returns to 0 once the clients are gone.
import t from 'tap';
import type { Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEchoBackend, startSilentBackend } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import type { CallResult, EchoClient } from '../helpers/echo-client.ts';
import { ECHO_PATHS, encodeEchoRequest } from '../helpers/echo-proto.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { metric, metricsText, SESSION_ID, startGateway } from '../helpers/gateway.ts';
import type { GatewayProcess } from '../helpers/gateway.ts';
import { grpcFrame, rawGrpcCall } from '../helpers/http2-raw.ts';
import { runPythonClient } from '../helpers/python.ts';
import { waitForAsync } from '../helpers/wait.ts';

const FN_ECHO = 'fn-faults';
const FN_SILENT = 'fn-silent';
const FN_STORM = 'fn-storm';

/** Closes the clients, then waits for the gateway to count no client connection and no session. */
async function expectNoLeak(t: Test, gw: GatewayProcess, clients: EchoClient[]): Promise<void> {
  for (const c of clients) c.close();
  await waitForAsync(async () => (await metric(gw, 'fngate_client_connections')) === 0, 5000, 'client connections gauge back to 0').catch((err: Error) => t.fail(err.message));
  const text = await metricsText(gw);
  t.match(text, /^fngate_client_connections 0$/m, 'no client connection left');
  t.notMatch(text, /^fngate_endpoint_sessions\{[^}]*\} [1-9]/m, 'no session left on any endpoint');
}

/** Established TCP connections whose local port is `port` (the server side of a backend in this process). */
function establishedOn(port: number): number {
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (local === undefined) continue;
      const localPort = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
      if (localPort === port && cols[3] === '01') n++; // 01 = ESTABLISHED
    }
  }
  return n;
}


t.test('faults', async (t) => {
  const dir = t.testdir({});
  const fnsDir = join(dir, 'fns');
  const live = new Set<EchoBackend>();
  t.teardown(async () => {
    for (const b of live) await b.stop(1000);
  });
  const startBackend = async (name: string, port?: number): Promise<EchoBackend> => {
    const b = await startEchoBackend({ name, ...(port === undefined ? {} : { port }) });
    live.add(b);
    return b;
  };
  const kill = (b: EchoBackend): void => {
    live.delete(b);
    b.kill();
  };

  const victim = await startBackend('victim');
  const storm = await startBackend('storm');
  const silent = await startSilentBackend();
  t.teardown(() => silent.close());
  writeFunctionsDir(fnsDir, [
    { name: 'echo', functionId: FN_ECHO, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [victim.address] }] },
    { name: 'silent', functionId: FN_SILENT, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [silent.address] }] },
    { name: 'storm', functionId: FN_STORM, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [storm.address] }] },
  ]);
  const key = randomKey();
  writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'faults', key, functions: '*' }]);
  const gw = await startGateway(['--functions', fnsDir, '--api-keys', join(dir, 'keys.yaml')]);
  t.teardown(() => gw.stop());
  const auth = (fn: string): Record<string, string> => ({ authorization: `Bearer ${key}`, 'function-id': fn });

  t.test('backend killed mid server-stream, then mid unary: UNAVAILABLE at once; the gateway serves the next call', async (t) => {
    const c = echoClient(gw.h2c);
    t.teardown(() => c.close());
    const port = victim.port;

    // Mid server-stream: 2 replies sent, then the stream is held open.
    let replies = 0;
    const stream = c.serverStream({ ...auth(FN_ECHO), 'x-echo-hold': '1' }, { count: 2, reply_size: 10 }, { onReply: () => void replies++ });
    await victim.waitFor(() => replies === 2 && victim.active === 1);
    const killedAt = performance.now();
    kill(victim);
    const r = await stream;
    const took = performance.now() - killedAt;
    t.equal(r.status, 14, `server stream: UNAVAILABLE (${r.status} ${r.details})`);
    t.equal(r.replyCount, 2, 'the replies sent before the kill arrived');
    t.ok(took < 2000, `status ${took.toFixed(0)} ms after the kill`);
    t.match(String(r.initial['nvcf-reqid']), SESSION_ID, 'nvcf-reqid in the response headers');

    // The same endpoint comes back (a restart): the same client connection is served again.
    const restarted = await startBackend('restarted', port);
    const next = await c.unary(auth(FN_ECHO));
    t.equal(next.status, 0, `next call after the restart: ${next.details}`);
    t.equal(next.reply?.backend, 'restarted');

    // Mid unary: the backend sleeps before answering.
    const unary = c.unary({ ...auth(FN_ECHO), 'x-echo-sleep-ms': '10000' });
    await restarted.waitFor(() => restarted.active === 1);
    const killed2At = performance.now();
    kill(restarted);
    const u = await unary;
    const took2 = performance.now() - killed2At;
    t.equal(u.status, 14, `unary: UNAVAILABLE (${u.status} ${u.details})`);
    t.ok(took2 < 2000, `status ${took2.toFixed(0)} ms after the kill`);

    // Down for good: a new call is UNAVAILABLE too, promptly (connection refused).
    const refusedAt = performance.now();
    const refused = await c.unary(auth(FN_ECHO));
    t.equal(refused.status, 14, `endpoint down: UNAVAILABLE (${refused.details})`);
    t.ok(performance.now() - refusedAt < 2000, 'promptly');

    // Another backend on that address, and a new client (Python) as well as the old connection.
    const third = await startBackend('third', port);
    const again = await c.unary(auth(FN_ECHO));
    t.equal(again.status, 0, `the old connection is served again: ${again.details}`);
    t.equal(again.reply?.backend, 'third');
    const py = await runPythonClient(['--target', gw.h2c, '-H', `authorization=Bearer ${key}`, '-H', `function-id=${FN_ECHO}`, 'unary']);
    t.match(py.calls[0], { code: 'OK', backend: 'third' }, 'a new client is served');
    t.equal(third.active, 0);

    await expectNoLeak(t, gw, [c]);
    t.same(gw.logLines().filter((l) => l['level'] === 'error'), [], 'nothing logged at level error');
  });

  t.test('an endpoint that accepts TCP and never answers: the deadline ends the call, nothing leaks', async (t) => {
    const c = echoClient(gw.h2c);
    t.teardown(() => c.close());
    const r = await c.unary(auth(FN_SILENT), {}, { deadlineMs: 1000 });
    t.equal(r.status, 4, `grpc-js, deadline 1 s: DEADLINE_EXCEEDED (${r.status} ${r.details})`);
    t.ok(r.elapsedMs >= 900 && r.elapsedMs < 2500, `after ${r.elapsedMs.toFixed(0)} ms`);
    t.ok(silent.connections >= 1, 'the gateway did connect to the silent endpoint');
    t.ok(establishedOn(silent.port) >= 1, 'the session keeps its upstream connection while the client connection is open');

    // The gateway's own deadline (no client-side timer: only grpc-timeout on the wire).
    const started = performance.now();
    const raw = await rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, ...auth(FN_SILENT), 'grpc-timeout': '1000m' }, [grpcFrame(encodeEchoRequest({}))], { timeoutMs: 5000 });
    const took = performance.now() - started;
    t.equal(raw.headers[':status'], 200);
    t.equal(raw.headers['grpc-status'], '4', `the gateway answers DEADLINE_EXCEEDED itself (${JSON.stringify(raw.headers)})`);
    t.equal(raw.headers['content-type'], 'application/grpc');
    t.ok(took >= 900 && took < 2500, `after ${took.toFixed(0)} ms`);

    const py = await runPythonClient(['--target', gw.h2c, '-H', `authorization=Bearer ${key}`, '-H', `function-id=${FN_SILENT}`, '--timeout', '1', 'unary']);
    t.match(py.calls[0], { code: 'DEADLINE_EXCEEDED', code_value: 4 }, 'Python, --timeout 1');

    // Nothing leaks: no client connection, no session, and no upstream connection to the silent endpoint.
    await expectNoLeak(t, gw, [c]);
    const deadline = Date.now() + 5000;
    while (establishedOn(silent.port) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    t.equal(establishedOn(silent.port), 0, 'the gateway closed its connections to the silent endpoint');
    t.same(gw.logLines().filter((l) => l['level'] === 'error'), [], 'nothing logged at level error');
  });

  t.test('200 calls cancelled mid-stream: every upstream stream is cancelled, the gateway stays healthy', async (t) => {
    const clients = Array.from({ length: 4 }, () => echoClient(gw.h2c));
    t.teardown(() => clients.forEach((c) => c.close()));
    const N = 200;
    const aborts: AbortController[] = [];
    const got: number[] = new Array<number>(N).fill(0);
    const calls: Array<Promise<CallResult>> = [];
    const cancelledBefore = storm.cancelled;
    for (let i = 0; i < N; i++) {
      const abort = new AbortController();
      aborts.push(abort);
      const c = clients[i % clients.length] as EchoClient;
      const md = { ...auth(FN_STORM), 'x-echo-sleep-ms': '5' };
      // Half server streams flowing without end, half bidi streams that keep sending.
      if (i % 2 === 0) {
        calls.push(c.serverStream(md, { count: 1_000_000, reply_size: 512 }, { signal: abort.signal, keepReplies: false, onReply: () => void (got[i] = (got[i] ?? 0) + 1) }));
      } else {
        async function* forever(): AsyncGenerator<{ payload: Buffer }> {
          while (!abort.signal.aborted) {
            yield { payload: Buffer.alloc(256) };
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        }
        calls.push(c.bidi(md, forever(), { signal: abort.signal, keepReplies: false, onReply: () => void (got[i] = (got[i] ?? 0) + 1) }));
      }
    }
    await storm.waitFor(() => storm.active === N && got.every((n) => n >= 2), 15_000);
    // Cancel them all, spread over ~100 ms.
    await Promise.all(aborts.map((a, i) => new Promise<void>((resolve) => setTimeout(() => {
      a.abort();
      resolve();
    }, i % 100))));
    const results = await Promise.all(calls);
    const statuses = new Map<number, number>();
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    t.same([...statuses], [[1, N]], 'every call ended CANCELLED on the client');
    await storm.waitFor(() => storm.active === 0, 5000).catch((err: Error) => t.fail(`${err.message}: ${storm.active} still active`));
    t.equal(storm.active, 0, 'no stream left open at the backend');
    t.equal(storm.cancelled - cancelledBefore, N, 'the backend saw every call cancelled');

    const healthy = await (clients[0] as EchoClient).unary(auth(FN_STORM));
    t.equal(healthy.status, 0, `the gateway serves on: ${healthy.details}`);
    const ready = await fetch(`http://${gw.admin}/readyz`);
    t.equal(ready.status, 200, 'still ready');
    await expectNoLeak(t, gw, clients);
    t.same(gw.logLines().filter((l) => l['level'] === 'error'), [], 'nothing logged at level error');
  });
});
