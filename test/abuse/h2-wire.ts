// A raw HTTP/2 client for abuse tests: it writes frames exactly as told (no flow control, no
// stream limits, no HPACK state), so it can do what well-behaved libraries refuse to do, and it
// records what the server answers (SETTINGS, GOAWAY, RST_STREAM, PING ACKs, response HEADERS).
import net from 'node:net';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

/** One HTTP/2 frame: 9-byte header and payload. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

export const settingsFrame = (): Buffer => frame(FrameType.SETTINGS, 0, 0);
export const settingsAck = (): Buffer => frame(FrameType.SETTINGS, Flag.ACK, 0);
export const pingFrame = (n: number): Buffer => {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(n >>> 0, 4);
  return frame(FrameType.PING, 0, 0, payload);
};
export const rstFrame = (streamId: number, code: number): Buffer => {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code, 0);
  return frame(FrameType.RST_STREAM, 0, streamId, payload);
};
export const windowUpdate = (streamId: number, increment: number): Buffer => {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment, 0);
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
};

/** HPACK integer with an N-bit prefix (RFC 7541 5.1); `first` holds the bits above the prefix. */
function hpackInt(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A header block of literal fields without indexing and without Huffman: no HPACK state needed. */
export function headerBlock(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of headers) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(Buffer.from([0x00, ...hpackInt(n.length, 7, 0)]), n, Buffer.from(hpackInt(v.length, 7, 0)), v);
  }
  return Buffer.concat(parts);
}

/** HEADERS (END_HEADERS, optionally END_STREAM) for one request. */
export function headersFrame(streamId: number, headers: ReadonlyArray<readonly [string, string]>, endStream = false): Buffer {
  return frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), streamId, headerBlock(headers));
}

/** The pseudo-headers and gRPC headers of a POST to `path` on `authority`, then `extra`. */
export function grpcRequestHeaders(authority: string, path: string, extra: Record<string, string>): Array<[string, string]> {
  return [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', authority],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ...Object.entries(extra),
  ];
}

export interface ReceivedFrame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/**
 * The whole HTTP/2 frames at the start of `data` (no preface in it), and the octets they take:
 * a cut-off last frame is left for the next read.
 */
export function parseFrames(data: Buffer): { frames: ReceivedFrame[]; used: number } {
  const frames: ReceivedFrame[] = [];
  let at = 0;
  while (at + 9 <= data.length) {
    const length = data.readUIntBE(at, 3);
    if (at + 9 + length > data.length) break;
    frames.push({ type: data[at + 3] as number, flags: data[at + 4] as number, streamId: data.readUInt32BE(at + 5) & 0x7fffffff, payload: data.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return { frames, used: at };
}

export interface RawH2Options {
  /** Bind the client side to this local address (e.g. 127.0.0.2, a "different client"). */
  localAddress?: string;
  /** Send the preface and an empty SETTINGS at connect (default true). */
  preface?: boolean;
  /** Keep every frame received (default false: counts and the interesting ones only). */
  keepFrames?: boolean;
  /** Stop reading from the socket (a client that never reads; the server's writes back up). */
  paused?: boolean;
}

/** What the server did on one raw connection. */
export class RawH2 {
  readonly socket: net.Socket;
  readonly frames: ReceivedFrame[] = [];
  /** Count of frames received, by type. */
  readonly counts = new Map<number, number>();
  /** GOAWAYs received: error code, last stream id and debug data. */
  readonly goaways: Array<{ errorCode: number; lastStreamId: number; debug: string }> = [];
  /** RST_STREAM codes received, by stream id. */
  readonly resets = new Map<number, number>();
  /** Stream ids that got response HEADERS. */
  readonly responded = new Set<number>();
  bytesReceived = 0;
  closed = false;
  readonly closedPromise: Promise<void>;
  /** Resolves once the server's SETTINGS came (and was acknowledged). */
  readonly settled: Promise<void>;
  readonly #keep: boolean;
  #buffer: Buffer = Buffer.alloc(0);
  #onSettings: () => void = () => {};

  constructor(socket: net.Socket, keepFrames: boolean) {
    this.socket = socket;
    this.#keep = keepFrames;
    this.settled = new Promise((resolve) => {
      this.#onSettings = resolve;
    });
    socket.on('error', () => {}); // a reset still ends in 'close'
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.closedPromise = new Promise((resolve) => {
      socket.once('close', () => {
        this.closed = true;
        resolve();
      });
    });
  }

  count(type: number): number {
    return this.counts.get(type) ?? 0;
  }

  /** Writes and resolves when the bytes were handed to the kernel (false: the socket is gone). */
  write(bytes: Buffer): Promise<boolean> {
    if (this.socket.destroyed || !this.socket.writable) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.socket.write(bytes, (err) => resolve(err == null));
    });
  }

  /** Resolves once the server closed the connection, or rejects after `timeoutMs`. */
  async waitClosed(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closedPromise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`raw connection still open after ${timeoutMs} ms (GOAWAYs ${JSON.stringify(this.goaways)})`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  destroy(): void {
    this.socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const buf = this.#buffer;
    const { frames, used } = parseFrames(buf);
    for (const f of frames) {
      this.counts.set(f.type, (this.counts.get(f.type) ?? 0) + 1);
      if (this.#keep) this.frames.push(f);
      if (f.type === FrameType.GOAWAY && f.payload.length >= 8) {
        this.goaways.push({
          lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff,
          errorCode: f.payload.readUInt32BE(4),
          debug: f.payload.subarray(8).toString('latin1'),
        });
      } else if (f.type === FrameType.RST_STREAM && f.payload.length === 4) {
        this.resets.set(f.streamId, f.payload.readUInt32BE(0));
      } else if (f.type === FrameType.HEADERS) {
        this.responded.add(f.streamId);
      } else if (f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0 && !this.socket.destroyed) {
        this.socket.write(settingsAck());
        this.#onSettings();
      }
    }
    this.#buffer = used === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(used));
  }
}

export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/** Opens a raw TCP connection to an h2c listener and (by default) sends the preface and SETTINGS. */
export async function connectRaw(address: string, opts: RawH2Options = {}): Promise<RawH2> {
  const { host, port } = splitAddress(address);
  const socket = net.connect({ host, port, ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }) });
  socket.setNoDelay(true);
  const conn = new RawH2(socket, opts.keepFrames ?? false);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  if (opts.preface !== false) {
    await conn.write(Buffer.concat([PREFACE, settingsFrame()]));
    // The server's SETTINGS is acknowledged before the caller writes: an ACK in the middle of
    // a header block (between HEADERS and CONTINUATION) would be a protocol error of ours.
    await Promise.race([conn.settled, conn.closedPromise]);
  }
  if (opts.paused) socket.pause();
  return conn;
}
