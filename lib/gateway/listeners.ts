// The two client listeners. h2c: a TCP server that looks at the first bytes so an HTTP/1.1
// request gets a clear HTTP/1.1 answer instead of an HTTP/2 GOAWAY it cannot read. TLS: ALPN
// h2 only, certificate and key reloaded from disk when they change, without dropping connections.
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { dirname, basename } from 'node:path';
import tls from 'node:tls';
import type { ListenAddress } from '../config/types.ts';
import { ErrorCode } from '../h2/constants.ts';
import { DEFAULT_LIMITS, type H2Limits } from '../h2/limits.ts';
import { readIntoReused, SocketReads, type ReadSink } from '../h2/read-buffers.ts';
import { watchDirectory, type Closable } from '../files/watch.ts';
import type { Logger } from '../telemetry/log.ts';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** An empty SETTINGS frame: the server connection preface. */
const SETTINGS_EMPTY = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
/** A client that has not finished the preface by then is not going to. */
const PREFACE_TIMEOUT_MS = 10_000;

const HTTP1_BODY =
  'fngate: this port speaks gRPC over HTTP/2 only. Use a gRPC client (h2c with prior knowledge ' +
  'on the plaintext port, or TLS with ALPN h2).\n';
const HTTP1_RESPONSE =
  'HTTP/1.1 505 HTTP Version Not Supported\r\n' +
  'Content-Type: text/plain; charset=utf-8\r\n' +
  `Content-Length: ${Buffer.byteLength(HTTP1_BODY)}\r\n` +
  'Connection: close\r\n\r\n' +
  HTTP1_BODY;

/** HTTP/2 limits for client connections, shared by both listeners. */
export interface ClientHttp2Tuning {
  readonly h2: H2Limits;
  /** Header fields per request, pseudo-headers included; more is refused with RST_STREAM(ENHANCE_YOUR_CALM). */
  readonly maxHeaderListPairs: number;
  /**
   * TCP connections one client IP address may hold open, counted over every listener created
   * with this tuning object; 0 = unlimited. Beyond it a new connection is closed at once (h2c:
   * after SETTINGS and GOAWAY(ENHANCE_YOUR_CALM) saying why).
   */
  readonly maxConnectionsPerIp: number;
  /**
   * false: h2c sockets read as Node reads them ('data' events), as they do on a Node without
   * net's `onread` fields (read-buffers.ts); that path is tested with it. Default true.
   */
  readonly readIntoReusedBuffers?: boolean;
}

export const defaultClientTuning: ClientHttp2Tuning = {
  h2: Object.freeze({ ...DEFAULT_LIMITS, maxConcurrentStreams: 1000, streamWindow: 1 << 20, connectionWindow: 8 << 20, maxHeaderListSize: 64 * 1024, prefaceTimeoutMs: PREFACE_TIMEOUT_MS }),
  maxHeaderListPairs: 128,
  maxConnectionsPerIp: 1000,
};

/** Takes a client's socket once it speaks HTTP/2 (the gateway's accept); `reads` when it reads into reused buffers. */
export type AcceptH2 = (socket: net.Socket, reads?: SocketReads) => void;

/** Accepts TCP, checks for the HTTP/2 preface, and hands HTTP/2 connections to `accept`. */
export function listenH2c(accept: AcceptH2, tuning: ClientHttp2Tuning, address: ListenAddress): Promise<net.Server> {
  const limit = limiterFor(tuning);
  const tcp = net.createServer({ noDelay: true }, (socket) => {
    if (limit && !limit.admit(socket)) refuseH2c(socket, limit.refusal);
    else sniffPreface(socket, accept, tuning.readIntoReusedBuffers !== false);
  });
  return listen(tcp, address);
}

/** Open connections per client address, for --max-connections-per-ip. */
class ConnectionsPerIp {
  readonly max: number;
  /** What an h2c connection over the limit is sent: SETTINGS, then GOAWAY(ENHANCE_YOUR_CALM, reason). */
  readonly refusal: Buffer;
  readonly #open = new Map<string, number>();

  constructor(max: number) {
    this.max = max;
    const reason = Buffer.from(`fngate: too many connections from this address (limit ${max})`, 'latin1');
    const goaway = Buffer.alloc(9 + 8 + reason.length); // last stream 0
    goaway.writeUIntBE(8 + reason.length, 0, 3);
    goaway[3] = 0x7; // GOAWAY
    goaway.writeUInt32BE(ErrorCode.ENHANCE_YOUR_CALM, 13);
    reason.copy(goaway, 17);
    this.refusal = Buffer.concat([SETTINGS_EMPTY, goaway]);
  }

