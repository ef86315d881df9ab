// Connection lifecycle (docs/reference.md, Connections): the idle close (GOAWAY NO_ERROR after
// --idle-timeout with no open stream; PINGs are not activity; an open stream is), grpc-js
// reconnecting after an idle close, and the SIGTERM drain (not-ready, GOAWAY, open streams
// finish, exit 0; streams still open at --drain-timeout are cut and the exit is still 0).
import t from 'tap';
import type { Test } from 'tap';
import http2 from 'node:http2';
import { join } from 'node:path';
import { startEchoBackend } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import { ECHO_PATHS, decodeEchoReply, encodeEchoRequest } from '../helpers/echo-proto.ts';
import type { EchoRequest } from '../helpers/echo-proto.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { metric, startGateway } from '../helpers/gateway.ts';
import type { GatewayProcess } from '../helpers/gateway.ts';
import { grpcFrame, parseGrpcFrames } from '../helpers/http2-raw.ts';
import { waitFor, waitForAsync } from '../helpers/wait.ts';

const FN = 'fn-lifecycle';
const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
const HEALTH_WATCH = '/grpc.health.v1.Health/Watch';
const SERVING = 1;
const NOT_SERVING = 2;


interface Env {
  b: EchoBackend;
  gw: GatewayProcess;
  key: string;
  /** authorization + function-id */
  auth: Record<string, string>;
}

/** A backend, a Function for it, a key, and the gateway with `args`. */
async function setup(t: Test, args: string[]): Promise<Env> {
  const dir = t.testdir({});
  const b = await startEchoBackend({ name: 'life' });
  t.teardown(() => b.stop(1000));
  writeFunctionsDir(join(dir, 'fns'), [{ name: 'life', functionId: FN, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [b.address] }] }]);
  const key = randomKey();
  writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'tester', key, functions: '*' }]);
  const gw = await startGateway(['--functions', join(dir, 'fns'), '--api-keys', join(dir, 'keys.yaml'), ...args]);
  t.teardown(() => gw.stop());
  return { b, gw, key, auth: { authorization: `Bearer ${key}`, 'function-id': FN } };
}

// --- a raw HTTP/2 client connection whose frames we can watch ------------------------------

interface RawConn {
  readonly session: http2.ClientHttp2Session;
  /** performance.now() when the connection was established. */
  readonly connectedAt: number;
  readonly goaways: Array<{ errorCode: number; lastStreamID: number; at: number }>;
  /** Resolves with performance.now() when the connection is closed. */
  readonly closed: Promise<number>;
  isClosed(): boolean;
}

function rawConnect(authority: string): Promise<RawConn> {
  const session = http2.connect(`http://${authority}`);
  const goaways: RawConn['goaways'] = [];
  let closedFlag = false;
  session.on('goaway', (errorCode, lastStreamID) => goaways.push({ errorCode, lastStreamID, at: performance.now() }));
  session.on('error', () => {}); // the close says it
  const closed = new Promise<number>((resolve) =>
    session.once('close', () => {
      closedFlag = true;
      resolve(performance.now());
    }),
  );
  return new Promise((resolve, reject) => {
    session.once('connect', () => resolve({ session, connectedAt: performance.now(), goaways, closed, isClosed: () => closedFlag }));
    session.once('close', () => reject(new Error(`connection to ${authority} closed before it was established`)));
  });
}

interface RawStreamResult {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  messages: Buffer[];
  rstCode: number;
  /** performance.now() when the stream closed. */
  closedAt: number;
}

/** One gRPC request on an existing connection; `onMessage` sees each response message as it arrives. */
function rawStream(conn: RawConn, headers: http2.OutgoingHttpHeaders, body: Buffer, onMessage?: (msg: Buffer, index: number) => void): Promise<RawStreamResult> {
  const req = conn.session.request({ ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers', ...headers });
  const result: RawStreamResult = { headers: {}, trailers: {}, messages: [], rstCode: 0, closedAt: 0 };
  let pending = Buffer.alloc(0);
  req.on('response', (h) => {
    result.headers = h;
  });
  req.on('trailers', (h) => {
    result.trailers = h;
  });
  req.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const len = pending.readUInt32BE(1);
      const msg = pending.subarray(5, 5 + len);
      pending = pending.subarray(5 + len);
      result.messages.push(msg);
      onMessage?.(msg, result.messages.length - 1);
    }
  });
  req.on('error', () => {}); // rstCode says it
  req.end(grpcFrame(body));
  return new Promise((resolve) =>
    req.on('close', () => {
      result.rstCode = req.rstCode ?? 0;
      result.closedAt = performance.now();
      resolve(result);
    }),
  );
}

