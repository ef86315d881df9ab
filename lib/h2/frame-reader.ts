// Cuts a connection's byte stream into HTTP/2 frames (RFC 9113 4.1), straight from the socket's
// chunks. A frame wholly inside a chunk is handed on as a view of that chunk (no copy); a frame
// split over reads is gathered once into a buffer of its own size, allocated when its header is
// complete and its length known to be within the limit, so a peer announcing a huge frame costs
// nothing. Frame semantics are the connection's business, not this file's.
import { DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LENGTH } from './constants.ts';

export interface FrameSink {
  /** One whole frame. `payload` is only valid during the call unless the sink keeps it on purpose. */
  onFrame(type: number, flags: number, streamId: number, payload: Buffer): void;
  /** A frame header announced more than maxFrameSize octets: a connection error (FRAME_SIZE_ERROR). */
  onFrameTooLarge(type: number, streamId: number, length: number): void;
}

export class FrameReader {
  /** The SETTINGS_MAX_FRAME_SIZE we advertised. */
  maxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  readonly #sink: FrameSink;
  /** A frame header split over reads: its first octets (allocated the first time one is split). */
  #head: Buffer | undefined;
  #headLength = 0;
  /** A frame whose payload is split over reads: the payload gathered so far. */
  #partial: Buffer | undefined;
  #partialFilled = 0;
  #type = 0;
  #flags = 0;
  #streamId = 0;
  #stopped = false;

  constructor(sink: FrameSink) {
    this.#sink = sink;
  }

  /** Nothing more is parsed (the connection is going away): later chunks are dropped. */
  stop(): void {
    this.#stopped = true;
    this.#partial = undefined;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  push(chunk: Buffer): void {
    let at = 0;
    const end = chunk.length;
    if (this.#partial !== undefined) at = this.#continuePartial(chunk);
    else if (this.#headLength > 0) at = this.#continueHead(chunk);
    const sink = this.#sink;
    while (at < end && !this.#stopped) {
      if (end - at < FRAME_HEADER_LENGTH) {
        chunk.copy((this.#head ??= Buffer.allocUnsafe(FRAME_HEADER_LENGTH)), 0, at, end);
        this.#headLength = end - at;
        return;
      }
      const length = ((chunk[at] as number) << 16) | ((chunk[at + 1] as number) << 8) | (chunk[at + 2] as number);
      const type = chunk[at + 3] as number;
      const flags = chunk[at + 4] as number;
      const streamId = chunk.readUInt32BE(at + 5) & 0x7fffffff;
      if (length > this.maxFrameSize) {
        this.#stopped = true;
        sink.onFrameTooLarge(type, streamId, length);
        return;
      }
      const start = at + FRAME_HEADER_LENGTH;
      if (end - start < length) {
        this.#startPartial(type, flags, streamId, length, chunk, start, end);
        return;
      }
      at = start + length;
      sink.onFrame(type, flags, streamId, chunk.subarray(start, at));
    }
  }

  /** Completes a split header with the first octets of `chunk`; returns where parsing goes on. */
  #continueHead(chunk: Buffer): number {
    const need = FRAME_HEADER_LENGTH - this.#headLength;
    const head = this.#head as Buffer; // set when the split began
    if (chunk.length < need) {
      chunk.copy(head, this.#headLength);
      this.#headLength += chunk.length;
      return chunk.length;
    }
    chunk.copy(head, this.#headLength, 0, need);
    this.#headLength = 0;
    const length = ((head[0] as number) << 16) | ((head[1] as number) << 8) | (head[2] as number);
    const type = head[3] as number;
    const flags = head[4] as number;
    const streamId = head.readUInt32BE(5) & 0x7fffffff;
    if (length > this.maxFrameSize) {
      this.#stopped = true;
      this.#sink.onFrameTooLarge(type, streamId, length);
      return chunk.length;
    }
    if (chunk.length - need >= length) {
      this.#sink.onFrame(type, flags, streamId, chunk.subarray(need, need + length));
      return need + length;
    }
    this.#startPartial(type, flags, streamId, length, chunk, need, chunk.length);
    return chunk.length;
  }

  #startPartial(type: number, flags: number, streamId: number, length: number, chunk: Buffer, start: number, end: number): void {
    this.#type = type;
    this.#flags = flags;
    this.#streamId = streamId;
    this.#partial = Buffer.allocUnsafe(length);
    this.#partialFilled = chunk.copy(this.#partial, 0, start, end);
  }

  /** Adds the first octets of `chunk` to a split payload; returns where parsing goes on. */
  #continuePartial(chunk: Buffer): number {
    const partial = this.#partial as Buffer;
    const need = partial.length - this.#partialFilled;
    const take = Math.min(need, chunk.length);
    chunk.copy(partial, this.#partialFilled, 0, take);
    this.#partialFilled += take;
    if (this.#partialFilled < partial.length) return take;
    this.#partial = undefined;
    this.#sink.onFrame(this.#type, this.#flags, this.#streamId, partial);
    return take;
  }
}
