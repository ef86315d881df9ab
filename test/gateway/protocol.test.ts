// Protocol-level behaviour of the real gateway process, with raw clients where gRPC libraries
// would hide it: non-gRPC content types, HTTP/1.1 on the h2c port, grpc-message encoding both
// ways, the gateway's own grpc.health.v1.Health (also while draining), and clients that break
// the HTTP/2 protocol while well-behaved ones carry on.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import { closeServer, startEchoBackend } from '../helpers/backend.ts';
import { echoClient, holdStream } from '../helpers/echo-client.ts';
import type { MetadataRecord } from '../helpers/echo-client.ts';
import { ECHO_PATHS, encodeEchoRequest } from '../helpers/echo-proto.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { startGateway, SESSION_ID } from '../helpers/gateway.ts';
import { decodeGrpcMessage, grpcFrame, parseGrpcFrames, rawGrpcCall, sendHttp1 } from '../helpers/http2-raw.ts';
import type { RawResponse } from '../helpers/http2-raw.ts';
import { runPythonClient } from '../helpers/python.ts';
import { waitFor } from '../helpers/wait.ts';
import { connectRaw, FrameType, Flag, frame, grpcRequestHeaders, headersFrame, parseFrames, settingsFrame } from '../abuse/h2-wire.ts';

type TestT = Parameters<Parameters<typeof t.test>[0]>[0];

const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
const HEALTH_WATCH = '/grpc.health.v1.Health/Watch';
/** HealthCheckResponse { status: SERVING | NOT_SERVING | SERVICE_UNKNOWN } as protobuf bytes. */
const SERVING = Buffer.from([0x08, 0x01]);
const NOT_SERVING = Buffer.from([0x08, 0x02]);
const SERVICE_UNKNOWN = Buffer.from([0x08, 0x03]);

// --- local helpers ----------------------------------------------------------------------

/** HealthCheckRequest { service } as protobuf bytes (field 1, length-delimited; "" is no bytes). */
function healthRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  if (name.length === 0) return Buffer.alloc(0);
  if (name.length > 127) throw new Error('healthRequest: short names only');
  return Buffer.concat([Buffer.from([0x0a, name.length]), name]);
}

/** Printable ASCII only, and every '%' starts a %XX escape: a correctly percent-encoded grpc-message. */
const WELL_ENCODED = /^(?:[\x20-\x24\x26-\x7e]|%[0-9A-F]{2})*$/;

const header = (res: RawResponse, name: string): string => {
  const v = res.headers[name];
  return typeof v === 'string' ? v : '';
};

/**
 * Writes `bytes` on a plain TCP connection and collects what comes back until the server
 * closes it; rejects (with what came) if it is still open after `timeoutMs`. (sendHttp1 takes
 * text, which would be UTF-8 encoded; this needs exact bytes.)
 */
