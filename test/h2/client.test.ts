// lib/h2's client side against an independent server, node:http2 (nghttp2): requests with
// bodies both ways and trailers, the first request in the same write as the preface, a server
// reset mapped to the stream's close code, a server GOAWAY (streams below its last stream id
// finish, those above end REFUSED_STREAM), and flow control end to end: a consumer that stops
// consuming stops the server at the windows, and resumes it.
import t, { type Test } from 'tap';
import http2 from 'node:http2';
import net from 'node:net';
import { ClientConnection } from '../../lib/h2/client-connection.ts';
import { CONNECTION_LOST, type ConnectionHooks } from '../../lib/h2/connection.ts';
import { ErrorCode, FrameType } from '../../lib/h2/constants.ts';
import { DEFAULT_LIMITS, newCounters } from '../../lib/h2/limits.ts';
import type { H2Stream } from '../../lib/h2/stream.ts';
import { parseFrames, PREFACE } from '../abuse/h2-wire.ts';
import { closeServer } from '../helpers/backend.ts';
import { waitFor } from '../helpers/wait.ts';
import { collector } from './support/collector.ts';

const hooks = (): ConnectionHooks & { goaways: number[] } => {
  const goaways: number[] = [];
  return {
    goaways,
    onStream() {},
    onGoaway(last) {
      goaways.push(last);
    },
    onClose() {},
    onInternalError(_w, err) {
      throw err;
    },
    onStreamCountChanged() {},
  };
};

const req = (path: string): string[] => [':method', 'POST', ':scheme', 'http', ':path', path, ':authority', 'test', 'content-type', 'application/grpc', 'te', 'trailers'];

async function startNodeServer(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void) {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    onStream(stream, headers);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, sessions, port: (server.address() as net.AddressInfo).port, close: () => closeServer(server, sessions) };
}

function connect(port: number, h = hooks()): { conn: ClientConnection; h: ReturnType<typeof hooks>; socket: net.Socket } {
  const socket = net.connect(port, '127.0.0.1');
  const conn = new ClientConnection(socket, DEFAULT_LIMITS, newCounters(), h);
  return { conn, h, socket };
}

t.test('requests with bodies both ways and trailers, against node:http2', async (t) => {
  const srv = await startNodeServer((stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-path': String(headers[':path']) }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-received': String(Buffer.concat(chunks).length) }));
      stream.end(Buffer.concat([Buffer.from('echo:'), Buffer.concat(chunks)]));
    });
  });
  t.teardown(srv.close);
  const { conn, socket } = connect(srv.port);
  t.teardown(() => socket.destroy());
  // The first request goes out before the socket has even connected: one write with the preface.
  const calls = [0, 1, 2].map((i) => {
    const c = collector();
    const stream = conn.request(req(`/svc/M${i}`), false, c.handler) as H2Stream;
    stream.writeData(Buffer.from(`body-${i}`));
    stream.writeData(Buffer.alloc(100_000, i));
    stream.end();
    return c.done;
  });
  const results = await Promise.all(calls);
  results.forEach((r, i) => {
    t.equal(r.code, null, `call ${i} ended cleanly`);
    t.same(r.headers?.slice(0, 2), [':status', '200'], `call ${i}: 200`);
    t.equal(r.headers?.[r.headers.indexOf('x-path') + 1], `/svc/M${i}`, `call ${i}: the server saw its path`);
    t.same(r.trailers, ['grpc-status', '0', 'x-received', String(100_000 + 6)], `call ${i}: trailers`);
    t.equal(Buffer.concat(r.body).length, 5 + 100_006, `call ${i}: the whole body came back`);
  });
});

t.test('a server reset ends the stream with its code; the connection serves the next request', async (t) => {
  const srv = await startNodeServer((stream, headers) => {
    if (headers[':path'] === '/reset') stream.close(http2.constants.NGHTTP2_CANCEL);
    else {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    }
  });
  t.teardown(srv.close);
  const { conn, socket } = connect(srv.port);
  t.teardown(() => socket.destroy());
  const reset = collector();
  conn.request(req('/reset'), true, reset.handler);
  t.equal((await reset.done).code, ErrorCode.CANCEL, 'closed with CANCEL');
  const ok = collector();
  conn.request(req('/ok'), true, ok.handler);
  const r = await ok.done;
  t.equal(r.code, null);
  t.equal(Buffer.concat(r.body).toString(), 'ok');
});

t.test('a server GOAWAY: streams up to its last stream id finish, those above end REFUSED_STREAM', async (t) => {
  const held: http2.ServerHttp2Stream[] = [];
  const srv = await startNodeServer((stream) => {
    held.push(stream);
  });
  t.teardown(srv.close);
  const { conn, h, socket } = connect(srv.port);
  t.teardown(() => socket.destroy());
  const first = collector();
  conn.request(req('/a'), true, first.handler);
  await waitFor(() => held.length === 1, 5000, 'the first request reached the server');
  const [session] = [...srv.sessions];
  // GOAWAY naming stream 1 as the last, while stream 3 is on its way.
  const second = collector();
  conn.request(req('/b'), true, second.handler);
  session?.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
  const refused = await second.done;
  t.equal(refused.code, ErrorCode.REFUSED_STREAM, 'the stream above the last stream id ended REFUSED_STREAM (safe to retry)');
  t.same(h.goaways, [1], 'the GOAWAY was reported');
  t.equal(conn.available, false, 'no new request goes out on this connection');
  held[0]?.respond({ ':status': 200 });
  held[0]?.end('done');
  const r = await first.done;
  t.equal(r.code, null, 'the stream below the last stream id ran to its end');
  t.equal(Buffer.concat(r.body).toString(), 'done');
});

