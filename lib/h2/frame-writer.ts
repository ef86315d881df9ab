// Writes HTTP/2 frames to a socket, gathering every frame of one event-loop turn into one write.
// Frame headers and small payloads are copied into a slab shared by every connection of the
// process (an idle connection holds no write buffer); larger DATA payloads go out as the buffers
// they are (views of what was read from the other side), never copied here. The octets handed
// to the socket and not yet sent are counted, so a connection can refuse to queue without bound
// toward a peer that does not read. A payload in a read buffer that is used again is held until
// the socket has taken the write (read-buffers.ts).
import type { Socket } from 'node:net';
import { FRAME_HEADER_LENGTH } from './constants.ts';
import { isPooled, keep, release } from './read-buffers.ts';

/** Payloads up to this size are copied next to their header rather than written separately. */
const COPY_LIMIT = 1024;
const SLAB_SIZE = 64 * 1024;

// The shared slab: regions handed to sockets are never written again; a full slab is left to
// the views that hold it and a new one begun.
let slab = Buffer.allocUnsafe(SLAB_SIZE);
let slabPos = 0;

export class FrameWriter {
  readonly #socket: Socket;
  /** Buffers of this turn, in order: slab regions and payloads written as they are. */
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  /** Payloads of this turn held in reused read buffers, released once the socket took them. */
  #held: Buffer[] | undefined;
  /** This writer's current run of octets in the slab: [runStart, runEnd) of runSlab. */
  #runSlab: Buffer | undefined;
  #runStart = 0;
  #runEnd = 0;
  #scheduled = false;
  #closed = false;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Octets written to the socket and not yet sent, plus those gathered this turn. */
  get pendingBytes(): number {
    return this.#socket.writableLength + this.#chunkBytes + (this.#runEnd - this.#runStart);
  }

  /** One frame; a payload over COPY_LIMIT octets is written as it is, after its header. */
  frame(type: number, flags: number, streamId: number, payload?: Buffer): void {
    if (this.#closed) return;
    const length = payload === undefined ? 0 : payload.length;
    const copy = length <= COPY_LIMIT;
    const at = this.#reserve(FRAME_HEADER_LENGTH + (copy ? length : 0));
    const s = slab;
    s[at] = length >>> 16;
    s[at + 1] = (length >>> 8) & 0xff;
    s[at + 2] = length & 0xff;
    s[at + 3] = type;
    s[at + 4] = flags;
    s.writeUInt32BE(streamId >>> 0, at + 5);
    if (length > 0) {
      if (copy) {
        (payload as Buffer).copy(s, at + FRAME_HEADER_LENGTH);
      } else {
        this.#endRun();
        const kept = keep(payload as Buffer);
        if (kept === payload && isPooled(kept)) (this.#held ??= []).push(kept);
        this.#chunks.push(kept);
        this.#chunkBytes += length;
      }
    }
    this.#schedule();
  }

  /** Octets that are not a frame (the client preface), gathered with the frames that follow. */
  raw(bytes: Buffer): void {
    if (this.#closed) return;
    const at = this.#reserve(bytes.length);
    bytes.copy(slab, at);
    this.#schedule();
  }

  /** Sends what this turn gathered now (before the socket is ended, say). */
  flush(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    this.#endRun();
    const chunks = this.#chunks;
    if (chunks.length === 0) return;
    this.#chunks = [];
    this.#chunkBytes = 0;
    const held = this.#held;
    this.#held = undefined;
    const socket = this.#socket;
    if (socket.destroyed) {
      if (held !== undefined) releaseAll(held);
      return;
    }
    // Writes complete in order: the last one's callback (success or not) means the socket is
    // done with every buffer of this turn.
    const last = chunks.length - 1;
    if (last > 0) socket.cork();
    for (let i = 0; i < last; i++) socket.write(chunks[i] as Buffer);
    if (held === undefined) socket.write(chunks[last] as Buffer);
    else socket.write(chunks[last] as Buffer, () => releaseAll(held));
    if (last > 0) socket.uncork();
  }

  /** Nothing more is written (the socket is gone or being destroyed). */
  close(): void {
    this.#closed = true;
    this.#chunks = [];
    this.#chunkBytes = 0;
    // Never handed to the socket.
    if (this.#held !== undefined) releaseAll(this.#held);
    this.#held = undefined;
    this.#runSlab = undefined;
    this.#runStart = this.#runEnd = 0;
  }

  /** The gathered frames go out at the end of this turn, in one write. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    process.nextTick(flushWriter, this);
  }

  /** Room for `n` octets in the slab, continuing this writer's run if nobody wrote in between. */
  #reserve(n: number): number {
    if (slabPos + n > slab.length) {
      slab = Buffer.allocUnsafe(Math.max(SLAB_SIZE, n));
      slabPos = 0;
    }
    if (this.#runSlab !== slab || this.#runEnd !== slabPos) {
      this.#endRun();
      this.#runSlab = slab;
      this.#runStart = this.#runEnd = slabPos;
    }
    const at = slabPos;
    slabPos += n;
    this.#runEnd = slabPos;
    return at;
  }

  /** Closes the current slab run into a chunk of its own. */
  #endRun(): void {
    if (this.#runSlab !== undefined && this.#runEnd > this.#runStart) {
      this.#chunks.push(this.#runSlab.subarray(this.#runStart, this.#runEnd));
      this.#chunkBytes += this.#runEnd - this.#runStart;
    }
    this.#runSlab = undefined;
    this.#runStart = this.#runEnd = 0;
  }
}

function releaseAll(held: readonly Buffer[]): void {
  for (const b of held) release(b);
}

function flushWriter(writer: FrameWriter): void {
  writer.flush();
}
