// One HTTP/2 stream (RFC 9113 5.1) as the layer above sees it: explicit state, its two windows,
// the DATA it has queued and not yet sent, and the handler that is told what arrives. The
// connection does the framing; a stream only keeps account.
//
// The contract with the layer above:
// - DATA arrives through handler.onData as views of what was read. The stream's receive window
//   reopens only when the layer calls consume(n) for bytes it has passed on, so a relay holds at
//   most a window's worth per stream, whatever the message size.
// - writeData() queues and returns whether the stream can take more now; when it returned false,
//   handler.onWritable is called once the queue has drained into the peer's windows.
// - Every stream ends with exactly one handler.onClose (after its last onData/onHeaders),
//   with the RST_STREAM code that ended it, or null for a clean end both ways.
import type { Http2Connection } from './connection.ts';

/** RFC 9113 5.1 states (reserved ones never occur: neither side pushes). */
export const StreamState = {
  OPEN: 0,
  HALF_CLOSED_LOCAL: 1,
  HALF_CLOSED_REMOTE: 2,
  CLOSED: 3,
} as const;
export type StreamStateValue = (typeof StreamState)[keyof typeof StreamState];

export interface StreamHandler {
  /** HEADERS after the first block: trailers (endStream true), or the response on the client side. */
  onHeaders(stream: H2Stream, fields: string[], endStream: boolean): void;
  /** A DATA frame's payload (may be empty when it only carries END_STREAM). */
  onData(stream: H2Stream, data: Buffer, endStream: boolean): void;
  /** The stream is over: `code` is the RST_STREAM code (sent or received), null if it ended cleanly. */
  onClose(stream: H2Stream, code: number | null): void;
  /** The queue drained after writeData returned false. */
  onWritable(stream: H2Stream): void;
}

/** Drops what arrives (a stream nobody took) and consumes it so the windows stay open. */
export const DISCARD: StreamHandler = {
  onHeaders() {},
  onData(stream, data) {
    stream.consume(data.length);
  },
  onClose() {},
  onWritable() {},
};

export class H2Stream {
  readonly id: number;
  readonly connection: Http2Connection;
  state: StreamStateValue = StreamState.OPEN;
  handler: StreamHandler = DISCARD;
  /** Free for the layer above (the relay keeps its call here). */
  context: unknown = undefined;
  /** How much we may still send (the peer's window for this stream). */
  sendWindow: number;
  /** How much the peer may still send before a WINDOW_UPDATE. */
  recvWindow: number;
  /** Consumed octets not yet returned to the peer by WINDOW_UPDATE. */
  unacked = 0;
  /** Octets handed to the handler and not yet consumed. */
  inFlight = 0;
  /** DATA waiting for window: payloads and the END_STREAM that follows the last, if asked. */
  readonly queue: Buffer[] = [];
  queuedBytes = 0;
  endQueued = false;
  /** Trailers to send once the queue is empty. */
  pendingTrailers: string[] | undefined;
  /** writeData returned false: tell the handler when the queue is empty. */
  wantsWritable = false;
  /** Request content-length, when the request had one: DATA must add up to it. */
  expectedLength = -1;
  receivedLength = 0;
  /** We sent response (or request) HEADERS. */
  headersSent = false;
  /** The peer's first HEADERS has come (a later HEADERS block is trailers). */
  headersReceived = false;
  /** RST_STREAM code once reset either way. */
  resetCode: number | null = null;
  closed = false;

  constructor(connection: Http2Connection, id: number, sendWindow: number, recvWindow: number) {
    this.connection = connection;
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** Response or request HEADERS (the first block on this stream from our side). */
  writeHeaders(fields: readonly string[], endStream: boolean): void {
    this.connection.writeHeaders(this, fields, endStream);
  }

  /** Queues DATA; true if the stream can take more now, false to wait for handler.onWritable. */
  writeData(data: Buffer, endStream = false): boolean {
    return this.connection.writeData(this, data, endStream);
  }

  /** Trailers, which end the stream from our side (sent after queued DATA). */
  writeTrailers(fields: readonly string[]): void {
    this.connection.writeTrailers(this, fields);
  }

  /** Ends our side with an empty DATA frame carrying END_STREAM (after queued DATA). */
  end(): void {
    this.connection.writeData(this, EMPTY, true);
  }

  /** RST_STREAM with `code`; the handler hears onClose(code). */
  reset(code: number): void {
    this.connection.resetStream(this, code, false);
  }

  /** The layer above has passed `n` received octets on: the peer may send that much more. */
  consume(n: number): void {
    this.connection.consume(this, n);
  }

  /** The peer may still send to us (it has not ended its side). */
  get remoteOpen(): boolean {
    return this.state === StreamState.OPEN || this.state === StreamState.HALF_CLOSED_LOCAL;
  }

  /** We may still send. */
  get localOpen(): boolean {
    return this.state === StreamState.OPEN || this.state === StreamState.HALF_CLOSED_REMOTE;
  }
}

const EMPTY = Buffer.alloc(0);