t.test('flow control end to end: an unconsumed response stops the server at the windows, consuming resumes it', async (t) => {
  const total = 8 << 20;
  let written = 0;
  const srv = await startNodeServer((stream) => {
    stream.respond({ ':status': 200 });
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = (): void => {
      while (written < total) {
        written += chunk.length;
        if (!stream.write(chunk)) return void stream.once('drain', pump);
      }
      stream.end();
    };
    pump();
  });
  t.teardown(srv.close);
  const { conn, socket } = connect(srv.port);
  t.teardown(() => socket.destroy());
  const c = collector(false);
  const stream = conn.request(req('/big'), true, c.handler) as H2Stream;
  // The server has far more to send: it fills the stream window (1 MiB), which nothing
  // consumed has reopened, so the client grants no more and the server may send no more.
  const received = (): number => c.outcome.body.reduce((n, b) => n + b.length, 0);
  await waitFor(() => received() === DEFAULT_LIMITS.streamWindow, 10_000, 'the stream window filled');
  const seen = received();
  t.equal(stream.recvWindow, 0, 'the window is shut: no WINDOW_UPDATE went out for what nobody consumed');
  t.ok(written < total, 'the server is held back');
  // Consume what came and everything after it: the rest flows.
  stream.handler = { ...c.handler, onData: (s, data) => (c.outcome.body.push(Buffer.from(data)), s.consume(data.length)) };
  stream.consume(seen);
  const r = await c.done;
  t.equal(r.code, null, 'the stream ended cleanly');
  t.equal(r.body.reduce((n, b) => n + b.length, 0), total, 'every octet arrived');
});

t.test('the connection going away ends open streams with CONNECTION_LOST', async (t) => {
  const srv = await startNodeServer(() => {});
  t.teardown(srv.close);
  const { conn, socket } = connect(srv.port);
  t.teardown(() => socket.destroy());
  const c = collector();
  conn.request(req('/x'), false, c.handler);
  await waitFor(() => srv.sessions.size === 1, 5000, 'connected');
  for (const s of srv.sessions) s.destroy();
  t.equal((await c.done).code, CONNECTION_LOST);
});

/** A bare TCP peer that answers the preface with an empty SETTINGS and never closes its side. */
async function barePeer(t: Test) {
  const peer = { socket: undefined as net.Socket | undefined, received: [] as Buffer[], error: undefined as Error | undefined };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    peer.socket = s;
    s.on('data', (c: Buffer) => peer.received.push(c));
    s.on('error', (err) => (peer.error = err));
    s.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    peer.socket?.destroy();
    server.close();
  });
  const { conn, socket } = connect((server.address() as net.AddressInfo).port);
  t.teardown(() => socket.destroy());
  const bytes = () => Buffer.concat(peer.received);
  /** Resolves at the peer's 'end', with whether our socket was closed by then (no half-close waiting for the peer). */
  const end = () => new Promise<boolean>((resolve) => (peer.socket as net.Socket).once('end', () => resolve(socket.destroyed)));
  return { peer, conn, bytes, end };
}

/** The frames in `bytes` after the preface. */
const framesAfterPreface = (bytes: Buffer) => parseFrames(bytes.subarray(PREFACE.length)).frames;
const frameTypes = (bytes: Buffer): number[] => framesAfterPreface(bytes).map((f) => f.type);

t.test('a graceful close of an idle connection sends its FIN at once: no GOAWAY, no waiting for the peer', async (t) => {
  const { peer, conn, bytes, end } = await barePeer(t);
  await waitFor(() => bytes().length >= PREFACE.length + 9, 5000, 'the preface and SETTINGS at the peer');
  const sawEnd = end();
  conn.close();
  t.equal(await sawEnd, true, 'the socket was closed when the FIN arrived');
  const types = frameTypes(bytes());
  t.equal(types.at(-1), FrameType.SETTINGS, 'the last frame is the ACK of the peer\'s SETTINGS');
  t.notOk(types.includes(FrameType.GOAWAY), 'no GOAWAY before the FIN');
  t.equal(peer.error, undefined, 'a clean end, not a reset');
});

t.test('a graceful close with a stream open sends GOAWAY(NO_ERROR), and the FIN once the stream is answered', async (t) => {
  const { peer, conn, bytes, end } = await barePeer(t);
  const c = collector();
  conn.request(req('/svc/Open'), true, c.handler);
  await waitFor(() => frameTypes(bytes()).includes(FrameType.HEADERS), 5000, 'the request at the peer');
  conn.close();
  await waitFor(() => frameTypes(bytes()).at(-1) === FrameType.GOAWAY, 5000, 'the GOAWAY at the peer');
  const goaway = framesAfterPreface(bytes()).at(-1)?.payload as Buffer;
  t.same([goaway.readUInt32BE(0), goaway.readUInt32BE(4)], [0, ErrorCode.NO_ERROR], 'GOAWAY(last stream 0, NO_ERROR)');
  t.equal(conn.closed, false, 'the connection waits for the open stream');
  const sawEnd = end();
  // HEADERS(END_STREAM | END_HEADERS) on stream 1: ":status: 200" from the static table.
  (peer.socket as net.Socket).write(Buffer.from([0, 0, 1, FrameType.HEADERS, 0x5, 0, 0, 0, 1, 0x88]));
  t.equal((await c.done).code, null, 'the open stream was answered');
  t.equal(await sawEnd, true, 'then the FIN, the socket already closed');
  t.equal(peer.error, undefined, 'a clean end, not a reset');
});
