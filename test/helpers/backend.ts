// Test backends: a real grpc-js Echo server whose behaviour request metadata steers, plus
// raw TCP servers that misbehave (garbage bytes, silence, dropped connections).
//
// Steering metadata (see test/protos/echo.proto for the methods):
//   x-echo-status: N, x-echo-message: text  end the call with that status (streams: after the replies)
//   x-echo-trailers-only: 1                 ... at once, before any reply (a trailers-only response)
//   x-echo-sleep-ms: N                      wait before replying (server-stream/bidi: before each reply)
//   x-echo-hold: 1                          server-stream: stay open after the replies until cancelled
//   x-echo-echo-payload: 1                  unary/bidi: send the request payload back
// Every response has initial metadata x-initial / x-initial-bin and trailers x-trailer /
// x-trailer-bin (a trailers-only response has only the trailers).
import * as grpc from '@grpc/grpc-js';
import { on } from 'node:events';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Writable } from 'node:stream';
import { echoService, patternBytes } from './echo-proto.ts';
import type { EchoReply, EchoRequest } from './echo-proto.ts';
import { waitFor } from './wait.ts';

export const INITIAL_BIN = Buffer.from([0, 1, 2, 255]);
export const TRAILER_BIN = Buffer.from([255, 0, 1]);

export interface EchoBackend {
  readonly name: string;
  readonly port: number;
  /** `127.0.0.1:PORT` (or the host it was bound to). */
  readonly address: string;
  /** Calls started. */
  readonly calls: number;
  /** Calls that ended before the handler finished them (client cancel, deadline, kill). */
  readonly cancelled: number;
  /** Calls currently open. */
  readonly active: number;
  /** Calls whose reply waits for the client to read ('drain'): the backend is holding back. */
  readonly blocked: number;
  /** Client-stream messages whose payload is not the test pattern (patternBytes) of its length. */
  readonly unexpectedPayloads: number;
  /** Connections that carried a call, one entry each (`call.getPeer()` and the accept number). */
  readonly peers: Set<string>;
  /** Every call started, in order. */
  readonly callLog: CallRecord[];
  /** Resolves once `pred()` holds (polled); rejects after `timeoutMs` (default 5000). */
  waitFor(pred: () => boolean, timeoutMs?: number): Promise<void>;
  /** Graceful: no new calls, waits for open ones (forced after `timeoutMs`, default 10 s). */
  stop(timeoutMs?: number): Promise<void>;
  /** Cuts every connection at once, mid-stream. */
  kill(): void;
}

export interface CallRecord {
  /** `Unary`, `ClientStream`, `ServerStream` or `Bidi`. */
  method: string;
  peer: string;
  /** As in EchoReply.metadata (grpc-js hides grpc-timeout, te, content-type, grpc-encoding). */
  metadata: string;
  /** Time left until the call's deadline when it started (from grpc-timeout); null without one. */
  deadlineMs: number | null;
}

interface Steering {
  status: { code: number; details: string } | undefined;
  trailersOnly: boolean;
  sleepMs: number;
  hold: boolean;
  echoPayload: boolean;
}

/** Per-call bookkeeping: `signal` aborts when the call ends without the handler finishing it. */
/** What track() needs of a server call (any kind). */
interface ServerCall {
  readonly metadata: grpc.Metadata;
  getPeer(): string;
  getDeadline(): grpc.Deadline;
  once(event: 'cancelled', listener: () => void): unknown;
}

interface CallState {
  finished: boolean;
  readonly signal: AbortSignal;
}

const EMPTY = Buffer.alloc(0);

function text(md: grpc.Metadata, key: string): string | undefined {
  const value = md.get(key)[0];
  return typeof value === 'string' ? value : undefined;
}