function rawTcp(address: string, bytes: Buffer, timeoutMs = 5000): Promise<Buffer> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${address}: connection still open after ${timeoutMs} ms; received ${Buffer.concat(chunks).toString('hex')}`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {}); // a reset still ends in 'close'
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_DATA = 0x0;
const FRAME_HEADERS = 0x1;
const FRAME_SETTINGS = 0x4;
const FRAME_GOAWAY = 0x7;
const SETTINGS_EMPTY = frame(FRAME_SETTINGS, 0, 0, Buffer.alloc(0));

/**
 * A backend answering every call with FAILED_PRECONDITION and a fixed, already encoded
 * grpc-message (request header `x-message: sloppy` picks a message that is not well encoded);
 * `x-trailers-only: 1` puts it in a trailers-only response. Raw node:http2, so the exact bytes
 * of grpc-message are under the test's control.
 */
async function startMessageBackend(messages: { good: string; sloppy: string }): Promise<{ address: string; close(): Promise<void> }> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    stream.resume();
    const status = { 'grpc-status': '9', 'grpc-message': headers['x-message'] === 'sloppy' ? messages.sloppy : messages.good };
    if (headers['x-trailers-only'] === '1') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...status }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(status));
    stream.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => closeServer(server, sessions),
  };
}

/**
 * A backend that records each request's header fields as they arrived (node:http2's flat
 * list) and answers with fields a strict sender would refuse: a repeated content-type, a
 * repeated metadata key, and an nvcf-reqid of its own.
 */
async function startFieldsBackend(): Promise<{ address: string; seen: string[][]; close(): Promise<void> }> {
  const server = http2.createServer({ strictSingleValueFields: false });
  const sessions = new Set<http2.ServerHttp2Session>();
  const seen: string[][] = [];
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, _headers, _flags, rawHeaders: string[]) => {
    seen.push(rawHeaders);
    stream.on('error', () => {});
    stream.resume();
    const fields = [':status', '200', 'content-type', 'application/grpc', 'content-type', 'application/grpc+proto', 'x-fn', 'one', 'x-fn', 'two', 'nvcf-reqid', 'made-up-by-function'];
    stream.respond(fields, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    seen,
    close: () => closeServer(server, sessions),
  };
}

/** Every value of `name` in a flat [name, value, ...] list, in order. */
function fieldValues(list: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) values.push(list[i + 1] as string);
  return values;
}

// --- the shared gateway -----------------------------------------------------------------

const dir = t.testdir({});
const fnDir = join(dir, 'functions');
const keysFile = join(dir, 'keys.yaml');

/** From the function, percent-encoded: "café 100% dürch ✓ 🚀". */
const FN_MESSAGE_RAW = 'caf%C3%A9 100%25 d%C3%BCrch %E2%9C%93 %F0%9F%9A%80';
const FN_MESSAGE = 'café 100% dürch ✓ 🚀';
/** Not well encoded (a bare '%', a bad escape): still passed on byte for byte. */
const FN_SLOPPY_RAW = '50% off %zz 100%';

const echo = await startEchoBackend({ name: 'echo' });
const messenger = await startMessageBackend({ good: FN_MESSAGE_RAW, sloppy: FN_SLOPPY_RAW });
const fields = await startFieldsBackend();
t.teardown(async () => {
  await echo.stop(1000);
  await messenger.close();
  await fields.close();
});
writeFunctionsDir(fnDir, [
  { name: 'echo', functionId: 'fn-echo', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [echo.address] }] },
  { name: 'messenger', functionId: 'fn-messenger', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [messenger.address] }] },
  { name: 'fields', functionId: 'fn-fields', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [fields.address] }] },
]);
const KEY = randomKey();
writeKeysFile(keysFile, [{ name: 'all', key: KEY, functions: '*' }]);
const GATEWAY_ARGS = ['--functions', fnDir, '--api-keys', keysFile, '--idle-timeout', '30s', '--session-linger', '2s', '--drain-timeout', '5s'];
const gw = await startGateway(GATEWAY_ARGS);
t.teardown(() => gw.stop());
let gatewayExited = false;
void gw.exited.then(() => {
  gatewayExited = true;
});

const AUTH = { authorization: `Bearer ${KEY}` };
const GOOD: MetadataRecord = { ...AUTH, 'function-id': 'fn-echo' };
const UNARY_BODY = [grpcFrame(encodeEchoRequest({}))];

/** A fresh grpc-js connection makes one good call. */
async function goodCallWorks(t: TestT, what: string): Promise<void> {
  const c = echoClient(gw.h2c);
  try {
    const r = await c.unary(GOOD, {}, { deadlineMs: 5000 });
    t.equal(r.status, 0, `${what}: a good call on a new connection works (${r.details})`);
    t.equal(r.reply?.backend, 'echo');
  } finally {
    c.close();
  }
}

// --- not gRPC -----------------------------------------------------------------------------

t.test('a request that is not gRPC gets HTTP 415', async (t) => {
  const callsBefore = echo.calls;
  for (const contentType of ['application/json', undefined, 'text/plain', 'application/grpc-web', 'application/grpc-web+proto', 'application/grpcfoo']) {
    const what = `content-type ${contentType ?? '(none)'}`;
    const res = await rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, ...GOOD, 'content-type': contentType }, UNARY_BODY);
    t.equal(res.headers[':status'], 415, `${what}: HTTP 415`);
    t.equal(res.headers['grpc-status'], undefined, `${what}: not a gRPC status`);
    t.match(res.data.toString('utf8'), /application\/grpc/, `${what}: the body says what is expected`);
    t.equal(res.error, undefined, `${what}: no stream error`);
  }
  // Without a token too: the content type is checked first.
  const anon = await rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, 'content-type': 'application/json' }, [Buffer.from('{}')]);
  t.equal(anon.headers[':status'], 415, 'no token: still 415');
  t.equal(echo.calls, callsBefore, 'nothing reached the function');

  // gRPC content types with a format suffix or parameters are gRPC.
  for (const contentType of ['application/grpc+proto', 'application/grpc; charset=utf-8']) {
    const res = await rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, ...GOOD, 'content-type': contentType }, UNARY_BODY);
    t.equal(res.headers[':status'], 200, `${contentType}: HTTP 200`);
    t.equal(res.trailers['grpc-status'], '0', `${contentType}: forwarded and answered OK`);
  }
  t.equal(echo.calls, callsBefore + 2);
});

t.test('HTTP/1.1 on the h2c port: a readable HTTP/1.1 error response, then close', async (t) => {
  const [host, port] = splitAddress(gw.h2c);
  const requests = {
    'GET /': 'GET / HTTP/1.1\r\nHost: gw\r\n\r\n',
    'POST to a gRPC path': `POST ${ECHO_PATHS.Unary} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\n\r\n\0\0\0\0\0`,
    'h2c upgrade': 'GET / HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    'HTTP/1.0': 'GET /healthz HTTP/1.0\r\n\r\n',
  };
  for (const [what, text] of Object.entries(requests)) {
    const answer = await sendHttp1(host, port, text, 5000); // rejects if the connection stays open
    const [head = '', body = ''] = answer.split('\r\n\r\n', 2);
    t.match(head, /^HTTP\/1\.[01] [45]\d\d [^\r\n]+\r\n/, `${what}: an HTTP/1.1 status line (${JSON.stringify(head.split('\r\n')[0])})`);
    t.match(head, /^content-type: text\/plain/im, `${what}: text body`);
    const length = /^content-length: (\d+)$/im.exec(head);
    t.ok(length !== null && Number(length[1]) === Buffer.byteLength(body, 'latin1'), `${what}: Content-Length matches the body`);
    t.match(body, /HTTP\/2/, `${what}: the message says the port speaks HTTP/2 (${JSON.stringify(body)})`);
    t.match(body, /gRPC/, `${what}: ... and gRPC`);
  }
  await goodCallWorks(t, 'after the HTTP/1.1 probes');
});

t.test('a preface that arrives a few octets at a time is taken, and the call on it served', async (t) => {
  const raw = await connectRaw(gw.h2c, { preface: false, keepFrames: true });
  t.teardown(() => raw.destroy());
  // The preface five octets at a time, its last piece with our SETTINGS (the connection must
  // start with it, before this client acknowledges the gateway's).
  const pieces = [0, 5, 10, 15, 20].map((at) => PREFACE.subarray(at, at + 5));
  pieces[pieces.length - 1] = Buffer.concat([PREFACE.subarray(20), settingsFrame()]);
  for (const [i, piece] of pieces.entries()) {
    t.equal(raw.count(FrameType.SETTINGS), 0, `nothing answered before the preface is whole (${i * 5} octets sent)`);
    await raw.write(piece);
    await new Promise((resolve) => setImmediate(resolve)); // separate writes, likely separate reads
  }
  await Promise.race([raw.settled, raw.closedPromise]);
  t.equal(raw.closed, false, 'the gateway took the preface and sent its SETTINGS');
  const body = Buffer.concat(UNARY_BODY);
  await raw.write(Buffer.concat([
    headersFrame(1, grpcRequestHeaders(gw.h2c, ECHO_PATHS.Unary, { authorization: AUTH.authorization, 'function-id': 'fn-echo' })),
    frame(FrameType.DATA, Flag.END_STREAM, 1, body),
  ]));
  await waitFor(() => raw.frames.some((f) => f.type === FrameType.HEADERS && f.streamId === 1 && (f.flags & Flag.END_STREAM) !== 0) || raw.closed, 5000, 'the call answered');
  t.ok(raw.responded.has(1), 'the call was answered on stream 1');
  t.equal(raw.goaways.length, 0, 'no GOAWAY');
});

t.test('a client that closes its side after its call: the gateway closes too, with a FIN, not a reset', async (t) => {
  const raw = await connectRaw(gw.h2c, { keepFrames: true });
  t.teardown(() => raw.destroy());
  await raw.write(Buffer.concat([
    headersFrame(1, grpcRequestHeaders(gw.h2c, ECHO_PATHS.Unary, { authorization: AUTH.authorization, 'function-id': 'fn-echo' })),
    frame(FrameType.DATA, Flag.END_STREAM, 1, Buffer.concat(UNARY_BODY)),
  ]));
  await waitFor(() => raw.frames.some((f) => f.type === FrameType.HEADERS && f.streamId === 1 && (f.flags & Flag.END_STREAM) !== 0), 5000, 'the call answered');
  let reset: string | undefined;
  raw.socket.on('error', (err: NodeJS.ErrnoException) => (reset = err.code));
  const ended = new Promise<void>((resolve) => raw.socket.once('end', () => resolve()));
  raw.socket.end();
  await ended;
  await raw.waitClosed(5000);
  t.equal(reset, undefined, 'no ECONNRESET');
  await goodCallWorks(t, 'after the half-close');
});

// --- grpc-message ---------------------------------------------------------------------------

t.test('grpc-message from the function passes through unchanged', async (t) => {
  const md = { ...AUTH, 'function-id': 'fn-messenger' };
  for (const trailersOnly of [false, true]) {
    const kind = trailersOnly ? 'trailers-only' : 'headers + trailers';
    const extra: MetadataRecord = trailersOnly ? { 'x-trailers-only': '1' } : {};
    const direct = await rawGrpcCall(messenger.address, { ':path': ECHO_PATHS.Unary, ...extra }, UNARY_BODY);
    const via = await rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, ...md, ...extra }, UNARY_BODY);
    const where = trailersOnly ? 'headers' : 'trailers';
    t.equal(direct[where]['grpc-message'], FN_MESSAGE_RAW, `${kind}: the backend sends it encoded`);
    t.equal(via[where]['grpc-status'], '9', `${kind}: status passed on`);
    t.equal(via[where]['grpc-message'], FN_MESSAGE_RAW, `${kind}: raw grpc-message byte for byte`);

    const sloppy = await rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, ...md, ...extra, 'x-message': 'sloppy' }, UNARY_BODY);
    t.equal(sloppy[where]['grpc-message'], FN_SLOPPY_RAW, `${kind}: a message that is not well encoded is not "fixed" either`);

    const c = echoClient(gw.h2c);
    t.teardown(() => c.close());
    const r = await c.unary({ ...md, ...extra });
    t.equal(r.status, 9, `${kind}: grpc-js status`);
    t.equal(r.details, FN_MESSAGE, `${kind}: grpc-js decodes the function's text`);
    const py = await runPythonClient(['--target', gw.h2c, '-H', `authorization=Bearer ${KEY}`, '-H', 'function-id=fn-messenger', ...(trailersOnly ? ['-H', 'x-trailers-only=1'] : []), 'unary']);
    t.equal(py.calls[0]?.code, 'FAILED_PRECONDITION', `${kind}: python status`);
    t.equal(py.calls[0]?.details, FN_MESSAGE, `${kind}: python decodes the function's text`);
  }

  // The Echo backend (grpc-js) encodes '%' itself; the clients get the text back.
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  const r = await c.unary({ ...GOOD, 'x-echo-status': '10', 'x-echo-message': '100% sure, 50%25 not' });
  t.match(r, { status: 10, details: '100% sure, 50%25 not' });
  const py = await runPythonClient(['--target', gw.h2c, '-H', `authorization=Bearer ${KEY}`, '-H', 'function-id=fn-echo', '-H', 'x-echo-status=10', '-H', 'x-echo-message=100% sure, 50%25 not', 'unary']);
  t.match(py.calls[0], { code: 'ABORTED', details: '100% sure, 50%25 not' });
});

