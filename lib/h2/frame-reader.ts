// Cuts a connection's byte stream into HTTP/2 frames (RFC 9113 4.1), straight from the socket's
// chunks. A frame wholly inside a chunk is handed on as a view of that chunk (no copy). A frame
// split over reads into a pooled read buffer is held there: a streaming socket reads on right
// after its last read (read-buffers.ts), so the frame's rest usually lands next to its start
// and the whole is handed on as one view of the buffer. Any other split frame (the next read
// went elsewhere, or the reads are not pooled) is gathered once into a buffer of its own size,
// allocated when its header is complete and its length known to be within the limit, so a
// peer announcing a huge frame costs nothing. While streaming, nearly every read ends inside
// a frame: gathering them all copied and allocated ~a quarter of what was relayed.
// Frame semantics are the connection's business, not this file's.
import { DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LENGTH } from './constants.ts';
import { isPooled, keep, release } from './read-buffers.ts';

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
  /** A split payload still in its pooled read buffer: its start (held), and its whole length. */
  #held: Buffer | undefined;
  #heldLength = 0;
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
    this.#dropHeld();
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  push(chunk: Buffer): void {
    let at = 0;
    const end = chunk.length;
    if (this.#held !== undefined) at = this.#continueHeld(chunk);
    else if (this.#partial !== undefined) at = this.#continuePartial(chunk);
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
    const begun = chunk.subarray(start, end);
    if (isPooled(begun)) {
      this.#held = keep(begun);
      this.#heldLength = length;
      return;
    }
    this.#partial = Buffer.allocUnsafe(length);
    this.#partialFilled = begun.copy(this.#partial);
  }

  /**
   * Goes on with a split payload held in its read buffer: `chunk` extends it when it was read
   * right after it; otherwise what was held is copied out and gathered as any split payload.
   */
  #continueHeld(chunk: Buffer): number {
    const held = this.#held as Buffer;
    if (chunk.buffer !== held.buffer || chunk.byteOffset !== held.byteOffset + held.length) {
      this.#partial = Buffer.allocUnsafe(this.#heldLength);
      this.#partialFilled = held.copy(this.#partial);
      this.#dropHeld();
      return this.#continuePartial(chunk);
    }
    const take = Math.min(this.#heldLength - held.length, chunk.length);
    const grown = Buffer.from(held.buffer, held.byteOffset, held.length + take);
    if (grown.length < this.#heldLength) {
      this.#held = grown; // the same hold: one buffer, one holder
      return take;
    }
    this.#held = undefined;
    this.#sink.onFrame(this.#type, this.#flags, this.#streamId, grown);
    release(held);
    return take;
  }

  #dropHeld(): void {
    if (this.#held === undefined) return;
    release(this.#held);
    this.#held = undefined;
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
