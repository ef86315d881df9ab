// One HTTP/2 connection (RFC 9113), the part both sides share: frames in and out, SETTINGS with
// their ACK and its timeout, PING, GOAWAY both ways, RST_STREAM, flow control on both windows,
// header blocks over CONTINUATION, padding, PRIORITY (read and ignored), stream states and the
// protections of limits.ts. What differs between sides (who opens streams, what a valid first
// HEADERS is) is server-connection.ts's and client-connection.ts's.
//
// Nothing here throws out of a socket event: an exception from the layer above's callbacks is
// caught, reported through hooks.onInternalError, and closes this connection with
// GOAWAY(INTERNAL_ERROR); the process and every other connection go on.
import type { Socket } from 'node:net';
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW_SIZE,
  ErrorCode,
  Flag,
  FrameType,
  MAX_ALLOWED_FRAME_SIZE,
  MAX_WINDOW_SIZE,
  Setting,
} from './constants.ts';
import { FrameReader, type FrameSink } from './frame-reader.ts';
import { FrameWriter } from './frame-writer.ts';
import { HpackDecoder, HpackError } from './hpack/decoder.ts';
import { HpackEncoder } from './hpack/encoder.ts';
import { forwarded } from '../runtime/young-garbage.ts';
import { Budget, type H2Counters, type H2Limits } from './limits.ts';
import { keep, release, type SocketReads } from './read-buffers.ts';
import { H2Stream, StreamState } from './stream.ts';

/** onClose's code for a stream whose connection went away without a RST_STREAM for it. */
export const CONNECTION_LOST = -1;

/** Socket octets queued past which DATA waits for the socket to drain (backpressure). */
const SOCKET_HIGH_WATER = 256 * 1024;
/** How many of our own resets are remembered, so frames the peer sent before it saw them are ignored. */
const RECENTLY_RESET = 64;
/** How long a connection closed with an error waits for its GOAWAY to leave before it is cut. */
const CLOSE_LINGER_MS = 1000;

export interface ConnectionHooks {
  /** Server side: a new request stream, its fields validated. Set stream.handler before returning. */
  onStream(stream: H2Stream, fields: string[], endStream: boolean): void;
  /** The peer's GOAWAY. */
  onGoaway(lastStreamId: number, code: number, debug: string): void;
  /** Every stream has ended and the socket is closed. */
  onClose(): void;
  /** An exception out of a callback of the layer above: the connection has been closed. */
  onInternalError(where: string, err: unknown): void;
  /** The last stream closed (for idle timers); `open` streams are still open. */
  onStreamCountChanged(open: number): void;
}

const NO_HOOKS: ConnectionHooks = {
  onStream(stream) {
    stream.reset(ErrorCode.REFUSED_STREAM);
  },
  onGoaway() {},
  onClose() {},
  onInternalError() {},
  onStreamCountChanged() {},
};

/** A header block being gathered over CONTINUATION frames. */
interface PendingBlock {
  streamId: number;
  endStream: boolean;
  selfDependent: boolean;
  chunks: Buffer[];
  bytes: number;
  frames: number;
}

export abstract class Http2Connection implements FrameSink {
  readonly socket: Socket;
  readonly limits: H2Limits;
  readonly counters: H2Counters;
  hooks: ConnectionHooks = NO_HOOKS;
  readonly streams = new Map<number, H2Stream>();
  /** Streams open now (those counted against SETTINGS_MAX_CONCURRENT_STREAMS). */
  openStreams = 0;

  /** The peer's settings as they apply to what we send. */
  peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  peerInitialWindow = DEFAULT_WINDOW_SIZE;
  peerMaxConcurrentStreams = Infinity;
  /** Connection windows: what we may send, and what the peer may send before a WINDOW_UPDATE. */
  sendWindow = DEFAULT_WINDOW_SIZE;
  recvWindow = DEFAULT_WINDOW_SIZE;
  #unacked = 0;

  /** Highest stream id the peer opened; 0 before any. */
  lastPeerStreamId = 0;
  /** Last stream id of the GOAWAY we sent / received, or -1. */
  goawaySent = -1;
  goawayReceived = -1;
  closed = false;
  /** Why the connection failed, when it did (a socket error code, or the error we sent GOAWAY for). */
  failure: string | undefined;

