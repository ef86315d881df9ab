// The shared test helpers, checked against each other without the gateway: the Echo backend
// with the grpc-js client, the Python (grpcio) client and raw HTTP/2; the file writers; the
// process runner (with a fake fngate).
import t from 'tap';
import http2 from 'node:http2';
import { join } from 'node:path';
import { closeServer, INITIAL_BIN, startEchoBackend, startGarbageBackend, startSilentBackend, TRAILER_BIN } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import type { EchoClient } from '../helpers/echo-client.ts';
import { ECHO_PATHS, decodeEchoReply, encodeEchoRequest, patternBytes } from '../helpers/echo-proto.ts';
import type { EchoRequest } from '../helpers/echo-proto.ts';
import { makeTlsCert, sha256Hex, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { startGateway } from '../helpers/gateway.ts';
import { grpcFrame, parseGrpcFrames, rawGrpcCall, sendHttp1 } from '../helpers/http2-raw.ts';
import { runPythonClient } from '../helpers/python.ts';
import { waitFor } from '../helpers/wait.ts';
import { loadFunctionsDir } from '../../lib/sources/file/functions-dir.ts';
import { apiKeysFile } from '../../lib/sources/file/api-keys-file.ts';

/** Enough of a tap Test to register cleanups. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

async function setup(t: Teardown, name = 'b1'): Promise<{ b: EchoBackend; c: EchoClient }> {
  const b = await startEchoBackend({ name });
  const c = echoClient(b.address);
  t.teardown(async () => {
    c.close();
    await b.stop(1000);
  });
  return { b, c };
}

const messages = (n: number, size: number): EchoRequest[] => Array.from({ length: n }, () => ({ payload: patternBytes(size) }));

t.test('unary: reply, metadata both ways, payload echo', async (t) => {
  const { b, c } = await setup(t);
  const r = await c.unary({ 'x-custom': 'v', 'x-custom-bin': Buffer.from([0, 1, 2]) }, { payload: patternBytes(5) });
  t.equal(r.status, 0);
  t.equal(r.reply?.backend, 'b1');
  t.equal(r.reply?.received_bytes, 5);
  t.equal(r.reply?.received_messages, 1);
  t.equal(r.reply?.payload.length, 0, 'no payload back by default');
  t.match(r.reply?.peer, /^127\.0\.0\.1:\d+$/);
  const lines = r.reply?.metadata.split('\n') ?? [];
  t.ok(lines.includes('x-custom: v') && lines.includes('x-custom-bin: AAEC'), r.reply?.metadata ?? '');
  t.same(lines, [...lines].sort(), 'sorted');
  t.equal(r.initial['x-initial'], 'hello');
  t.same(r.initial['x-initial-bin'], INITIAL_BIN);
  t.equal(r.trailing['x-trailer'], 'bye');
  t.same(r.trailing['x-trailer-bin'], TRAILER_BIN);

  const echoed = await c.unary({ 'x-echo-echo-payload': '1' }, { payload: patternBytes(70_000) });
  t.same(echoed.reply?.payload, patternBytes(70_000));
  t.equal(b.calls, 2);
  await b.waitFor(() => b.active === 0);
  t.equal(b.cancelled, 0, 'normal ends are not cancellations');
  t.equal(b.peers.size, 1, 'one connection');
  t.match(b.callLog, [{ method: 'Unary', deadlineMs: null, metadata: /x-custom: v/ }, { method: 'Unary' }]);
});

t.test('error statuses: after headers, and trailers-only', async (t) => {
  const { b, c } = await setup(t);
  const r = await c.unary({ 'x-echo-status': '7', 'x-echo-message': 'nope: 100%' });
  t.match(r, { status: 7, details: 'nope: 100%', reply: undefined });
  t.equal(r.initial['x-initial'], 'hello', 'headers were sent first');
  t.equal(r.trailing['x-trailer'], 'bye');
  t.same(r.trailing['x-trailer-bin'], TRAILER_BIN);

  const only = await c.unary({ 'x-echo-status': '5', 'x-echo-message': 'gone', 'x-echo-trailers-only': '1' });
  t.match(only, { status: 5, details: 'gone' });
  t.same(only.initial, {}, 'no headers');
  t.equal(only.trailing['x-trailer'], 'bye');

  for (const [kind, path] of Object.entries(ECHO_PATHS)) {
    const raw = await rawGrpcCall(b.address, { ':path': path, 'x-echo-status': '9', 'x-echo-trailers-only': '1' }, [grpcFrame(encodeEchoRequest({}))]);
    t.equal(raw.headers['grpc-status'], '9', `${kind}: status in the only HEADERS`);
    t.equal(raw.headers['x-trailer'], 'bye');
    t.same(raw.trailers, {});
    t.equal(raw.data.length, 0);
  }
  const ss = await c.serverStream({ 'x-echo-status': '8', 'x-echo-trailers-only': '1' }, { count: 3 });
  t.match(ss, { status: 8, replyCount: 0, initial: {} });
  const cs = await c.clientStream({ 'x-echo-status': '3', 'x-echo-trailers-only': '1' }, messages(3, 10));
  t.match(cs, { status: 3, replyCount: 0 });
  const bi = await c.bidi({ 'x-echo-status': '0', 'x-echo-trailers-only': '1' }, messages(3, 10));
  t.match(bi, { status: 0, replyCount: 0, initial: {} });
  t.equal(bi.trailing['x-trailer'], 'bye');
  await b.waitFor(() => b.active === 0);
  t.equal(b.cancelled, 0);
});

t.test('server stream: count x reply_size, status after the replies', async (t) => {
  const { c } = await setup(t);
  const r = await c.serverStream({}, { count: 5, reply_size: 1000 });
  t.match(r, { status: 0, replyCount: 5, replyBytes: 5000 });
  t.same(r.replies[4]?.payload, patternBytes(1000));
  t.same(r.replies.map((x) => x.received_messages), [1, 2, 3, 4, 5]);
  t.equal(r.trailing['x-trailer'], 'bye');

  const failed = await c.serverStream({ 'x-echo-status': '10', 'x-echo-message': 'aborted' }, { count: 3, reply_size: 10 });
  t.match(failed, { status: 10, details: 'aborted', replyCount: 3 });
  t.equal(failed.initial['x-initial'], 'hello');
  t.equal(failed.trailing['x-trailer'], 'bye');

  const big = await c.serverStream({}, { count: 64, reply_size: 1 << 20 }, { keepReplies: false });
  t.match(big, { status: 0, replyCount: 64, replyBytes: 64 << 20, replies: [] });

  const slow: number[] = [];
  const started = Date.now();
  const paced = await c.serverStream({ 'x-echo-sleep-ms': '50' }, { count: 3 }, { onReply: () => void slow.push(Date.now() - started) });
  t.equal(paced.replyCount, 3);
  t.ok((slow[2] ?? 0) >= 140, `replies paced by x-echo-sleep-ms: ${slow.join(',')}`);
});

t.test('client stream: counts bytes and messages; backpressure', async (t) => {
  const { b, c } = await setup(t);
  const r = await c.clientStream({}, messages(10, 1000));
  t.match(r, { status: 0, replyCount: 1 });
  t.match(r.reply, { received_bytes: 10_000, received_messages: 10, backend: 'b1' });

  // 256 MiB generated lazily: the generator can only run a bounded distance ahead of the server.
  const chunk = patternBytes(1 << 20);
  let generated = 0;
  async function* lazy(): AsyncGenerator<EchoRequest> {
    for (let i = 0; i < 256; i++) {
      generated++;
      yield { payload: chunk };
    }
  }
  const huge = await c.clientStream({ 'x-echo-status': '0' }, lazy());
  t.match(huge.reply, { received_bytes: 256 << 20, received_messages: 256 });
  t.equal(generated, 256);

  const failed = await c.clientStream({ 'x-echo-status': '11', 'x-echo-message': 'out of range' }, messages(2, 1));
  t.match(failed, { status: 11, details: 'out of range', replyCount: 0 });
  await b.waitFor(() => b.active === 0);
  t.equal(b.cancelled, 0);
});

t.test('backpressure: a stalled peer stops the sender', async (t) => {
  // A server that never reads: the client's generator must stop a few messages ahead.
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => sessions.add(s));
  let stalled: http2.ServerHttp2Stream | undefined;
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.pause();
    stalled = stream;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => closeServer(server, sessions));
  const c = echoClient(`127.0.0.1:${(server.address() as { port: number }).port}`);
  t.teardown(() => c.close());
  const chunk = patternBytes(1 << 20);
  let generated = 0;
  async function* twoGiB(): AsyncGenerator<EchoRequest> {
    for (let i = 0; i < 2048; i++) {
      generated++;
      yield { payload: chunk };
    }
  }
  const abort = new AbortController();
  const call = c.clientStream({}, twoGiB(), { signal: abort.signal });
  // The client has sent all the server's window allows; a PING answered after that: the
  // client's side has run since, and a generator read without backpressure would be far along.
  await waitFor(() => stalled?.state.localWindowSize === 0, 10_000, 'the server stream window filled');
  await new Promise<void>((resolve, reject) => stalled?.session?.ping((err) => (err ? reject(err) : resolve())));
  t.ok(generated < 64, `client generated ${generated} MiB while stalled`);
  abort.abort();
  t.equal((await call).status, 1);

  // A client that never reads: the backend must not queue 1 GiB of replies.
  const b = await startEchoBackend({ name: 'bp' });
  t.teardown(() => b.stop(1000));
  const rss = process.memoryUsage().rss;
  let reader: http2.ClientHttp2Stream | undefined;
  const raw = rawGrpcCall(b.address, { ':path': ECHO_PATHS.ServerStream }, [grpcFrame(encodeEchoRequest({ count: 1024, reply_size: 1 << 20 }))], {
    onStream: (s) => {
      s.pause();
      reader = s;
    },
  });
  await b.waitFor(() => b.blocked === 1, 10_000);
  const grown = (process.memoryUsage().rss - rss) >> 20;
  t.ok(grown < 256, `the backend waits for its stalled reader, having grown ${grown} MiB`);
  reader?.close(http2.constants.NGHTTP2_CANCEL);
  t.equal((await raw).rstCode, http2.constants.NGHTTP2_CANCEL);
  await b.waitFor(() => b.cancelled === 1 && b.active === 0);

  // A failing server stops a huge upload early.
  const c2 = echoClient(b.address);
  t.teardown(() => c2.close());
  generated = 0;
  const failed = await c2.clientStream({ 'x-echo-status': '8', 'x-echo-trailers-only': '1' }, twoGiB());
  t.equal(failed.status, 8);
  t.ok(generated < 64, `stopped after ${generated} MiB`);
});

t.test('bidi: one reply per request, running count, ping-pong', async (t) => {
  const { b, c } = await setup(t);
  const r = await c.bidi({}, [{ payload: patternBytes(1) }, { payload: patternBytes(2) }, { payload: patternBytes(3) }]);
  t.equal(r.status, 0);
  t.same(r.replies.map((x) => [x.received_bytes, x.received_messages]), [[1, 1], [2, 2], [3, 3]]);

  // Interactive: each request waits for the previous reply.
  let replies = 0;
  let wake: () => void = () => {};
  async function* pingPong(): AsyncGenerator<EchoRequest> {
    for (let i = 0; i < 4; i++) {
      yield { payload: patternBytes(10) };
      if (replies <= i) await new Promise<void>((resolve) => (wake = resolve));
    }
  }
  const pp = await c.bidi({ 'x-echo-echo-payload': '1', 'x-echo-status': '6' }, pingPong(), {
    onReply: () => {
      replies++;
      wake();
    },
  });
  t.match(pp, { status: 6, replyCount: 4 });
  t.same(pp.replies[3]?.payload, patternBytes(10));
  await b.waitFor(() => b.active === 0);
  t.equal(b.cancelled, 0);
});

t.test('deadline and client cancel are counted as cancellations', async (t) => {
  const { b, c } = await setup(t);
  const late = await c.unary({ 'x-echo-sleep-ms': '3000' }, {}, { deadlineMs: 200 });
  t.equal(late.status, 4);
  await b.waitFor(() => b.cancelled === 1 && b.active === 0);
  const deadlineMs = b.callLog[0]?.deadlineMs ?? 0;
  t.ok(deadlineMs > 100 && deadlineMs <= 200, `deadline seen by the backend: ${deadlineMs} ms`);

  const abort = new AbortController();
  const held = c.serverStream({ 'x-echo-hold': '1' }, { count: 2 }, { onReply: (_r, i) => (i === 1 ? abort.abort() : undefined), signal: abort.signal });
  const r = await held;
  t.match(r, { status: 1, replyCount: 2 });
  await b.waitFor(() => b.cancelled === 2 && b.active === 0);

  // A held stream stays open until cancelled: its reply has come, a later call is answered,
  // and it is still open.
  const abort2 = new AbortController();
  let replied = false;
  const open = c.serverStream({ 'x-echo-hold': '1' }, { count: 1 }, { signal: abort2.signal, onReply: () => void (replied = true) });
  await waitFor(() => replied, 5000, 'the held stream replied');
  t.equal((await c.unary({})).status, 0, 'a later call answered');
  t.equal(b.active, 1, 'still open');
  abort2.abort();
  t.equal((await open).status, 1);
  await b.waitFor(() => b.cancelled === 3 && b.active === 0);
  t.equal(b.calls, 4);
});

t.test('kill cuts streams mid-way; stop waits for open calls', async (t) => {
  const b = await startEchoBackend({ name: 'victim' });
  const c = echoClient(b.address);
  t.teardown(() => c.close());
  let got = 0;
  const held = c.serverStream({ 'x-echo-hold': '1' }, { count: 3 }, { onReply: () => void got++ });
  await b.waitFor(() => got === 3);
  b.kill();
  const r = await held;
  t.not(r.status, 0, `status ${r.status} ${r.details}`);
  t.equal(r.replyCount, 3);
  await b.waitFor(() => b.cancelled === 1 && b.active === 0);

  const b2 = await startEchoBackend({ name: 'graceful' });
  const c2 = echoClient(b2.address);
  t.teardown(() => c2.close());
  const slow = c2.unary({ 'x-echo-sleep-ms': '300' });
  await b2.waitFor(() => b2.active === 1);
  await b2.stop();
  t.equal((await slow).status, 0, 'the open call finished');
  t.equal(b2.cancelled, 0);
});

t.test('each echoClient has its own connection', async (t) => {
  const { b, c } = await setup(t);
  const other = echoClient(b.address);
  t.teardown(() => other.close());
  await c.unary();
  await c.unary();
  await other.unary();
  t.equal(b.peers.size, 2);
  t.equal(b.calls, 3);
});

t.test('python client against the backend', async (t) => {
  const { b } = await setup(t, 'py');
  const target = ['--target', b.address];
  const unary = await runPythonClient([...target, '-H', 'x-a=b', '-H', 'x-c-bin=AAEC', 'unary', '--calls', '2', '--payload-size', '100']);
  t.equal(unary.calls.length, 2);
  t.match(unary.calls[0], { code: 'OK', code_value: 0, backend: 'py', received_bytes: 100, replies: 1 });
  t.match(unary.calls[0]?.backend_metadata, /^x-a: b$/m);
  t.match(unary.calls[0]?.backend_metadata, /^x-c-bin: AAEC$/m);
  t.match(unary.calls[0]?.initial_metadata, { 'x-initial': 'hello', 'x-initial-bin': INITIAL_BIN.toString('base64') });
  t.match(unary.calls[0]?.trailing_metadata, { 'x-trailer': 'bye', 'x-trailer-bin': TRAILER_BIN.toString('base64') });

  const err = await runPythonClient([...target, '-H', 'x-echo-status=7', '-H', 'x-echo-message=denied', 'unary']);
  t.match(err.calls[0], { code: 'PERMISSION_DENIED', code_value: 7, details: 'denied', backend: null });

  const cs = await runPythonClient(['client-stream', ...target, '--total-bytes', String(10 << 20), '--chunk-size', '65536']);
  t.match(cs.calls[0], { code: 'OK', received_bytes: 10 << 20, received_messages: 160 });
  const ss = await runPythonClient([...target, 'server-stream', '--count', '4', '--reply-size', '1000']);
  t.match(ss.calls[0], { code: 'OK', replies: 4, reply_bytes: 4000 });
  const bidi = await runPythonClient([...target, 'bidi', '--count', '5', '--payload-size', '10']);
  t.match(bidi.calls[0], { code: 'OK', replies: 5, received_bytes: 10, received_messages: 1 });
  const piped = await runPythonClient([...target, 'bidi', '--count', '5', '--pipeline']);
  t.match(piped.calls[0], { code: 'OK', replies: 5 });
  const deadline = await runPythonClient([...target, '-H', 'x-echo-sleep-ms=2000', '--timeout', '0.2', 'unary']);
  t.match(deadline.calls[0], { code: 'DEADLINE_EXCEEDED', code_value: 4 });

  const peersBefore = b.peers.size;
  const channels = await runPythonClient([...target, 'channels', '--channels', '3', '--calls-per-channel', '2']);
  t.same(channels.calls.map((c) => c.channel), [0, 0, 1, 1, 2, 2]);
  t.equal(b.peers.size, peersBefore + 3, 'one connection per channel');
  await t.rejects(runPythonClient(['unary']), /--target/);
});

t.test('misbehaving TCP backends', async (t) => {
  const garbage = await startGarbageBackend();
  const silent = await startSilentBackend();
  t.teardown(async () => {
    await garbage.close();
    await silent.close();
  });
  const g = echoClient(garbage.address);
  const s = echoClient(silent.address);
  t.teardown(() => {
    g.close();
    s.close();
  });
  const rg = await g.unary({}, {}, { deadlineMs: 3000 });
  t.not(rg.status, 0, `garbage: ${rg.status} ${rg.details}`);
  t.ok(garbage.connections >= 1);
  const rs = await s.unary({}, {}, { deadlineMs: 500 });
  t.not(rs.status, 0, `silent: ${rs.status} ${rs.details}`);
  t.ok(silent.connections >= 1);
});

t.test('raw HTTP/2 and HTTP/1.1 probes', async (t) => {
  const { b } = await setup(t);
  const raw = await rawGrpcCall(b.address, { ':path': ECHO_PATHS.ServerStream, 'x-k': 'v' }, [grpcFrame(encodeEchoRequest({ count: 2, reply_size: 3 }))]);
  t.equal(raw.headers[':status'], 200);
  t.equal(raw.headers['x-initial'], 'hello');
  t.equal(raw.trailers['grpc-status'], '0');
  t.equal(raw.rstCode, 0);
  const replies = parseGrpcFrames(raw.data).map(decodeEchoReply);
  t.same(replies.map((r) => r.payload), [patternBytes(3), patternBytes(3)]);
  t.match(replies[0]?.metadata, /^x-k: v$/m);

  // RST_STREAM(CANCEL) from the client side.
  const cancelled = await rawGrpcCall(b.address, { ':path': ECHO_PATHS.ServerStream, 'x-echo-hold': '1' }, [grpcFrame(encodeEchoRequest({}))], {
    onStream: (s) => s.on('data', () => s.close(http2.constants.NGHTTP2_CANCEL)),
  });
  t.equal(cancelled.rstCode, http2.constants.NGHTTP2_CANCEL);
  await b.waitFor(() => b.cancelled === 1);

  const answer = await sendHttp1('127.0.0.1', b.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.type(answer, 'string', `HTTP/1.1 probe ended: ${JSON.stringify(answer.slice(0, 40))}`);
  const silent = await startSilentBackend();
  t.teardown(() => silent.close());
  await t.rejects(sendHttp1('127.0.0.1', silent.port, 'GET / HTTP/1.1\r\n\r\n', 300), /still open/);
});

t.test('files: functions, keys, TLS certificate', async (t) => {
  const dir = t.testdir({});
  const paths = writeFunctionsDir(join(dir, 'fns'), [
    { name: 'greeter', functionId: 'fn-1', activeVersion: 'v2', maxSessionsPerEndpoint: 1, versions: [{ versionId: 'v1', endpoints: ['127.0.0.1:1'] }, { versionId: 'v2', endpoints: ['127.0.0.1:2', '127.0.0.1:3'] }] },
    { name: 'other', functionId: 'fn-2', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: ['127.0.0.1:4'] }] },
  ]);
  t.equal(paths.length, 2);
  const { specs } = await loadFunctionsDir(join(dir, 'fns'));
  t.match(specs, [
    { name: 'greeter', functionId: 'fn-1', activeVersion: 'v2', maxSessionsPerEndpoint: 1, versions: [{ versionId: 'v1' }, { versionId: 'v2', backend: { kind: 'static', endpoints: ['127.0.0.1:2', '127.0.0.1:3'] } }] },
    { name: 'other', functionId: 'fn-2' },
  ]);

  writeKeysFile(join(dir, 'keys.yaml'), [
    { name: 'alice', key: 'secret-a', functions: ['fn-1'] },
    { name: 'bob', key: 'secret-b', functions: '*' },
  ]);
  const keys = (await apiKeysFile.load(join(dir, 'keys.yaml'))).value;
  t.match(keys, [{ name: 'alice', sha256: sha256Hex('secret-a'), functions: new Set(['fn-1']) }, { name: 'bob', sha256: sha256Hex('secret-b'), functions: '*' }]);

  const tls = makeTlsCert(join(dir, 'tls'));
  const server = http2.createSecureServer({ cert: tls.ca, key: (await import('node:fs')).readFileSync(tls.key) });
  server.on('stream', (stream) => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': 'tls ok' }, { endStream: true }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const raw = await rawGrpcCall(`127.0.0.1:${port}`, { ':path': ECHO_PATHS.Unary }, [], { tls: { ca: tls.ca } });
  t.equal(raw.headers['grpc-status'], '12', 'raw: IP SAN verified');
  const c = echoClient(`localhost:${port}`, { tls: { ca: tls.ca } });
  const c2 = echoClient(`127.0.0.1:${port}`, { tls: { ca: tls.ca, serverName: 'localhost' } });
  t.teardown(() => {
    c.close();
    c2.close();
  });
  t.match(await c.unary(), { status: 12, details: 'tls ok' });
  t.match(await c2.unary(), { status: 12, details: 'tls ok' });
});

t.test('gateway process runner (fake fngate)', async (t) => {
  const dir = t.testdir({
    'fake.mjs': `
const args = process.argv.slice(2);
if (args.includes('--fail')) { process.stderr.write('boom: bad flag\\n'); process.exit(2); }
const log = (o) => process.stderr.write(JSON.stringify({ level: 'info', ...o }) + '\\n');
process.stderr.write('not json\\n');
log({ msg: 'fngate listening', h2c: '127.0.0.1:1111', tls: null, admin: '127.0.0.1:2222', args, env: process.env.FNGATE_X ?? null });
process.stdout.write('call it like this\\n');
process.on('SIGTERM', () => { log({ msg: 'draining' }); setTimeout(() => process.exit(0), 50); });
setInterval(() => log({ msg: 'tick' }), 20);
`,
  });
  const entry = join(dir, 'fake.mjs');
  const gw = await startGateway(['--functions', 'x'], { entry, env: { FNGATE_X: 'y' } });
  t.teardown(() => gw.stop());
  t.equal(gw.h2c, '127.0.0.1:1111');
  t.equal(gw.tls, null);
  t.equal(gw.admin, '127.0.0.1:2222');
  t.match(gw.logLines()[0], { args: ['serve', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--functions', 'x'], env: 'y' });
  t.match(gw.logs(), /^not json$/m);
  await gw.waitForLog((l) => l['msg'] === 'tick');
  await gw.waitForStdout('call it like this');
  t.ok(gw.rssBytes() > 1 << 20);
  t.ok(gw.peakRssBytes() >= gw.rssBytes());
  t.ok(gw.treeRssBytes() >= gw.rssBytes());
  await gw.stop();
  t.same(await gw.exited, { code: 0, signal: null });
  t.ok(gw.logLines().some((l) => l['msg'] === 'draining'));
  await t.rejects(gw.waitForLog((l) => l['msg'] === 'never', 5000), /exited before/);

  const own = await startGateway(['--listen=127.0.0.1:5'], { entry });
  t.teardown(() => own.stop());
  t.match(own.logLines()[0], { args: ['serve', '--admin', '127.0.0.1:0', '--listen=127.0.0.1:5'] });
  await own.stop();

  await t.rejects(startGateway(['--fail'], { entry }), /exited before readiness[\s\S]*boom: bad flag/);
});
