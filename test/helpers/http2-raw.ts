// Protocol-level helpers: one raw HTTP/2 request with node:http2 (no gRPC library in the way),
// gRPC length-prefixed framing and grpc-message decoding, and a raw TCP exchange for HTTP/1.1 probes.
import http2 from 'node:http2';
import net from 'node:net';

export interface RawResponse {
  /** Response headers ({} if none came); a trailers-only response has grpc-status here. */
  headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader;
  trailers: http2.IncomingHttpHeaders;
  /** The response body as received (gRPC frames; see parseGrpcFrames). */
  data: Buffer;
  /** The stream's RST_STREAM code (0 = NO_ERROR, also for a normal end). */
  rstCode: number;
  /** GOAWAY received on the connection before the stream closed. */
  goaway?: { errorCode: number; lastStreamID: number };
  /** Stream or session error message, if any. */
  error?: string;
}

export interface RawCallOpts {
  /** TLS (ALPN h2) trusting `ca`; `servername` for SNI (default: the authority's host). */
  tls?: { ca: Buffer; servername?: string };
  /** Rejects after this (default 10 s). */
  timeoutMs?: number;
  /** Half-close after the frames (default true); false leaves that to onStream. */
  halfClose?: boolean;
  /** The request stream, once opened: write more, end() or close(code) (RST_STREAM) it. */
  onStream?: (stream: http2.ClientHttp2Stream) => void;
}

/** The 5-byte gRPC message prefix (compressed flag, big-endian length) followed by `payload`. */
export function grpcFrame(payload: Buffer, compressed = false): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressed ? 1 : 0;
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

/** Splits a body into gRPC message payloads; throws on a truncated frame. */
export function parseGrpcFrames(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    if (at + 5 > data.length) throw new Error(`truncated gRPC prefix at byte ${at}`);
    const len = data.readUInt32BE(at + 1);
    if (at + 5 + len > data.length) throw new Error(`truncated gRPC message at byte ${at}: ${len} bytes announced`);
    out.push(data.subarray(at + 5, at + 5 + len));
    at += 5 + len;
  }
  return out;
}

/** grpc-message as the gRPC spec encodes it: %XX are UTF-8 bytes ('' for a missing header). */
export function decodeGrpcMessage(raw: string | string[] | undefined): string {
  if (typeof raw !== 'string') return '';
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3))) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(raw.charCodeAt(i));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * One HTTP/2 request on a new connection to `authority` (host:port). `headers` need at least
 * `:path`; `:method` POST, `content-type: application/grpc` and `te: trailers` are defaults.
 * Resolves when the stream closes, whatever happened (reset, GOAWAY, error).
 */
export function rawGrpcCall(authority: string, headers: http2.OutgoingHttpHeaders, bodyFrames: Buffer[] = [], opts: RawCallOpts = {}): Promise<RawResponse> {
  const tls = opts.tls;
  const session = http2.connect(`${tls ? 'https' : 'http'}://${authority}`, tls ? { ca: tls.ca, ...(tls.servername ? { servername: tls.servername } : {}) } : {});
  const result: RawResponse = { headers: {}, trailers: {}, data: Buffer.alloc(0), rstCode: 0 };
  const chunks: Buffer[] = [];
  session.on('goaway', (errorCode, lastStreamID) => {
    result.goaway = { errorCode, lastStreamID };
  });
  session.on('error', (err) => {
    result.error ??= err.message;
  });
  return new Promise<RawResponse>((resolve, reject) => {
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`rawGrpcCall ${authority}: no end within ${opts.timeoutMs ?? 10_000} ms (headers ${JSON.stringify(result.headers)}, ${Buffer.concat(chunks).length} bytes)`));
    }, opts.timeoutMs ?? 10_000);
    const req = session.request(
      { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers', ...headers },
      { endStream: bodyFrames.length === 0 && opts.halfClose !== false },
    );
    req.on('response', (h) => {
      result.headers = h;
    });
    req.on('trailers', (t) => {
      result.trailers = t;
    });
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('error', (err) => {
      result.error ??= err.message;
    });
    req.on('close', () => {
      clearTimeout(timer);
      result.rstCode = req.rstCode ?? 0;
      result.data = Buffer.concat(chunks);
      // Let a GOAWAY that came with the close be seen, then close the connection.
      setImmediate(() => {
        session.close();
        resolve(result);
      });
    });
    for (const frame of bodyFrames) req.write(frame);
    if (bodyFrames.length > 0 && opts.halfClose !== false) req.end();
    opts.onStream?.(req);
  });
}

/**
 * Sends `text` over a plain TCP connection and returns everything the server answers until it
 * closes the connection. Rejects (with what came so far) if it is still open after `timeoutMs`.
 */
export function sendHttp1(host: string, port: number, text: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`sendHttp1 ${host}:${port}: connection still open after ${timeoutMs} ms; received ${JSON.stringify(Buffer.concat(chunks).toString('latin1'))}`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(text));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => {}); // a reset still ends with 'close'
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}