  protected readonly reader: FrameReader;
  protected readonly writer: FrameWriter;
  readonly #decoder = new HpackDecoder();
  readonly #encoder = new HpackEncoder();
  readonly #resets: Budget;
  readonly #control: Budget;
  #emptyFrames = 0;
  #block: PendingBlock | undefined;
  /** The first frame from the peer must be SETTINGS (its preface). */
  #peerSettled = false;
  #settingsTimer: NodeJS.Timeout | undefined;
  /** Streams with DATA waiting for the connection window or the socket. */
  readonly #blocked = new Set<H2Stream>();
  #draining = false;
  /**
   * Ids of the last streams we reset: frames already in flight on them are ignored (RFC 9113
   * 5.1). Allocated at the first reset: most connections never send one.
   */
  #recentlyReset: Int32Array | undefined;
  /** The socket's reads into reused buffers, when it reads that way (its target is given back at close). */
  #reads: SocketReads | undefined;
  /** Cuts a closing socket whose peer does not hang up; cleared when it does. */
  #lingerTimer: NodeJS.Timeout | undefined;
  #recentlyResetAt = 0;

  /** `reads`: the socket reads into reused buffers through it (read-buffers.ts). */
  constructor(socket: Socket, limits: H2Limits, counters: H2Counters, reads?: SocketReads) {
    this.socket = socket;
    this.limits = limits;
    this.counters = counters;
    this.reader = new FrameReader(this);
    this.reader.maxFrameSize = limits.maxFrameSize;
    this.writer = new FrameWriter(socket);
    this.#resets = new Budget(limits.resetBurst, limits.resetsPerSecond);
    this.#control = new Budget(limits.controlBurst, limits.controlPerSecond);
    // A socket reading into reused buffers hands every read to its sink and emits no 'data'
    // (the h2c listener turns it before its first read, net.connect at connect).
    if (reads === undefined) {
      socket.on('data', (chunk: Buffer) => this.received(chunk));
    } else {
      reads.sink = this;
      this.#reads = reads;
    }
    socket.on('drain', () => this.#guard('socket drain', () => this.#flushBlocked()));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.failure ??= err.code ?? err.message; // 'close' follows
    });
    socket.once('close', () => this.#guard('socket close', () => this.#onSocketClose()));
    // The peer's FIN: it sends nothing more. Node would answer with shutdown() and close only
    // once that completed; with nothing left to write, close() sends the same FIN at once (all
    // was read, so no reset). Under connection churn, ~5% of a new connection's CPU. TLS
    // sockets keep Node's way (their close_notify).
    if (!(socket as { encrypted?: boolean }).encrypted) {
      socket.allowHalfOpen = true;
      socket.on('end', () => this.#onPeerEnd());
    }
    // A listener that looked at the first bytes paused the socket; 'data' alone would not resume it.
    socket.resume();
  }

  /** One read of the socket; what must outlive the call is kept (read-buffers.ts). */
  received(chunk: Buffer): void {
    // What a read leaves behind dies young but is partly native: a new buffer per read (unless
    // reused), frame views, and the write requests of what is forwarded, which V8 would
    // otherwise free only with full collections. Counted even for reused buffers: a 1 GiB
    // stream peaked at ~117 MiB without the scavenges, ~93 MiB with them.
    forwarded(chunk.length);
    this.#guard('read', () => this.onBytes(chunk));
  }

  /** Octets of socket data: the sides strip a preface first, then frames. */
  protected onBytes(chunk: Buffer): void {
    this.reader.push(chunk);
    // What the kernel would not take: a burst answered in one turn is fine, a backlog is not.
    if (this.socket.writableLength > this.limits.maxOutgoingBytes && !this.socket.destroyed) {
      this.counters.outgoingQueueFull++;
      this.destroy();
    }
  }

  /** Our SETTINGS (and the connection window), sent first by both sides. */
  protected sendPreface(extra: Array<[number, number]>): void {
    const settings: Array<[number, number]> = [...extra, [Setting.INITIAL_WINDOW_SIZE, this.limits.streamWindow], [Setting.MAX_HEADER_LIST_SIZE, this.limits.maxHeaderListSize]];
    if (this.limits.maxFrameSize !== DEFAULT_MAX_FRAME_SIZE) settings.push([Setting.MAX_FRAME_SIZE, this.limits.maxFrameSize]);
    const payload = Buffer.alloc(settings.length * 6);
    settings.forEach(([id, value], i) => {
      payload.writeUInt16BE(id, i * 6);
      payload.writeUInt32BE(value, i * 6 + 2);
    });
    this.writer.frame(FrameType.SETTINGS, 0, 0, payload);
    if (this.limits.connectionWindow > DEFAULT_WINDOW_SIZE) {
      this.#windowUpdate(0, this.limits.connectionWindow - DEFAULT_WINDOW_SIZE);
      this.recvWindow = this.limits.connectionWindow;
    }
    this.#settingsTimer = setTimeout(onSettingsTimeout, this.limits.settingsTimeoutMs, this).unref();
  }

  settingsTimedOut(): void {
    this.#settingsTimer = undefined;
    this.counters.settingsTimeout++;
    this.connectionError(ErrorCode.SETTINGS_TIMEOUT, 'SETTINGS not acknowledged');
  }

  // --- frames in ------------------------------------------------------------------------

  onFrameTooLarge(type: number, _streamId: number, length: number): void {
    this.connectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of type ${type} with ${length} octets, over SETTINGS_MAX_FRAME_SIZE`);
  }

  onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.closed) return;
    if (!this.#peerSettled) {
      if (type !== FrameType.SETTINGS || (flags & Flag.ACK) !== 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'the first frame must be SETTINGS');
      this.#peerSettled = true;
    }
    if (this.#block !== undefined && (type !== FrameType.CONTINUATION || streamId !== this.#block.streamId)) {
      return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
    }
    switch (type) {
      case FrameType.DATA:
        return this.#onData(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.#onHeaders(flags, streamId, payload);
      case FrameType.PRIORITY:
        return this.#onPriority(streamId, payload);
      case FrameType.RST_STREAM:
        return this.#onRstStream(streamId, payload);
      case FrameType.SETTINGS:
        return this.#onSettings(flags, streamId, payload);
      case FrameType.PUSH_PROMISE:
        return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE, with push disabled');
      case FrameType.PING:
        return this.#onPing(flags, streamId, payload);
      case FrameType.GOAWAY:
        return this.#onGoaway(streamId, payload);
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(streamId, payload);
      case FrameType.CONTINUATION:
        return this.#onContinuation(flags, payload);
      default:
        // Unknown frame types are ignored (RFC 9113 4.1, 5.5).
        return;
    }
  }

  #onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    const length = payload.length;
    let data = payload;
    if (flags & Flag.PADDED) {
      if (length === 0) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'PADDED DATA without a pad length');
      const pad = payload[0] as number;
      if (pad >= length) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'DATA padding longer than the frame');
      data = payload.subarray(1, length - pad);
    }
    this.recvWindow -= length;
    if (this.recvWindow < 0) return this.connectionError(ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (this.isIdle(streamId)) return this.connectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
      this.#creditConnection(length);
      if (this.#wasReset(streamId)) return;
      return this.#streamError(streamId, ErrorCode.STREAM_CLOSED);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (!stream.remoteOpen || !stream.headersReceived) {
      this.#creditConnection(length);
      return this.#streamError(streamId, ErrorCode.STREAM_CLOSED, stream);
    }
    stream.recvWindow -= length;
    if (stream.recvWindow < 0) {
      this.#creditConnection(length);
      return this.#streamError(streamId, ErrorCode.FLOW_CONTROL_ERROR, stream);
    }
    // Padding is nobody's to consume: give it back now.
    const padding = length - data.length;
    if (padding > 0) {
      this.#creditConnection(padding);
      stream.unacked += padding;
    }
    if (data.length === 0 && !endStream) {
      if (++this.#emptyFrames > this.limits.maxEmptyFrames) {
        this.counters.emptyFrameFlood++;
        return this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'too many empty frames');
      }
    } else {
      this.#emptyFrames = 0;
    }
    if (stream.expectedLength >= 0) {
      stream.receivedLength += data.length;
      if (stream.receivedLength > stream.expectedLength || (endStream && stream.receivedLength !== stream.expectedLength)) {
        this.#creditConnection(data.length);
        return this.#streamError(streamId, ErrorCode.PROTOCOL_ERROR, stream);
      }
    }
    stream.inFlight += data.length;
    if (endStream) this.remoteEnded(stream);
    stream.handler.onData(stream, data, endStream);
    if (endStream) this.maybeFinish(stream);
  }

  #onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let start = 0;
    let end = payload.length;
    if (flags & Flag.PADDED) {
      if (end === 0) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'PADDED HEADERS without a pad length');
      end -= payload[0] as number;
      start = 1;
    }
    let selfDependent = false;
    if (flags & Flag.PRIORITY) {
      if (start + 5 > end) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'HEADERS too short for its priority');
      selfDependent = (payload.readUInt32BE(start) & 0x7fffffff) === streamId;
      start += 5;
    }
    if (start > end) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
    const fragment = payload.subarray(start, end);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (fragment.length === 0 && !endStream && ++this.#emptyFrames > this.limits.maxEmptyFrames) {
      this.counters.emptyFrameFlood++;
      return this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'too many empty frames');
    }
    const block: PendingBlock = { streamId, endStream, selfDependent, chunks: [fragment], bytes: fragment.length, frames: 1 };
    if (flags & Flag.END_HEADERS) return this.#finishBlock(block);
    // The block waits for CONTINUATION in later reads, whose buffer may be this one again.
    block.chunks[0] = Buffer.from(fragment);
    this.#block = block;
  }

  #onContinuation(flags: number, payload: Buffer): void {
    const block = this.#block;
    if (block === undefined) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
    block.frames++;
    block.bytes += payload.length;
    block.chunks.push(flags & Flag.END_HEADERS ? payload : Buffer.from(payload));
    if (block.bytes > this.limits.maxHeaderBlockBytes || block.frames > this.limits.maxContinuationFrames + 1) {
      this.counters.continuationFlood++;
      return this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large');
    }
    if (payload.length === 0 && !(flags & Flag.END_HEADERS) && ++this.#emptyFrames > this.limits.maxEmptyFrames) {
      this.counters.emptyFrameFlood++;
      return this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'too many empty frames');
    }
    if (flags & Flag.END_HEADERS) {
      this.#block = undefined;
      this.#finishBlock(block);
    }
  }

  #finishBlock(block: PendingBlock): void {
    this.#block = undefined;
    if (block.bytes > this.limits.maxHeaderBlockBytes) {
      this.counters.continuationFlood++;
      return this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large');
    }
    const bytes = block.chunks.length === 1 ? (block.chunks[0] as Buffer) : Buffer.concat(block.chunks, block.bytes);
    // A joined block and the strings decoded from it die with this call: young garbage too.
    forwarded(block.bytes * 2);
    let fields: string[] | null;
    try {
      fields = this.#decoder.decode(bytes, this.limits.maxHeaderListSize);
    } catch (err) {
      if (err instanceof HpackError) return this.connectionError(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const { streamId, endStream } = block;
    const stream = this.streams.get(streamId);
    if (stream !== undefined) {
      if (!stream.remoteOpen) return this.#streamError(streamId, ErrorCode.STREAM_CLOSED, stream);
      if (block.selfDependent) return this.#streamError(streamId, ErrorCode.PROTOCOL_ERROR, stream);
      if (fields === null) {
        this.counters.headerListTooLarge++;
        return this.#streamError(streamId, ErrorCode.ENHANCE_YOUR_CALM, stream);
      }
      return this.onStreamHeaders(stream, fields, endStream);
    }
    if (!this.isIdle(streamId)) {
      // Trailers in flight on a stream we reset are ignored; otherwise a stream that was open
      // and is closed now (RFC 9113 5.1).
      if (this.#wasReset(streamId)) return;
      return this.connectionError(ErrorCode.STREAM_CLOSED, `HEADERS on closed stream ${streamId}`);
    }
    this.onNewStream(streamId, fields, endStream, block.selfDependent);
  }

  #onPriority(streamId: number, payload: Buffer): void {
    if (streamId === 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
    if (payload.length !== 5) return this.#streamError(streamId, ErrorCode.FRAME_SIZE_ERROR, this.streams.get(streamId));
    if ((payload.readUInt32BE(0) & 0x7fffffff) === streamId) return this.#streamError(streamId, ErrorCode.PROTOCOL_ERROR, this.streams.get(streamId));
  }

  #onRstStream(streamId: number, payload: Buffer): void {
    if (streamId === 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM of a length other than 4');
    if (this.isIdle(streamId)) return this.connectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    if (!this.#resets.take()) {
      this.counters.rapidReset++;
      return this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'too many stream resets');
    }
    stream.resetCode = payload.readUInt32BE(0);
    this.finish(stream, stream.resetCode);
  }

  #onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & Flag.ACK) {
      if (payload.length !== 0) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      clearTimeout(this.#settingsTimer);
      this.#settingsTimer = undefined;
      return;
    }
    if (payload.length % 6 !== 0) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS of a length not a multiple of 6');
    if (!this.#control.take()) {
      this.counters.controlFlood++;
      return this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'SETTINGS flood');
    }
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      switch (id) {
        case Setting.HEADER_TABLE_SIZE:
          this.#encoder.setMaxTableSize(Math.min(value, 4096));
          break;
        case Setting.ENABLE_PUSH:
          if (value > 1) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH other than 0 or 1');
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.peerMaxConcurrentStreams = value;
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW_SIZE) return this.connectionError(ErrorCode.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW_SIZE) return this.connectionError(ErrorCode.FLOW_CONTROL_ERROR, 'a stream window above 2^31-1');
          }
          if (delta > 0) for (const stream of this.streams.values()) this.flushStream(stream);
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
          this.peerMaxFrameSize = value;
          break;
        default:
          // SETTINGS_MAX_HEADER_LIST_SIZE is advice; unknown settings are ignored (6.5.2).
          break;
      }
    }
    this.writer.frame(FrameType.SETTINGS, Flag.ACK, 0);
  }

  #onPing(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
    if (payload.length !== 8) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING of a length other than 8');
    if (flags & Flag.ACK) return;
    if (!this.#control.take()) {
      this.counters.controlFlood++;
      return this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'PING flood');
    }
    this.writer.frame(FrameType.PING, Flag.ACK, 0, payload);
  }

  #onGoaway(streamId: number, payload: Buffer): void {
    if (streamId !== 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
    if (payload.length < 8) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'GOAWAY shorter than 8 octets');
    const last = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    this.goawayReceived = this.goawayReceived < 0 ? last : Math.min(this.goawayReceived, last);
    this.hooks.onGoaway(last, code, payload.toString('latin1', 8));
    this.onPeerGoaway(last);
    this.#closeIfDone();
  }

  #onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) return this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE of a length other than 4');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW_SIZE) return this.connectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      return this.#flushBlocked();
    }
    if (this.isIdle(streamId)) return this.connectionError(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${streamId}`);
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    if (increment === 0) return this.#streamError(streamId, ErrorCode.PROTOCOL_ERROR, stream);
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW_SIZE) return this.#streamError(streamId, ErrorCode.FLOW_CONTROL_ERROR, stream);
    this.flushStream(stream);
  }

  // --- sides ------------------------------------------------------------------------------

  /** Whether a stream id is one the peer could still open (never seen, right parity, above the last). */
  protected abstract isIdle(streamId: number): boolean;
  /** The first HEADERS of a stream the peer opens. */
  protected abstract onNewStream(streamId: number, fields: string[] | null, endStream: boolean, selfDependent: boolean): void;
  /** A later HEADERS block on an open stream (response headers on the client side, or trailers). */
  protected abstract onStreamHeaders(stream: H2Stream, fields: string[], endStream: boolean): void;
  /** The peer's GOAWAY: streams we opened above `lastStreamId` were not processed. */
  protected abstract onPeerGoaway(lastStreamId: number): void;
  /**
   * Whether a graceful close waits for the peer's FIN (the server side: a client may still be
   * sending, and a reset would make its kernel drop answers it has not read yet) rather than
   * closing once the kernel has taken the GOAWAY (the client side: every stream was answered).
   */
  protected abstract readonly waitsForPeerFin: boolean;
  /**
   * Whether close() sends a GOAWAY when no stream is open. The server side does: a request may
   * be on its way, and the GOAWAY's last stream id tells the client it was not processed. The
   * client side does not, as Go's transport closes an idle connection: it names the last
   * stream the server opened, and with push off there are none, so it would tell the server
   * nothing its FIN does not, for a write on each side.
   */
  protected abstract readonly goawayWhenIdle: boolean;

  /** A new stream in the table, counted against the concurrency limit. */
  protected addStream(streamId: number, endStream: boolean): H2Stream {
    const stream = new H2Stream(this, streamId, this.peerInitialWindow, this.limits.streamWindow);
    if (endStream) stream.state = StreamState.HALF_CLOSED_REMOTE;
    this.streams.set(streamId, stream);
    this.openStreams++;
    return stream;
  }

  /** The peer ended its side of `stream`. */
  protected remoteEnded(stream: H2Stream): void {
    stream.state = stream.state === StreamState.HALF_CLOSED_LOCAL ? StreamState.CLOSED : StreamState.HALF_CLOSED_REMOTE;
  }

  // --- frames out ---------------------------------------------------------------------------

  writeHeaders(stream: H2Stream, fields: readonly string[], endStream: boolean): void {
    if (stream.closed || !stream.localOpen) return;
    const block = this.#encoder.encode(fields);
    stream.headersSent = true;
    this.#writeBlock(stream.id, block, endStream);
    if (endStream) this.#localEnded(stream);
  }

  writeTrailers(stream: H2Stream, fields: readonly string[]): void {
    if (stream.closed || !stream.localOpen || stream.endQueued) return;
    if (stream.queuedBytes > 0 || stream.queue.length > 0) {
      stream.pendingTrailers = [...fields];
      stream.endQueued = true;
      return;
    }
    this.#writeBlock(stream.id, this.#encoder.encode(fields), true);
    this.#localEnded(stream);
  }

  writeData(stream: H2Stream, data: Buffer, endStream: boolean): boolean {
    if (stream.closed || !stream.localOpen || stream.endQueued) return false;
    const n = data.length;
    // Nothing waiting and room for all of it: one frame now, the relay's usual case.
    if (!endStream && n > 0 && stream.queue.length === 0 && n <= stream.sendWindow && n <= this.sendWindow && n <= this.peerMaxFrameSize && this.writer.pendingBytes < SOCKET_HIGH_WATER) {
      stream.sendWindow -= n;
      this.sendWindow -= n;
      this.writer.frame(FrameType.DATA, 0, stream.id, data);
      return true;
    }
    if (n > 0 || endStream) {
      // Queued DATA outlives the read it may be a view of.
      stream.queue.push(keep(data));
      stream.queuedBytes += n;
    }
    if (endStream) stream.endQueued = true;
    this.flushStream(stream);
    if (stream.queuedBytes > 0) {
      stream.wantsWritable = true;
      return false;
    }
    return true;
  }

  /** Sends what the windows, the frame size and the socket allow of `stream`'s queue. */
  protected flushStream(stream: H2Stream): void {
    if (stream.closed) return;
    const queue = stream.queue;
    while (queue.length > 0) {
      const chunk = queue[0] as Buffer;
      const last = queue.length === 1 && stream.endQueued && stream.pendingTrailers === undefined;
      if (chunk.length === 0) {
        queue.shift();
        if (last) {
          this.writer.frame(FrameType.DATA, Flag.END_STREAM, stream.id);
          this.#localEnded(stream);
          return;
        }
        continue;
      }
      const room = Math.min(stream.sendWindow, this.sendWindow, this.peerMaxFrameSize);
      if (room <= 0 || this.writer.pendingBytes >= SOCKET_HIGH_WATER) {
        this.#blocked.add(stream);
        return;
      }
      const n = Math.min(room, chunk.length);
      const piece = n === chunk.length ? chunk : chunk.subarray(0, n);
      stream.sendWindow -= n;
      this.sendWindow -= n;
      stream.queuedBytes -= n;
      if (n === chunk.length) queue.shift();
      else queue[0] = chunk.subarray(n);
      const ends = last && n === chunk.length;
      this.writer.frame(FrameType.DATA, ends ? Flag.END_STREAM : 0, stream.id, piece);
      // The writer holds what it sends now; the queue's hold ends with the chunk's last piece.
      if (n === chunk.length) release(chunk);
      if (ends) {
        this.#localEnded(stream);
        return;
      }
    }
    this.#blocked.delete(stream);
    if (stream.pendingTrailers !== undefined) {
      const trailers = stream.pendingTrailers;
      stream.pendingTrailers = undefined;
      this.#writeBlock(stream.id, this.#encoder.encode(trailers), true);
      this.#localEnded(stream);
      return;
    }
    if (stream.wantsWritable) {
      stream.wantsWritable = false;
      stream.handler.onWritable(stream);
    }
  }

  #flushBlocked(): void {
    if (this.#blocked.size === 0) return;
    for (const stream of [...this.#blocked]) {
      if (this.sendWindow <= 0 || this.writer.pendingBytes >= SOCKET_HIGH_WATER) return;
      this.#blocked.delete(stream);
      this.flushStream(stream);
    }
  }

  /** HEADERS, cut into CONTINUATION frames by the peer's frame size. */
  #writeBlock(streamId: number, block: Buffer, endStream: boolean): void {
    const max = this.peerMaxFrameSize;
    const end = endStream ? Flag.END_STREAM : 0;
    if (block.length <= max) {
      this.writer.frame(FrameType.HEADERS, Flag.END_HEADERS | end, streamId, block);
      return;
    }
    this.writer.frame(FrameType.HEADERS, end, streamId, block.subarray(0, max));
    for (let at = max; at < block.length; at += max) {
      this.writer.frame(FrameType.CONTINUATION, at + max >= block.length ? Flag.END_HEADERS : 0, streamId, block.subarray(at, at + max));
    }
  }

  #localEnded(stream: H2Stream): void {
    stream.state = stream.state === StreamState.HALF_CLOSED_REMOTE ? StreamState.CLOSED : StreamState.HALF_CLOSED_LOCAL;
    stream.endQueued = true;
    // Our side is over: nothing more can be written, so no onWritable (a later WINDOW_UPDATE
    // for this stream must not wake the layer above).
    stream.wantsWritable = false;
    this.maybeFinish(stream);
  }

  /** Returns consumed octets to the peer (WINDOW_UPDATE at half a window). */
  consume(stream: H2Stream, n: number): void {
    if (n <= 0) return;
    const taken = Math.min(n, stream.inFlight);
    stream.inFlight -= taken;
    this.#creditConnection(taken);
    if (stream.closed || !stream.remoteOpen) return;
    stream.unacked += taken;
    if (stream.unacked >= this.limits.streamWindow / 2) {
      stream.recvWindow += stream.unacked;
      this.#windowUpdate(stream.id, stream.unacked);
      stream.unacked = 0;
    }
  }

  #creditConnection(n: number): void {
    if (n <= 0 || this.closed) return;
    this.#unacked += n;
    if (this.#unacked >= this.limits.connectionWindow / 2) {
      this.recvWindow += this.#unacked;
      this.#windowUpdate(0, this.#unacked);
      this.#unacked = 0;
    }
  }

  #windowUpdate(streamId: number, increment: number): void {
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(increment, 0);
    this.writer.frame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
  }

  // --- ending streams and the connection ------------------------------------------------------

  /** RST_STREAM; `provoked`: the peer made us send it (counted against the reset budget). */
  resetStream(stream: H2Stream, code: number, provoked: boolean): void {
    if (stream.closed) return;
    if (provoked && !this.#spendProvokedReset()) return;
    stream.resetCode = code;
    this.#rst(stream.id, code);
    this.finish(stream, code);
  }

  /** A stream error on `streamId` (RFC 9113 5.4.2): RST_STREAM, counted as provoked. */
  #streamError(streamId: number, code: number, stream?: H2Stream): void {
    this.counters.streamErrors++;
    if (!this.#spendProvokedReset()) return;
    this.#rst(streamId, code);
    if (stream !== undefined && !stream.closed) {
      stream.resetCode = code;
      this.finish(stream, code);
    }
  }

  /** A stream error the caller found: RST_STREAM with `code`, counted as provoked. */
  protected streamError(streamId: number, code: number, stream?: H2Stream): void {
    this.#streamError(streamId, code, stream);
  }

  #spendProvokedReset(): boolean {
    this.counters.provokedResets++;
    if (this.#resets.take()) return true;
    this.counters.rapidReset++;
    this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'too many stream resets');
    return false;
  }

  #wasReset(streamId: number): boolean {
    return this.#recentlyReset !== undefined && this.#recentlyReset.includes(streamId);
  }

  #rst(streamId: number, code: number): void {
    (this.#recentlyReset ??= new Int32Array(RECENTLY_RESET))[this.#recentlyResetAt] = streamId;
    this.#recentlyResetAt = (this.#recentlyResetAt + 1) % RECENTLY_RESET;
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(code, 0);
    this.writer.frame(FrameType.RST_STREAM, 0, streamId, payload);
  }

  /** Ends `stream` if both sides are done. */
  protected maybeFinish(stream: H2Stream): void {
    if (stream.state === StreamState.CLOSED && stream.queue.length === 0) this.finish(stream, null);
  }

  /** The stream is over: out of the table, its handler told once. */
  protected finish(stream: H2Stream, code: number | null): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.state = StreamState.CLOSED;
    stream.queue.length = 0;
    stream.queuedBytes = 0;
    if (stream.inFlight > 0) {
      this.#creditConnection(stream.inFlight);
      stream.inFlight = 0;
    }
    this.streams.delete(stream.id);
    this.#blocked.delete(stream);
    this.openStreams--;
    stream.handler.onClose(stream, code);
    this.hooks.onStreamCountChanged(this.openStreams);
    this.#closeIfDone();
  }

  /**
   * Graceful shutdown: GOAWAY(NO_ERROR) with `lastStreamId` (2^31-1 for the first step of a
   * two-step shutdown); the connection closes once no stream below it is left.
   */
  goaway(lastStreamId = this.lastPeerStreamId, code: number = ErrorCode.NO_ERROR, debug = ''): void {
    if (this.closed) return;
    this.goawaySent = this.goawaySent < 0 ? lastStreamId : Math.min(this.goawaySent, lastStreamId);
    const payload = Buffer.allocUnsafe(8 + Buffer.byteLength(debug, 'latin1'));
    payload.writeUInt32BE(lastStreamId >>> 0, 0);
    payload.writeUInt32BE(code, 4);
    payload.write(debug, 8, 'latin1');
    this.writer.frame(FrameType.GOAWAY, 0, 0, payload);
  }

  /** GOAWAY with the real last stream id, then close once the streams below it are done. */
  close(): void {
    if (this.closed) return;
    this.#draining = true;
    if (this.goawayWhenIdle || this.streams.size > 0) this.goaway(this.lastPeerStreamId);
    this.#closeIfDone();
  }

  /** A connection error (RFC 9113 5.4.1): GOAWAY with `code`, every stream ended, the socket closed. */
  connectionError(code: number, debug: string): void {
    if (this.closed) return;
    this.counters.connectionErrors++;
    this.failure ??= `${errorName(code)}: ${debug}`;
    this.goaway(this.lastPeerStreamId, code, debug);
    // The streams were not reset by anyone: their connection failed.
    this.#shutDown(CONNECTION_LOST, 'failed');
  }

  /** Cuts the connection now: every stream ends, nothing more is sent. */
  destroy(): void {
    // Closed already, it may still be lingering for its GOAWAY to leave: cut that short too.
    if (this.closed) this.socket.destroy();
    else this.#shutDown(CONNECTION_LOST, 'cut');
  }

  #closeIfDone(): void {
    if (this.closed || this.streams.size > 0) return;
    if (this.#draining || (this.goawaySent >= 0 && this.goawaySent < 2 ** 31 - 1) || this.goawayReceived >= 0) this.#shutDown(CONNECTION_LOST, 'graceful');
  }

  /**
   * graceful: GOAWAY and FIN, the peer's FIN closes (the client side closes at once when the
   * kernel took everything); failed: GOAWAY and FIN, reading no more; cut: now.
   */
  #shutDown(streamCode: number, how: 'graceful' | 'failed' | 'cut'): void {
    this.closed = true;
    this.reader.stop();
    clearTimeout(this.#settingsTimer);
    for (const stream of [...this.streams.values()]) this.finish(stream, streamCode);
    if (how !== 'cut') {
      // After an error nothing more is read: a peer still writing fills its own buffers, and
      // the close that follows resets the connection (it cannot miss that the way it can miss
      // a FIN it never reads). After a graceful close the socket goes on reading (the stopped
      // reader drops what comes), so the peer's FIN closes it at once instead of after
      // CLOSE_LINGER_MS: under connection churn, connections waiting out that second were
      // thousands, promoted and copied by every scavenge.
      if (how === 'failed') this.socket.pause();
      this.writer.flush();
      if (how === 'graceful' && !this.waitsForPeerFin && this.writer.pendingBytes === 0) {
        // close() sends the FIN shutdown() would, and nothing is left to read for: no
        // shutdown, no wakeup for the peer's FIN, no linger timer (~3% of a new connection).
        this.socket.destroy();
      } else {
        this.socket.end();
        this.#lingerTimer = setTimeout(destroySocket, CLOSE_LINGER_MS, this.socket).unref();
      }
    } else {
      this.socket.destroy();
    }
    this.writer.close();
  }

  #onPeerEnd(): void {
    if (this.writer.pendingBytes === 0) this.socket.destroy();
    else this.socket.end(); // what is queued goes first, as Node would do it
  }

  #onSocketClose(): void {
    // Nothing reads into its target any more.
    this.#reads?.close();
    clearTimeout(this.#lingerTimer);
    if (!this.closed) {
      this.closed = true;
      this.reader.stop();
      this.writer.close();
      clearTimeout(this.#settingsTimer);
      for (const stream of [...this.streams.values()]) this.finish(stream, CONNECTION_LOST);
    }
    this.hooks.onClose();
    // The connection is over: it lets go of the layer above, its HPACK tables and the socket's
    // listeners (closures over it). Whatever still points at a closed connection then reaches
    // little: until a full collection a promoted dead object keeps everything it points to
    // alive through every scavenge, and under connection churn that kept nearly every closed
    // connection (docs/performance.md). With SlotMap for the long-lived sets, promoted bytes
    // per connection ~8 KB -> ~2 KB.
    this.hooks = NO_HOOKS;
    this.#decoder.release();
    this.#encoder.release();
    this.socket.removeAllListeners();
    // A closed socket emits no more errors, but an 'error' with no listener would throw.
    this.socket.on('error', ignoreError);
  }

  /** Runs `fn`; an exception closes this connection (GOAWAY INTERNAL_ERROR), never the process. */
  #guard(where: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      try {
        this.hooks.onInternalError(where, err);
      } catch {
        // nothing more to do for this connection
      }
      try {
        this.connectionError(ErrorCode.INTERNAL_ERROR, 'internal error');
      } catch {
        this.socket.destroy();
      }
    }
  }

  /** Runs `fn` under this connection's guard (timers of the layer above). */
  guarded(where: string, fn: () => void): void {
    this.#guard(where, fn);
  }

  /** The preface check failed or a side found the bytes unusable. */
  protected badPreface(): void {
    this.connectionError(ErrorCode.PROTOCOL_ERROR, 'invalid connection preface');
  }

  static readonly PREFACE = CLIENT_PREFACE;
}

const ERROR_NAMES = new Map<number, string>(Object.entries(ErrorCode).map(([name, code]) => [code, name]));

function errorName(code: number): string {
  return ERROR_NAMES.get(code) ?? `error ${code}`;
}

function onSettingsTimeout(connection: Http2Connection): void {
  connection.guarded('settings timeout', () => connection.settingsTimedOut());
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}

function ignoreError(): void {}