/** grpc-status of a raw response: from the trailers, or the headers of a trailers-only one. */
function statusOf(r: RawStreamResult): string | undefined {
  const s = r.trailers['grpc-status'] ?? r.headers['grpc-status'];
  return s === undefined ? undefined : String(s);
}

/** HealthCheckResponse.status from its protobuf bytes (field 1, varint). */
function servingStatus(msg: Buffer): number {
  if (msg.length !== 2 || msg[0] !== 0x08) throw new Error(`not a one-field HealthCheckResponse: ${msg.toString('hex')}`);
  return msg[1] as number;
}

async function admin(gw: GatewayProcess, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${gw.admin}${path}`);
  return { status: res.status, body: await res.text() };
}

const serverStreamBody = (req: EchoRequest): Buffer => encodeEchoRequest(req);

// --- idle -------------------------------------------------------------------------------

t.test('idle: --idle-timeout 1s', async (t) => {
  const env = await setup(t, ['--idle-timeout', '1s']);
  const { gw, b, auth } = env;

  t.test('a connection with no streams gets GOAWAY(NO_ERROR) and is closed after ~1 s', async (t) => {
    const conn = await rawConnect(gw.h2c);
    t.teardown(() => conn.session.destroy());
    const closedAt = await conn.closed;
    const elapsed = closedAt - conn.connectedAt;
    // Node's session.close() may send its GOAWAY twice (close, then terminate); both must say NO_ERROR.
    t.ok(conn.goaways.length >= 1, `GOAWAY received: ${JSON.stringify(conn.goaways)}`);
    t.ok(conn.goaways.every((g) => g.errorCode === http2.constants.NGHTTP2_NO_ERROR), 'GOAWAY NO_ERROR');
    t.ok(conn.goaways.every((g) => g.lastStreamID === 0), 'no stream was ever opened');
    const goawayAfter = (conn.goaways[0]?.at ?? 0) - conn.connectedAt;
    t.ok(goawayAfter >= 900 && goawayAfter < 3000, `GOAWAY after ${goawayAfter.toFixed(0)} ms`);
    t.ok(elapsed >= 900 && elapsed < 3000, `closed after ${elapsed.toFixed(0)} ms`);
  });

  t.test('keepalive PINGs every 200 ms do not keep it open', async (t) => {
    const conn = await rawConnect(gw.h2c);
    t.teardown(() => conn.session.destroy());
    let acked = 0;
    const pinger = setInterval(() => {
      if (conn.isClosed() || conn.session.closed) return;
      conn.session.ping((err) => {
        if (!err) acked++;
      });
    }, 200);
    t.teardown(() => clearInterval(pinger));
    const closedAt = await conn.closed;
    clearInterval(pinger);
    const elapsed = closedAt - conn.connectedAt;
    t.ok(acked >= 3, `the gateway answered the PINGs (${acked} acked)`);
    t.ok(conn.goaways.length >= 1 && conn.goaways.every((g) => g.errorCode === http2.constants.NGHTTP2_NO_ERROR), `GOAWAY NO_ERROR: ${JSON.stringify(conn.goaways)}`);
    t.ok(elapsed >= 900 && elapsed < 3000, `closed after ${elapsed.toFixed(0)} ms despite PINGs`);
  });

  t.test('a connection with a 3 s server stream stays open while it runs, then closes ~1 s after', async (t) => {
    const conn = await rawConnect(gw.h2c);
    t.teardown(() => conn.session.destroy());
    const replyTimes: number[] = [];
    const started = performance.now();
    const r = await rawStream(
      conn,
      { ':path': ECHO_PATHS.ServerStream, ...auth, 'x-echo-sleep-ms': '1000' },
      serverStreamBody({ count: 3, reply_size: 10 }),
      () => void replyTimes.push(performance.now() - started),
    );
    const ran = r.closedAt - started;
    t.ok(ran >= 2900, `the stream ran ${ran.toFixed(0)} ms`);
    t.equal(r.headers[':status'], 200);
    t.equal(statusOf(r), '0', `stream status OK (${JSON.stringify(r.trailers)})`);
    t.equal(r.rstCode, http2.constants.NGHTTP2_NO_ERROR);
    t.equal(r.messages.length, 3, `all replies (at ${replyTimes.map((x) => x.toFixed(0)).join(', ')} ms)`);
    t.same(
      r.messages.map((m) => decodeEchoReply(m).received_messages),
      [1, 2, 3],
    );
    t.same(conn.goaways, [], 'no GOAWAY while the stream was open');
    t.notOk(conn.isClosed(), 'still open when the stream ended');
    const closedAt = await conn.closed;
    const after = closedAt - r.closedAt;
    t.ok(conn.goaways.length >= 1 && conn.goaways.every((g) => g.errorCode === http2.constants.NGHTTP2_NO_ERROR), `then GOAWAY NO_ERROR: ${JSON.stringify(conn.goaways)}`);
    t.equal(conn.goaways[0]?.lastStreamID, 1, 'naming the one stream it served');
    t.ok(after >= 900 && after < 3000, `closed ${after.toFixed(0)} ms after the stream ended`);
  });

  t.test('a grpc-js channel closed for idleness reconnects transparently for the next call', async (t) => {
    const idleClosedBefore = await metric(gw, 'fngate_connections_closed_by_gateway_total{reason="idle"}');
    const peersBefore = b.peers.size;
    const c = echoClient(gw.h2c);
    t.teardown(() => c.close());
    const first = await c.unary(auth);
    t.equal(first.status, 0, `first call: ${first.details}`);
    const firstId = first.initial['nvcf-reqid'];
    t.type(firstId, 'string', 'nvcf-reqid on the first call');
    await waitForAsync(
      async () => (await metric(gw, 'fngate_connections_closed_by_gateway_total{reason="idle"}')) > idleClosedBefore,
      4000,
      'the gateway closes the idle grpc-js connection',
    );
    await waitForAsync(async () => (await metric(gw, 'fngate_client_connections')) === 0, 2000, 'no client connection left');
    // The session's upstream connection closed with the client's.
    await b.waitFor(() => b.active === 0);

    const second = await c.unary(auth);
    t.equal(second.status, 0, `the call after the idle close: ${second.details}`);
    t.type(second.initial['nvcf-reqid'], 'string');
    t.not(second.initial['nvcf-reqid'], firstId, 'a new connection is a new session');
    t.equal(b.peers.size, peersBefore + 2, 'the backend saw a second upstream connection');
    t.equal(await metric(gw, 'fngate_client_connections'), 1, 'one reconnected client connection');
  });
});

// --- drain ------------------------------------------------------------------------------

t.test('drain: SIGTERM lets open streams finish, then exits 0 well before --drain-timeout', async (t) => {
  const { gw, b, auth } = await setup(t, ['--drain-timeout', '15s']);
  const FIRST_REPLY = 'first reply';

  // A Watch of the gateway's own health, opened before the drain.
  const watchConn = await rawConnect(gw.h2c);
  t.teardown(() => watchConn.session.destroy());
  const watchStatuses: number[] = [];
  const watch = rawStream(watchConn, { ':path': HEALTH_WATCH }, Buffer.alloc(0), (m) => void watchStatuses.push(servingStatus(m)));
  await waitFor(() => watchStatuses.length === 1, 5000, 'Watch: first status');
  t.same(watchStatuses, [SERVING], 'Watch says SERVING before the drain');

  // Two long server streams: 6 replies 500 ms apart (about 3 s), one raw, one grpc-js.
  const conn = await rawConnect(gw.h2c);
  t.teardown(() => conn.session.destroy());
  let rawReplies = 0;
  const raw = rawStream(conn, { ':path': ECHO_PATHS.ServerStream, ...auth, 'x-echo-sleep-ms': '500' }, serverStreamBody({ count: 6, reply_size: 100 }), () => void rawReplies++);
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  let jsReplies = 0;
  const js = c.serverStream({ ...auth, 'x-echo-sleep-ms': '500' }, { count: 6, reply_size: 100 }, { onReply: () => void jsReplies++ });
  await waitFor(() => rawReplies >= 1 && jsReplies >= 1, 5000, FIRST_REPLY);
  t.equal((await admin(gw, '/readyz')).status, 200, 'ready before SIGTERM');

  const sigtermAt = performance.now();
  gw.signal('SIGTERM');
  const exitedAt = gw.exited.then((e) => ({ ...e, at: performance.now() }));

  await waitForAsync(async () => (await admin(gw, '/readyz')).status === 503, 1000, '/readyz 503 right after SIGTERM');
  t.ok(performance.now() - sigtermAt < 1000, 'not ready at once');
  const healthz = await admin(gw, '/healthz');
  t.equal(healthz.status, 200, '/healthz stays 200 (alive) while draining');
  t.equal(await metric(gw, 'fngate_draining'), 1, 'fngate_draining 1');

  // The connection carrying the open stream is told to go away, with NO_ERROR.
  await waitFor(() => conn.goaways.length >= 1, 2000, 'GOAWAY to the open connection');
  t.equal(conn.goaways[0]?.errorCode, http2.constants.NGHTTP2_NO_ERROR, 'GOAWAY NO_ERROR');

  // The gateway's own health, asked on a new connection without function-id: NOT_SERVING
  // (docs/reference.md, Clients: "no token needed; NOT_SERVING while draining").
  const healthConn = await rawConnect(gw.h2c);
  t.teardown(() => healthConn.session.destroy());
  const check = await rawStream(healthConn, { ':path': HEALTH_CHECK }, Buffer.alloc(0));
  t.equal(check.headers[':status'], 200, 'health Check: HTTP 200');
  t.equal(statusOf(check), '0', `health Check answers (grpc-status ${statusOf(check)} ${String(check.trailers['grpc-message'] ?? check.headers['grpc-message'] ?? '')})`);
  t.same(check.messages.map(servingStatus), [NOT_SERVING], 'health Check: NOT_SERVING while draining');

  // The open Watch is told NOT_SERVING.
  await waitFor(() => watchStatuses.length >= 2, 2000, 'Watch: NOT_SERVING').catch(() => {});
  t.same(watchStatuses, [SERVING, NOT_SERVING], 'the open Watch turns NOT_SERVING');
  await watch;

  // The in-flight streams complete with OK and every reply.
  const rawResult = await raw;
  t.equal(statusOf(rawResult), '0', `raw stream OK (${JSON.stringify(rawResult.trailers)})`);
  t.equal(rawResult.messages.length, 6, 'raw stream: all 6 replies');
  t.equal(rawResult.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  const jsResult = await js;
  t.equal(jsResult.status, 0, `grpc-js stream OK: ${jsResult.details}`);
  t.equal(jsResult.replyCount, 6, 'grpc-js stream: all 6 replies');
  t.ok(rawResult.closedAt - sigtermAt > 1500, 'the streams ran on well after SIGTERM');
  await b.waitFor(() => b.active === 0);
  t.equal(b.cancelled, 0, 'the backend saw no cancellation');

  const exit = await exitedAt;
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'exit 0');
  t.ok(exit.at >= rawResult.closedAt, 'exited after the streams ended');
  const total = exit.at - sigtermAt;
  t.ok(total < 8000, `exited ${total.toFixed(0)} ms after SIGTERM, well before --drain-timeout 15s`);
  t.ok(gw.logLines().some((l) => l['msg'] === 'drained'), 'logged "drained"');
  t.same(gw.logLines().filter((l) => l['level'] === 'error'), [], 'no error logged');
});

t.test('drain: a stream still open at --drain-timeout 2s is cut and the exit is still 0', async (t) => {
  const { gw, b, auth } = await setup(t, ['--drain-timeout', '2s']);
  const conn = await rawConnect(gw.h2c);
  t.teardown(() => conn.session.destroy());
  let rawReplies = 0;
  // x-echo-hold: the backend keeps the stream open until it is cancelled.
  const raw = rawStream(conn, { ':path': ECHO_PATHS.ServerStream, ...auth, 'x-echo-hold': '1' }, serverStreamBody({ count: 2 }), () => void rawReplies++);
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  let jsReplies = 0;
  const js = c.serverStream({ ...auth, 'x-echo-hold': '1' }, { count: 2 }, { onReply: () => void jsReplies++ });
  await waitFor(() => rawReplies === 2 && jsReplies === 2, 5000, 'both streams replied');
  await b.waitFor(() => b.active === 2);

  const sigtermAt = performance.now();
  gw.signal('SIGTERM');
  await waitFor(() => conn.goaways.length >= 1, 2000, 'GOAWAY');
  t.equal(conn.goaways[0]?.errorCode, http2.constants.NGHTTP2_NO_ERROR, 'GOAWAY NO_ERROR first');
  const exit = await gw.exited;
  const took = performance.now() - sigtermAt;
  t.same(exit, { code: 0, signal: null }, 'exit 0');
  t.ok(took >= 1900 && took < 4000, `exited ${took.toFixed(0)} ms after SIGTERM (--drain-timeout 2s)`);

  const rawResult = await raw;
  t.equal(rawResult.messages.length, 2, 'the raw stream got its replies before the cut');
  t.not(statusOf(rawResult), '0', `the cut raw stream did not end OK (status ${statusOf(rawResult)}, rst ${rawResult.rstCode})`);
  const jsResult = await js;
  t.equal(jsResult.replyCount, 2);
  t.not(jsResult.status, 0, `the cut grpc-js stream did not end OK: ${jsResult.status} ${jsResult.details}`);
  // The upstream streams went with the gateway.
  await b.waitFor(() => b.active === 0);
  t.equal(b.cancelled, 2, 'both backend calls were cancelled');
});