function steering(md: grpc.Metadata): Steering {
  const status = text(md, 'x-echo-status');
  return {
    status: status === undefined ? undefined : { code: Number(status), details: text(md, 'x-echo-message') ?? '' },
    trailersOnly: text(md, 'x-echo-trailers-only') === '1',
    sleepMs: Number(text(md, 'x-echo-sleep-ms') ?? 0),
    hold: text(md, 'x-echo-hold') === '1',
    echoPayload: text(md, 'x-echo-echo-payload') === '1',
  };
}

/** Sorted "key: value" lines; binary values in base64. */
export function describeMetadata(md: grpc.Metadata): string {
  const lines: string[] = [];
  for (const [key, values] of Object.entries(md.toJSON())) {
    for (const v of values) lines.push(`${key}: ${typeof v === 'string' ? v : v.toString('base64')}`);
  }
  return lines.sort().join('\n');
}

function initialMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-initial', 'hello');
  md.set('x-initial-bin', INITIAL_BIN);
  return md;
}

function trailingMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-trailer', 'bye');
  md.set('x-trailer-bin', TRAILER_BIN);
  return md;
}

/** The steered error status (with trailers), or undefined for OK. */
function errorStatus(s: Steering): grpc.StatusObject | undefined {
  if (s.status === undefined || s.status.code === 0) return undefined;
  return { code: s.status.code, details: s.status.details, metadata: trailingMetadata() };
}

/** Waits `ms`; returns false if the call ended meanwhile. */
function sleep(ms: number, c: CallState): Promise<boolean> {
  if (c.signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      c.signal.removeEventListener('abort', done);
      resolve(!c.signal.aborted);
    };
    const timer = setTimeout(done, ms);
    c.signal.addEventListener('abort', done, { once: true });
  });
}

let patternCache = patternBytes(0);

/** Whether `payload` is patternBytes(payload.length). */
function isPattern(payload: Uint8Array): boolean {
  if (patternCache.length < payload.length) patternCache = patternBytes(payload.length);
  return patternCache.subarray(0, payload.length).equals(payload);
}

/** Writes with backpressure (counted in `stats.blocked` while waiting); returns false if the call ended meanwhile. */
function write(call: Writable, reply: EchoReply, c: CallState, stats: { blocked: number }): Promise<boolean> {
  if (c.signal.aborted) return Promise.resolve(false);
  if (call.write(reply)) return Promise.resolve(true);
  stats.blocked++;
  return new Promise((resolve) => {
    const done = (): void => {
      stats.blocked--;
      call.off('drain', done);
      c.signal.removeEventListener('abort', done);
      resolve(!c.signal.aborted);
    };
    call.once('drain', done);
    c.signal.addEventListener('abort', done, { once: true });
  });
}

/** The status of an x-echo-trailers-only call (OK unless x-echo-status says otherwise). */
function immediateStatus(s: Steering): grpc.StatusObject {
  return { code: s.status?.code ?? 0, details: s.status?.details ?? '', metadata: trailingMetadata() };
}

type ServerStream = grpc.ServerWritableStream<EchoRequest, EchoReply> | grpc.ServerDuplexStream<EchoRequest, EchoReply>;

/** Ends a streaming call with `status` (with its trailers), or OK and the trailers. */
function endStream(call: ServerStream, status: grpc.StatusObject | undefined, c: CallState): void {
  c.finished = true;
  if (status === undefined) call.end(trailingMetadata());
  else call.emit('error', status); // grpc-js turns this into the call's status
}