t.test('header fields: repeated metadata stays separate both ways, a repeated single-value field keeps the first', async (t) => {
  // A client that sends what HTTP/2 allows but a strict sender would refuse.
  // (@types/node does not list strictSingleValueFields yet.)
  const session = http2.connect(`http://${gw.h2c}`, { strictSingleValueFields: false } as http2.ClientSessionOptions);
  t.teardown(() => session.close());
  session.on('error', () => {});
  const request = [
    ':method', 'POST', ':scheme', 'http', ':authority', 'fngate.test', ':path', ECHO_PATHS.Unary,
    'content-type', 'application/grpc', 'te', 'trailers', 'authorization', `Bearer ${KEY}`, 'function-id', 'fn-fields',
    'x-meta', 'a', 'x-meta', 'b', 'user-agent', 'first/1', 'user-agent', 'second/2', 'fngate-subject', 'forged',
  ];
  const result = await new Promise<{ fields: string[]; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
    const req = session.request(request);
    let got: string[] = [];
    req.on('response', (_h, _flags, rawHeaders: string[]) => {
      got = rawHeaders;
    });
    req.on('trailers', (trailers) => resolve({ fields: got, trailers }));
    req.on('error', reject);
    req.on('close', () => reject(new Error(`closed without trailers (rst ${req.rstCode})`)));
    req.resume();
    req.end(grpcFrame(encodeEchoRequest({})));
  });

  const upstream = fields.seen.at(-1) ?? [];
  t.same(fieldValues(upstream, 'x-meta'), ['a', 'b'], 'the function gets both x-meta fields, in order, as two fields');
  t.same(fieldValues(upstream, 'user-agent'), ['first/1'], 'a repeated user-agent (single-value): the first, once');
  t.same(fieldValues(upstream, 'authorization'), [], 'no credential');
  t.same(fieldValues(upstream, 'fngate-subject'), ['all'], 'fngate-subject once: the key name, not the forged one');

  t.same(fieldValues(result.fields, 'x-fn'), ['one', 'two'], 'the client gets both x-fn fields, in order');
  t.same(fieldValues(result.fields, 'content-type'), ['application/grpc'], 'a repeated content-type from the function: the first, once');
  const ids = fieldValues(result.fields, 'nvcf-reqid');
  t.equal(ids.length, 1, 'one nvcf-reqid');
  t.match(ids[0], SESSION_ID, "the gateway's session id, not the function's own");
  t.equal(result.trailers['grpc-status'], '0', 'the call succeeded');
  await goodCallWorks(t, 'after the repeated fields');
});