  /** Counts the socket (until it closes) if its address is under the limit; false if not. */
  admit(socket: net.Socket): boolean {
    const ip = socket.remoteAddress ?? '';
    const n = this.#open.get(ip) ?? 0;
    if (n >= this.max) return false;
    this.#open.set(ip, n + 1);
    socket.once('close', () => {
      const left = (this.#open.get(ip) ?? 1) - 1;
      if (left === 0) this.#open.delete(ip);
      else this.#open.set(ip, left);
    });
    return true;
  }
}

/** One count per tuning object, so the h2c and TLS listeners of one gateway share it. */
const limiters = new WeakMap<ClientHttp2Tuning, ConnectionsPerIp>();

function limiterFor(tuning: ClientHttp2Tuning): ConnectionsPerIp | undefined {
  if (tuning.maxConnectionsPerIp <= 0) return undefined;
  let limit = limiters.get(tuning);
  if (!limit) {
    limit = new ConnectionsPerIp(tuning.maxConnectionsPerIp);
    limiters.set(tuning, limit);
  }
  return limit;
}

/** How long a refused connection may linger for the client to read the GOAWAY and hang up. */
const REFUSED_LINGER_MS = 1000;

/**
 * Over the per-address limit: the server preface and GOAWAY(ENHANCE_YOUR_CALM, last stream 0)
 * with the reason as debug data, so a gRPC client reports why. Whatever the client sends is
 * read and dropped (closing with unread input would reset the connection and could lose the
 * GOAWAY); the socket is gone once the client hangs up, or a second later whatever it sends.
 */
function refuseH2c(socket: net.Socket, refusal: Buffer): void {
  socket.on('error', () => socket.destroy());
  setTimeout(destroySocket, REFUSED_LINGER_MS, socket).unref();
  socket.resume();
  socket.end(refusal);
}

/** An HTTP/1.x request line: those clients get a readable HTTP/1.1 answer. */
const REQUEST_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP\/1\.\d\r?$/;
/** How much of a first line to wait for before deciding it is not HTTP/1.x. */
const MAX_REQUEST_LINE = 8192;
/** GOAWAY(last stream 0, PROTOCOL_ERROR): the answer to a bad preface (RFC 9113 3.4). */
const GOAWAY_PROTOCOL_ERROR = Buffer.from([0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

function sniffPreface(socket: net.Socket, accept: AcceptH2, reuseBuffers: boolean): void {
  // The socket reads into reused buffers from its first read (read-buffers.ts), so the preface
  // check sees the bytes first and then hands them to the connection within the same read; a
  // Node without that reads as before ('data', then unshift for the connection).
  const reads = new SocketReads();
  const reused = reuseBuffers && readIntoReused(socket, reads);
  let seen: Buffer = EMPTY;
  const onError = (): void => void socket.destroy();
  socket.on('error', onError);
  // Absolute, not an idle timeout: a byte now and then must not keep open a connection that
  // never becomes HTTP/2, nor one that was answered and does not hang up.
  const deadline = setTimeout(destroySocket, PREFACE_TIMEOUT_MS, socket).unref();
  const clearDeadline = (): void => clearTimeout(deadline);
  socket.once('close', clearDeadline);
  const stopReading = (): void => {
    if (!reused) socket.removeListener('data', received);
    else {
      reads.sink = DROP;
      socket.once('close', () => reads.close());
    }
  };
  const refuse = (answer: string | Buffer): void => {
    stopReading();
    socket.end(answer);
  };
  // A chunk is valid during this call only (reused buffers): what waits for more is copied.
  const received = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, PREFACE.length);
    if (seen.compare(PREFACE, 0, n, 0, n) === 0) {
      if (n < PREFACE.length) {
        if (seen === chunk) seen = Buffer.from(chunk); // a prefix of the preface: wait for the rest
        return;
      }
      clearDeadline();
      socket.removeListener('close', clearDeadline);
      // Not removeAllListeners('error'): it deletes the key, and the socket's listener table
      // turns into a slow dictionary for the rest of the connection.
      socket.removeListener('error', onError);
      if (reused) {
        reads.sink = DROP; // until the connection takes over
        accept(socket, reads);
        reads.sink.received(seen);
      } else {
        socket.removeListener('data', received);
        socket.pause();
        socket.unshift(seen);
        accept(socket);
      }
      return;
    }
    // Not HTTP/2. An HTTP/1.x request gets an HTTP/1.1 answer; anything else the GOAWAY an
    // HTTP/2 peer expects. Printable text without a newline yet may still become a request line.
    const eol = seen.indexOf(0x0a);
    if (eol >= 0) {
      refuse(REQUEST_LINE.test(seen.toString('latin1', 0, eol)) ? HTTP1_RESPONSE : GOAWAY_PROTOCOL_ERROR);
    } else if (seen.length > MAX_REQUEST_LINE || !isPrintable(seen)) {
      refuse(GOAWAY_PROTOCOL_ERROR);
    } else if (seen === chunk) {
      seen = Buffer.from(chunk);
    }
  };
  if (reused) reads.sink = { received };
  else socket.on('data', received);
}

const EMPTY = Buffer.alloc(0);
/** Where a refused connection's reads go: nowhere. */
const DROP: ReadSink = { received() {} };

function destroySocket(socket: net.Socket): void {
  socket.destroy();
}

function isPrintable(bytes: Buffer): boolean {
  for (const b of bytes) if ((b < 0x20 || b > 0x7e) && b !== 0x0d) return false;
  return true;
}

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

export interface TlsServer {
  readonly server: tls.Server;
  /** Stops watching the certificate files. */
  readonly reloader: Closable;
}

/** Reads cert and key; throws with the file named when one cannot be read or used. */
async function readTlsFiles(files: TlsFiles): Promise<{ cert: Buffer; key: Buffer }> {
  const read = (path: string, what: string) =>
    readFile(path).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`--tls-${what} ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    });
  const [cert, key] = await Promise.all([read(files.cert, 'cert'), read(files.key, 'key')]);
  return { cert, key };
}

export async function createTlsServer(files: TlsFiles, tuning: ClientHttp2Tuning, accept: AcceptH2, log: Logger): Promise<TlsServer> {
  let current = await readTlsFiles(files);
  let server: tls.Server;
  try {
    server = tls.createServer({
      ...current,
      ALPNProtocols: ['h2'],
      // A client that has not finished its TLS handshake by then is not going to (Node's default is 120 s).
      handshakeTimeout: PREFACE_TIMEOUT_MS,
    });
  } catch (err) {
    throw new Error(`--tls-cert ${files.cert} / --tls-key ${files.key}: ${(err as Error).message}`);
  }
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    socket.setNoDelay(true);
    // A TLS client that did not negotiate h2 (e.g. HTTP/1.1 over TLS) gets a readable answer.
    if (socket.alpnProtocol !== 'h2') {
      socket.on('error', () => socket.destroy());
      socket.end(HTTP1_RESPONSE);
      return;
    }
    accept(socket);
  });
  // Over the per-address limit: closed before the handshake (no TLS to say why in).
  const limit = limiterFor(tuning);
  if (limit) {
    server.on('connection', (socket: net.Socket) => {
      if (!limit.admit(socket)) socket.destroy();
    });
  }
  // Cut-off handshakes, handshake timeouts and scanners are routine: logged at debug, and the
  // socket closed (tls.Server leaves that to this listener).
  server.on('tlsClientError', (err, socket) => {
    log.debug('TLS handshake failed', { error: err.message });
    socket.destroy();
  });

  const check = async (): Promise<(() => void) | undefined> => {
    const next = await readTlsFiles(files).catch((err: Error) => {
      log.warn('TLS certificate reload: keeping the current certificate', { error: err.message });
      return undefined;
    });
    if (!next || (next.cert.equals(current.cert) && next.key.equals(current.key))) return undefined;
    return () => {
      try {
        server.setSecureContext({ ...next, ALPNProtocols: ['h2'] } as Parameters<tls.Server['setSecureContext']>[0]);
        current = next;
        log.info('TLS certificate reloaded', { cert: files.cert });
      } catch (err) {
        // Typically cert and key caught mid-rotation (they do not match yet): the next change retries.
        log.warn('TLS certificate reload failed; keeping the current certificate', { error: (err as Error).message });
      }
    };
  };
  const dirs = [...new Set([dirname(files.cert), dirname(files.key)])];
  const names = new Set([basename(files.cert), basename(files.key)]);
  const watchers = dirs.map((dir) =>
    watchDirectory({
      dir,
      debounceMs: 200,
      pollMs: 5000,
      fsWatch: true,
      // Kubernetes Secret volumes swap a ..data symlink rather than the files themselves.
      accept: (name) => names.has(name) || name.startsWith('..'),
      check,
      log,
    }),
  );
  return { server, reloader: { close: () => watchers.forEach((w) => w.close()) } };
}

export function listen(server: net.Server, address: ListenAddress): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new Error(`cannot listen on ${address.text}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`));
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.removeListener('error', onError);
      resolve(server);
    });
  });
}

/** "host:port" of a listening server, for logs and tests that listen on port 0. */
export function boundAddress(server: net.Server): string {
  const addr = server.address();
  if (addr === null || typeof addr === 'string') return String(addr);
  return addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
}