export async function startEchoBackend(opts: { name: string; host?: string; port?: number }): Promise<EchoBackend> {
  const { name } = opts;
  const host = opts.host ?? '127.0.0.1';
  const stats = { calls: 0, cancelled: 0, active: 0, blocked: 0, unexpectedPayloads: 0 };
  const peers = new Set<string>();
  /** Remote address of each open connection -> its accept number (see the listener below). */
  const liveConnections = new Map<string, number>();
  const callLog: CallRecord[] = [];

  /** Counts the call; returns its state and the reply template. */
  const track = (method: string, call: ServerCall): { c: CallState; s: Steering; reply: (fields: Partial<EchoReply>) => EchoReply } => {
    stats.calls++;
    stats.active++;
    const peer = call.getPeer();
    peers.add(`${peer}#${liveConnections.get(peer) ?? 0}`);
    const abort = new AbortController();
    const c: CallState = { finished: false, signal: abort.signal };
    // grpc-js emits 'cancelled' when every call ends, also after a normal status.
    call.once('cancelled', () => {
      stats.active--;
      if (!c.finished) stats.cancelled++;
      abort.abort();
    });
    const metadata = describeMetadata(call.metadata);
    const deadline = call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    callLog.push({ method, peer, metadata, deadlineMs: Number.isFinite(at) ? at - Date.now() : null });
    const base = { backend: name, peer, metadata, received_bytes: 0, received_messages: 0, payload: EMPTY };
    return { c, s: steering(call.metadata), reply: (fields) => ({ ...base, ...fields }) };
  };

  const implementation: grpc.UntypedServiceImplementation = {
    Unary: (async (call, callback) => {
      const { c, s, reply } = track('Unary', call);
      const fail = (status: grpc.StatusObject): void => {
        c.finished = true;
        callback(status);
      };
      if (s.trailersOnly) return fail(immediateStatus(s));
      call.sendMetadata(initialMetadata());
      if (!(await sleep(s.sleepMs, c))) return;
      const status = errorStatus(s);
      if (status !== undefined) return fail(status);
      c.finished = true;
      const size = call.request.payload?.length ?? 0;
      const payload = s.echoPayload ? Buffer.from(call.request.payload ?? EMPTY) : EMPTY;
      callback(null, reply({ received_bytes: size, received_messages: 1, payload }), trailingMetadata());
    }) satisfies grpc.handleUnaryCall<EchoRequest, EchoReply>,

    ClientStream: (async (call, callback) => {
      const { c, s, reply } = track('ClientStream', call);
      if (s.trailersOnly) {
        c.finished = true;
        return callback(immediateStatus(s));
      }
      call.sendMetadata(initialMetadata());
      let bytes = 0;
      let messages = 0;
      try {
        for await (const m of call as AsyncIterable<EchoRequest>) {
          bytes += m.payload?.length ?? 0;
          messages++;
          // Test clients send the pattern: anything else was changed on the way.
          if (m.payload !== undefined && !isPattern(m.payload)) stats.unexpectedPayloads++;
        }
      } catch {
        return; // destroyed: the call was cancelled
      }
      if (!(await sleep(s.sleepMs, c))) return;
      c.finished = true;
      const status = errorStatus(s);
      if (status !== undefined) callback(status);
      else callback(null, reply({ received_bytes: bytes, received_messages: messages }), trailingMetadata());
    }) satisfies grpc.handleClientStreamingCall<EchoRequest, EchoReply>,

    ServerStream: (async (call) => {
      const { c, s, reply } = track('ServerStream', call);
      if (s.trailersOnly) return endStream(call, immediateStatus(s), c);
      call.sendMetadata(initialMetadata());
      const count = call.request.count || 1;
      // One payload buffer for the whole call: each reply is serialized from it.
      const payload = patternBytes(Math.max(0, call.request.reply_size ?? 0));
      for (let i = 0; i < count; i++) {
        if (!(await sleep(s.sleepMs, c))) return;
        if (!(await write(call, reply({ payload, received_messages: i + 1 }), c, stats))) return;
      }
      if (s.hold) {
        if (!c.signal.aborted) await new Promise((resolve) => c.signal.addEventListener('abort', resolve, { once: true }));
        return;
      }
      endStream(call, errorStatus(s), c);
    }) satisfies grpc.handleServerStreamingCall<EchoRequest, EchoReply>,

    Bidi: (async (call) => {
      const { c, s, reply } = track('Bidi', call);
      if (s.trailersOnly) return endStream(call, immediateStatus(s), c);
      call.sendMetadata(initialMetadata());
      let messages = 0;
      try {
        // Events, not the stream's own async iterator: on Node 26 a for-await loop over a bidi
        // call does not end when the client half-closes (grpc-js 1.14.7), and the call hangs.
        for await (const [m] of on(call, 'data', { close: ['end'] }) as AsyncIterable<[EchoRequest]>) {
          messages++;
          if (!(await sleep(s.sleepMs, c))) return;
          const payload = s.echoPayload ? Buffer.from(m.payload ?? EMPTY) : EMPTY;
          if (!(await write(call, reply({ received_bytes: m.payload?.length ?? 0, received_messages: messages, payload }), c, stats))) return;
        }
      } catch {
        return;
      }
      if (c.signal.aborted) return;
      endStream(call, errorStatus(s), c);
    }) satisfies grpc.handleBidiStreamingCall<EchoRequest, EchoReply>,
  };

  const server = new grpc.Server({ 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
  server.addService(echoService, implementation);
  const hostPort = (h: string, p: number): string => (h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`);
  // The backend accepts connections itself and hands them to grpc-js, so `peers` can tell
  // connections apart: an address alone repeats, as loopback reuses a closed port at once.
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  let accepted = 0;
  const listener = net.createServer((socket) => {
    const id = ++accepted;
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    liveConnections.set(peer, id);
    socket.once('close', () => {
      if (liveConnections.get(peer) === id) liveConnections.delete(peer);
    });
    socket.setNoDelay(true);
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen({ port: opts.port ?? 0, host }, () => resolve());
  });
  listener.on('error', () => {});
  const port = (listener.address() as net.AddressInfo).port;
  const dialHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;

  return {
    name,
    port,
    address: hostPort(dialHost, port),
    get calls() {
      return stats.calls;
    },
    get cancelled() {
      return stats.cancelled;
    },
    get unexpectedPayloads() {
      return stats.unexpectedPayloads;
    },
    get active() {
      return stats.active;
    },
    get blocked() {
      return stats.blocked;
    },
    peers,
    callLog,
    waitFor: (pred, timeoutMs) => waitFor(pred, timeoutMs, `backend ${name}`),
    stop: (timeoutMs = 10_000) =>
      new Promise<void>((resolve) => {
        listener.close();
        const timer = setTimeout(() => server.forceShutdown(), timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
    kill: () => {
      listener.close();
      server.forceShutdown();
    },
  };
}

export interface RawBackend {
  readonly port: number;
  readonly address: string;
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Closes the listener and every accepted socket. */
  close(): Promise<void>;
}

async function rawBackend(onConnection: (socket: net.Socket) => void): Promise<RawBackend> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    close: () => closeServer(server, sockets),
  };
}

/**
 * Closes a test server after destroying what it still holds open (sockets or HTTP/2
 * sessions): close() alone would wait for every client to hang up.
 */
export function closeServer(server: { close(callback: () => void): unknown }, open: Iterable<{ destroy(): void }>): Promise<void> {
  return new Promise<void>((resolve) => {
    for (const handle of open) handle.destroy();
    server.close(() => resolve());
  });
}

/** A port that was free on 127.0.0.1 a moment ago and has no listener now. */
export async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Reads a little of each connection, answers 4 KiB of random bytes, keeps the socket open. */
export function startGarbageBackend(): Promise<RawBackend> {
  return rawBackend((socket) => {
    socket.once('data', () => socket.write(randomBytes(4096)));
    socket.resume();
  });
}

/** Accepts connections and never writes a byte. */
export function startSilentBackend(): Promise<RawBackend> {
  return rawBackend((socket) => {
    socket.resume();
  });
}

/**
 * Accepts TCP connections and drops each at once, before a byte is written: `close` with a
 * FIN (a process that accepts and closes), `reset` with a TCP RST.
 */
export function startDropBackend(how: 'close' | 'reset'): Promise<RawBackend> {
  return rawBackend((socket) => {
    // Read (and drop) whatever comes, so the peer's FIN is seen and the socket can close.
    socket.resume();
    if (how === 'close') socket.end();
    else socket.resetAndDestroy();
  });
}