t.test('gateway-originated grpc-message is percent-encoded correctly', async (t) => {
  // A function id can only be plain ASCII: the message carries it as is.
  const nf = await rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, ...AUTH, 'function-id': 'fn-no.such_id' }, UNARY_BODY);
  t.equal(nf.headers['grpc-status'], '5');
  t.equal(nf.headers['grpc-message'], 'function fn-no.such_id not found', 'plain ASCII, unchanged');

  // A non-ASCII or '%' version id is refused as malformed before anything could echo it.
  for (const version of ['vé', 'v%41', 'v 1']) {
    const res = await rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, ...AUTH, 'function-id': 'fn-echo', 'function-version-id': version }, UNARY_BODY);
    t.equal(res.headers['grpc-status'], '3', `version ${JSON.stringify(version)}: INVALID_ARGUMENT`);
    const raw = header(res, 'grpc-message');
    t.match(raw, WELL_ENCODED, `version ${JSON.stringify(version)}: message well encoded (${JSON.stringify(raw)})`);
    t.match(decodeGrpcMessage(raw), /^function-version-id must be 1-128 characters of A-Za-z0-9\._-/);
  }
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  const r = await c.unary({ ...GOOD, 'function-version-id': 'v%41' });
  t.match(r, { status: 3, details: /^function-version-id must be/ });

  // A message that does carry client text beyond ASCII: the health service names the unknown service.
  const service = 'ünknown 100% ✓';
  const res = await rawGrpcCall(gw.h2c, { ':path': HEALTH_CHECK }, [grpcFrame(healthRequest(service))]);
  t.equal(res.headers['grpc-status'], '5', 'unknown service: NOT_FOUND');
  const raw = header(res, 'grpc-message');
  t.match(raw, WELL_ENCODED, `well encoded: ${JSON.stringify(raw)}`);
  t.match(raw, /%C3%BCnknown 100%25 %E2%9C%93/, 'UTF-8 bytes and % as %XX');
  t.match(decodeGrpcMessage(raw), `"${service}"`, 'decodes back to the service name');
  const health = new grpc.Client(gw.h2c, grpc.credentials.createInsecure());
  t.teardown(() => health.close());
  const viaGrpcJs = await grpcUnary(health, HEALTH_CHECK, healthRequest(service));
  t.equal(viaGrpcJs.code, 5);
  t.match(viaGrpcJs.details, `"${service}"`, 'grpc-js decodes the same text');
});

// --- the gateway's own health service ---------------------------------------------------------

interface UnaryOutcome {
  code: number;
  details: string;
  reply: Buffer | undefined;
  trailing: grpc.Metadata | undefined;
}

/** A unary call with raw bytes in and out (no protobuf runtime), on a grpc-js client. */
function grpcUnary(client: grpc.Client, path: string, request: Buffer, md: MetadataRecord = {}): Promise<UnaryOutcome> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) metadata.set(k, v);
  return new Promise((resolve) => {
    let reply: Buffer | undefined;
    const call = client.makeUnaryRequest<Buffer, Buffer>(path, (b) => b, (b) => b, request, metadata, { deadline: Date.now() + 5000 }, (_err, value) => {
      reply = value;
    });
    call.on('status', (s: grpc.StatusObject) => setImmediate(() => resolve({ code: s.code, details: s.details, reply, trailing: s.metadata })));
  });
}

t.test('Health/Check and Watch without function-id answer for the gateway, with no token', async (t) => {
  const check = await rawGrpcCall(gw.h2c, { ':path': HEALTH_CHECK }, [grpcFrame(healthRequest(''))]);
  t.equal(check.headers[':status'], 200);
  t.equal(check.headers['content-type'], 'application/grpc');
  t.same(parseGrpcFrames(check.data), [SERVING], 'Check: one message, SERVING (08 01)');
  t.equal(check.trailers['grpc-status'], '0', 'Check: OK');
  t.equal(check.headers['nvcf-reqid'], undefined, 'not a function session');

  const emptyBody = await rawGrpcCall(gw.h2c, { ':path': HEALTH_CHECK }, []);
  t.same(parseGrpcFrames(emptyBody.data), [SERVING], 'Check with no request message at all: SERVING');

  const unknown = await rawGrpcCall(gw.h2c, { ':path': HEALTH_CHECK }, [grpcFrame(healthRequest('fngate.test.Echo'))]);
  t.equal(unknown.headers['grpc-status'], '5', 'Check for another service: NOT_FOUND');
  t.match(decodeGrpcMessage(header(unknown, 'grpc-message')), /unknown service "fngate\.test\.Echo"/);
  t.equal(unknown.data.length, 0);

  // Watch: the current status at once, then the stream stays open.
  const watch = await rawGrpcCall(gw.h2c, { ':path': HEALTH_WATCH }, [grpcFrame(healthRequest(''))], {
    // Still open a moment after the first message: then cancel it.
    onStream: (s) => s.once('data', () => setTimeout(() => s.close(http2.constants.NGHTTP2_CANCEL), 300)),
  });
  t.same(parseGrpcFrames(watch.data), [SERVING], 'Watch: SERVING (08 01)');
  t.same(watch.trailers, {}, 'Watch: no status before the client cancelled');
  t.equal(watch.rstCode, http2.constants.NGHTTP2_CANCEL, 'Watch: ended by the client');

  const watchUnknown = await rawGrpcCall(gw.h2c, { ':path': HEALTH_WATCH }, [grpcFrame(healthRequest('nope'))], {
    onStream: (s) => s.once('data', () => setTimeout(() => s.close(http2.constants.NGHTTP2_CANCEL), 100)),
  });
  t.same(parseGrpcFrames(watchUnknown.data), [SERVICE_UNKNOWN], 'Watch for another service: SERVICE_UNKNOWN, stays open');

  // A real gRPC client, no credentials at all.
  const client = new grpc.Client(gw.h2c, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const viaGrpcJs = await grpcUnary(client, HEALTH_CHECK, healthRequest(''));
  t.equal(viaGrpcJs.code, 0, `grpc-js Check OK (${viaGrpcJs.details})`);
  t.same(viaGrpcJs.reply, SERVING, 'grpc-js Check: SERVING');

  // Another method of the health service is not the gateway's: without function-id it is refused.
  const list = await rawGrpcCall(gw.h2c, { ':path': '/grpc.health.v1.Health/List', ...AUTH }, [grpcFrame(Buffer.alloc(0))]);
  t.equal(list.headers['grpc-status'], '3', 'Health/List without function-id: INVALID_ARGUMENT');
});

t.test('Health/Check and Watch WITH function-id are forwarded to the function', async (t) => {
  const callsBefore = echo.calls;
  for (const path of [HEALTH_CHECK, HEALTH_WATCH]) {
    const res = await rawGrpcCall(gw.h2c, { ':path': path, ...GOOD }, [grpcFrame(healthRequest(''))]);
    t.equal(res.headers[':status'], 200);
    t.equal(res.headers['grpc-status'], '12', `${path}: UNIMPLEMENTED from the Echo backend`);
    t.match(decodeGrpcMessage(header(res, 'grpc-message')), new RegExp(`does not implement the method ${path.replace(/\./g, '\\.')}`), `${path}: the function's own message`);
    t.match(res.headers['nvcf-reqid'], SESSION_ID, `${path}: a function session (nvcf-reqid)`);
    t.equal(res.data.length, 0, `${path}: no health message from the gateway`);
  }
  t.equal(echo.calls, callsBefore, 'the Echo service itself was not called (grpc-js answered for the unknown method)');

  const client = new grpc.Client(gw.h2c, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const forwarded = await grpcUnary(client, HEALTH_CHECK, healthRequest(''), GOOD);
  t.equal(forwarded.code, 12, `grpc-js: UNIMPLEMENTED (${forwarded.details})`);
  t.match(forwarded.details, /does not implement/);

  const noToken = await rawGrpcCall(gw.h2c, { ':path': HEALTH_CHECK, 'function-id': 'fn-echo' }, [grpcFrame(healthRequest(''))]);
  t.equal(noToken.headers['grpc-status'], '16', 'with function-id a token is needed: UNAUTHENTICATED');
  const unknownFn = await rawGrpcCall(gw.h2c, { ':path': HEALTH_CHECK, ...AUTH, 'function-id': 'fn-nope' }, [grpcFrame(healthRequest(''))]);
  t.equal(unknownFn.headers['grpc-status'], '5', 'with an unknown function-id: NOT_FOUND');
});

// --- broken HTTP/2 clients -------------------------------------------------------------------

t.test('a client breaking HTTP/2 gets GOAWAY and is closed; others carry on', async (t) => {
  // A well-behaved client with a stream open throughout, on its own connection.
  const steady = echoClient(gw.h2c);
  t.teardown(() => steady.close());
  const held = await holdStream(steady, GOOD, 'steady stream open');

  const PROTOCOL_ERROR = 0x1;
  const FRAME_SIZE_ERROR = 0x6;
  const COMPRESSION_ERROR = 0x9;
  const cases: Array<{ what: string; bytes: Buffer; code?: number }> = [
    { what: 'text after the preface', bytes: Buffer.concat([PREFACE, Buffer.from('this is not an HTTP/2 frame at all, just some text\r\n')]) },
    { what: 'first frame not SETTINGS', bytes: Buffer.concat([PREFACE, frame(FRAME_DATA, 0, 1, Buffer.from('x'))]), code: PROTOCOL_ERROR },
    { what: 'DATA on stream 0', bytes: Buffer.concat([PREFACE, SETTINGS_EMPTY, frame(FRAME_DATA, 0, 0, Buffer.from('hello'))]), code: PROTOCOL_ERROR },
    { what: 'SETTINGS of 5 bytes', bytes: Buffer.concat([PREFACE, frame(FRAME_SETTINGS, 0, 0, Buffer.alloc(5))]), code: FRAME_SIZE_ERROR },
    { what: 'frame larger than SETTINGS_MAX_FRAME_SIZE', bytes: Buffer.concat([PREFACE, SETTINGS_EMPTY, frame(FRAME_DATA, 0, 1, Buffer.alloc(20_000))]), code: FRAME_SIZE_ERROR },
    {
      what: 'HEADERS with an undecodable HPACK block',
      bytes: Buffer.concat([PREFACE, SETTINGS_EMPTY, frame(FRAME_HEADERS, 0x4 | 0x1, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))]),
      code: COMPRESSION_ERROR,
    },
  ];
  for (const c of cases) {
    const answer = await rawTcp(gw.h2c, c.bytes, 5000); // resolves only once the gateway closed the connection
    const { frames } = parseFrames(answer);
    const goaway = frames.find((f) => f.type === FRAME_GOAWAY);
    t.ok(goaway !== undefined, `${c.what}: GOAWAY received, then the connection closed (frame types ${frames.map((f) => f.type).join(',')})`);
    const code = goaway?.payload.readUInt32BE(4);
    if (c.code !== undefined) t.equal(code, c.code, `${c.what}: GOAWAY error code ${code}`);
    else t.not(code, 0, `${c.what}: GOAWAY with an error code (${code})`);
  }

  // Half a preface, then the client hangs up: nothing to answer, nothing breaks.
  const [h2cHost, h2cPort] = splitAddress(gw.h2c);
  const half = net.connect({ host: h2cHost, port: h2cPort });
  half.on('error', () => {});
  await new Promise<void>((resolve) => half.once('connect', () => resolve()));
  half.end(PREFACE.subarray(0, 10));
  await new Promise<void>((resolve) => half.once('close', () => resolve()));

  // The gateway is still up, the steady stream is untouched, new clients are served.
  t.equal(gatewayExited, false, 'gateway process has not exited');
  t.doesNotThrow(() => process.kill(gw.pid, 0), 'gateway process alive');
  const healthz = await fetch(`http://${gw.admin}/healthz`);
  t.equal(healthz.status, 200, '/healthz answers 200');
  t.equal(echo.active >= 1, true, 'the steady stream is still open at the function');
  const again = await steady.unary(GOOD);
  t.equal(again.status, 0, 'the steady connection serves a new call');
  await goodCallWorks(t, 'after the broken clients');
  const r = await held.cancel();
  t.equal(r.status, 1, 'the steady stream ended only when its client cancelled');
  t.equal(r.replyCount, 1);
  const errors = gw.logLines().filter((l) => l['level'] === 'error');
  t.same(errors, [], 'no error logged by the gateway');
});

// --- draining ---------------------------------------------------------------------------------

t.test('draining: Watch sees NOT_SERVING and ends; Check answers NOT_SERVING', async (t) => {
  const dgw = await startGateway([...GATEWAY_ARGS, '--drain-timeout', '20s']);
  t.teardown(() => dgw.stop());

  // A long stream keeps the drain going while the health service is asked.
  const long = echoClient(dgw.h2c);
  t.teardown(() => long.close());
  const held = await holdStream(long, GOOD, 'long stream open');

  // Watch on a connection opened before the drain.
  const watched: Buffer[] = [];
  let watchStream: http2.ClientHttp2Stream | undefined;
  const watch = rawGrpcCall(dgw.h2c, { ':path': HEALTH_WATCH }, [grpcFrame(healthRequest(''))], {
    timeoutMs: 15_000,
    onStream: (s) => {
      watchStream = s;
      s.on('data', (chunk: Buffer) => watched.push(chunk));
    },
  });
  await waitFor(() => Buffer.concat(watched).length >= 7, 5000, 'first Watch message');
  t.same(parseGrpcFrames(Buffer.concat(watched)), [SERVING], 'Watch: SERVING before the drain');

  dgw.signal('SIGTERM');
  await dgw.waitForLog((l) => l['msg'] === 'draining');
  const w = await watch;
  t.same(parseGrpcFrames(w.data), [SERVING, NOT_SERVING], 'Watch: then NOT_SERVING (08 02)');
  t.ok(w.trailers['grpc-status'] !== undefined, `Watch: then it ends with a status (${String(w.trailers['grpc-status'])} ${String(w.trailers['grpc-message'])})`);
  t.equal(w.rstCode, 0, 'Watch: ended by the gateway, not reset');
  t.ok(watchStream?.closed, 'Watch stream closed');

  // Check on a new connection: the listener is still open during the drain.
  const check = await rawGrpcCall(dgw.h2c, { ':path': HEALTH_CHECK }, [grpcFrame(healthRequest(''))]);
  t.equal(check.headers[':status'], 200, 'Check during the drain: HTTP 200');
  t.same(parseGrpcFrames(check.data), [NOT_SERVING], `Check during the drain: NOT_SERVING (got grpc-status ${String(check.headers['grpc-status'] ?? check.trailers['grpc-status'])} "${decodeGrpcMessage(header(check, 'grpc-message'))}")`);
  t.equal(check.trailers['grpc-status'], '0', 'Check during the drain: OK status');
  const ready = await fetch(`http://${dgw.admin}/readyz`);
  t.equal(ready.status, 503, '/readyz says not ready meanwhile');

  t.equal(held.replies, 1);
  t.equal((await held.cancel()).status, 1);
  t.same(await dgw.exited, { code: 0, signal: null }, 'the drain ends once the long stream did: exit 0');
});
