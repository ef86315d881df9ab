// Socket reads into buffers that are used again (net's `onread` option) instead of a new
// ArrayBuffer per read. Fresh read buffers are native garbage V8 frees only when it collects
// their views: while streaming, memory the allocator keeps (~15 MiB at the peak) and forced
// scavenges (~10% of a stream's CPU) (docs/performance.md).
//
// Two kinds of target:
// - SHARED, one buffer for every quiet socket of the process: a read into it is handled before
//   any other socket reads (libuv runs each read's callback, and the ticks after it, before the
//   next read), so whatever must outlive the read is copied out (keep());
// - a pooled buffer of a socket that is streaming (its last read took at least as much as the
//   shared target holds): forwarded DATA leaves as views of it, uncopied, and it goes back to
//   the pool when every holder has released it (the socket once it reads into another buffer,
//   a writer once the kernel took the write, a queue once the view left it). A holder that
//   never releases (a stream reset with DATA queued) costs only that buffer's reuse: the
//   garbage collector frees it as before.
// A quiet socket holds no buffer of its own, so idle connections cost nothing here. A socket
// whose last read was large keeps its target until it reads again, however long it then stays
// idle (net commits the next read's target after each read), so at most MAX_STREAMING_SOCKETS
// hold one at a time: a client cannot pin 256 KiB per connection by sending 16 KiB and going
// quiet, and sockets past the limit stream through the shared buffer (copying what they keep).
import net from 'node:net';

/**
 * Size of a streaming socket's read target: four times net's own, so a stream takes a quarter
 * of the reads and writes (1 GiB each way, +10-13% MB/s; 512 KiB and 1 MiB were slower).
 */
export const READ_BUFFER_SIZE = 256 * 1024;
/** Size of the target every quiet socket shares: a burst of small calls fits in one read. */
export const SHARED_READ_SIZE = 16 * 1024;
/** The least room a pooled buffer is read into after an earlier read: net's own read size. */
const MIN_READ_ROOM = 64 * 1024;
/** Released buffers kept for the next streaming socket (2 MiB); more are left to the garbage collector. */
const MAX_FREE = 8;
/** Sockets reading into a pooled buffer of their own at once: 16 MiB of read targets at most. */
export const MAX_STREAMING_SOCKETS = 64;

const SHARED = Buffer.allocUnsafeSlow(SHARED_READ_SIZE);
const free: Buffer[] = [];
/** Holders of each pooled buffer now out of the free list. */
const holders = new WeakMap<ArrayBufferLike, number>();
const stats = { allocated: 0, reused: 0, returned: 0, streamingSockets: 0, overLimit: 0 };

function take(): Buffer {
  let buffer = free.pop();
  if (buffer === undefined) {
    buffer = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
    stats.allocated++;
  } else {
    stats.reused++;
  }
  holders.set(buffer.buffer, 1);
  return buffer;
}

function releaseBuffer(ab: ArrayBufferLike): void {
  const n = holders.get(ab);
  if (n === undefined) return;
  if (n > 1) {
    holders.set(ab, n - 1);
    return;
  }
  holders.delete(ab);
  stats.returned++;
  if (free.length < MAX_FREE) free.push(Buffer.from(ab as ArrayBuffer, 0, READ_BUFFER_SIZE));
}

/**
 * Makes `view` safe to keep past the read it came from: a view of a pooled buffer is held (and
 * must be released once), one of the shared buffer is copied; any other buffer is returned as
 * it is. Returns what to keep.
 */
export function keep(view: Buffer): Buffer {
  const ab = view.buffer;
  if (ab === SHARED.buffer) return Buffer.from(view);
  const n = holders.get(ab);
  if (n !== undefined) holders.set(ab, n + 1);
  return view;
}

/** Gives back what keep() held (nothing for a copy or a buffer that was never pooled). */
export function release(kept: Buffer): void {
  releaseBuffer(kept.buffer);
}

/**
 * Pooled buffers made, taken again from the free list, and released by their last holder; the
 * sockets now reading into one of their own, and the reads that would have but for the limit.
 */
export function readBufferStats(): {
  readonly allocated: number;
  readonly reused: number;
  readonly returned: number;
  readonly streamingSockets: number;
  readonly overLimit: number;
  readonly free: number;
} {
  return { ...stats, free: free.length };
}

/** Whether `view` lies in a pooled buffer now out of the free list (keep() holds such views). */
export function isPooled(view: Buffer): boolean {
  return holders.has(view.buffer);
}

/** Where a socket's reads go: each chunk is valid during the call only, unless kept. */
export interface ReadSink {
  received(chunk: Buffer): void;
}

const NO_SINK: ReadSink = { received() {} };

/**
 * One socket's reads: pass `options` as the socket's `onread` and set `sink` before data can
 * arrive. Kept small (an idle connection carries one): two closures net calls, no more.
 */
export class SocketReads {
  sink: ReadSink = NO_SINK;
  /** This socket's pooled buffer while it streams. */
  #pooled: Buffer | undefined;
  /** What net reads into next: SHARED, or the pooled buffer from where the last read ended. */
  #target: Buffer | undefined;
  #lastRead = 0;
  /** net's `onread.buffer`: the next read's target, asked for at connect and after every read. */
  readonly next = (): Buffer => this.#next();
  /** net's `onread.callback`: `n` octets were read into the target. */
  readonly read = (n: number): boolean => {
    this.#lastRead = n;
    this.sink.received((this.#target as Buffer).subarray(0, n)); // net read into what next() gave it
    return true;
  };

  /** The `onread` option of net.connect. */
  get options(): { buffer: () => Buffer; callback: (n: number) => boolean } {
    return { buffer: this.next, callback: this.read };
  }

  /** Whether the next read goes into a pooled buffer of this socket's own (it is streaming). */
  get streaming(): boolean {
    return this.#pooled !== undefined;
  }

  /** The socket is gone: its buffer goes back to the pool (unless a writer still holds it). */
  close(): void {
    this.sink = NO_SINK; // the socket's read callbacks no longer reach the connection
    this.#target = undefined;
    this.#letGo();
  }

  /** The next read's target: net asks once at connect and after every read. */
  #next(): Buffer {
    // A streaming socket's reads rarely fill its target (the kernel hands over what has
    // arrived), so it streams until a read would have fit the shared buffer; leaving on a read
    // that did not fill sent every other read of a stream through SHARED and its copies.
    const streaming = this.#lastRead >= SHARED_READ_SIZE;
    const pooled = this.#pooled;
    if (pooled !== undefined) {
      if (streaming) {
        // Nobody else holds what was read: all of it again. Otherwise the next read goes after
        // the last, while there is room for a read of net's own size: a buffer in flight then
        // carries several reads, not one, and fewer are needed (or made) while a stream backs up.
        if (holders.get(pooled.buffer) === 1) return (this.#target = pooled);
        const used = (this.#target as Buffer).byteOffset - pooled.byteOffset + this.#lastRead;
        if (pooled.length - used >= MIN_READ_ROOM) return (this.#target = pooled.subarray(used));
      }
      this.#letGo();
    }
    if (!streaming) return (this.#target = SHARED);
    if (stats.streamingSockets >= MAX_STREAMING_SOCKETS) {
      stats.overLimit++;
      return (this.#target = SHARED);
    }
    const fresh = take();
    this.#pooled = fresh;
    stats.streamingSockets++;
    return (this.#target = fresh);
  }

  /** This socket reads into its pooled buffer no more: the buffer goes back once unheld. */
  #letGo(): void {
    const pooled = this.#pooled;
    if (pooled === undefined) return;
    this.#pooled = undefined;
    stats.streamingSockets--;
    releaseBuffer(pooled.buffer);
  }
}

/** net's own fields for `onread`, found once on a socket made with it; null if this Node has none. */
let onreadFields: { buffer: symbol; callback: symbol; generator: symbol } | null | undefined;

function findOnreadFields(): typeof onreadFields {
  const probe = new net.Socket({ onread: { buffer: () => SHARED, callback: () => true } });
  const named = (description: string): symbol | undefined => Object.getOwnPropertySymbols(probe).find((s) => s.description === description);
  const buffer = named('kBuffer');
  const callback = named('kBufferCb');
  const generator = named('kBufferGen');
  probe.destroy();
  return buffer && callback && generator ? { buffer, callback, generator } : null;
}

/**
 * Turns an accepted plain TCP socket to reads through `reads`: net.Server offers no `onread`,
 * so this sets on the socket what net.connect would set for one and hands its handle the first
 * target. Done before the socket's first read (the h2c listener does it as it accepts). Returns false
 * (the socket reads as before) when this Node lacks those fields; a test checks it does not.
 */
export function readIntoReused(socket: net.Socket, reads: SocketReads): boolean {
  const named = (onreadFields ??= findOnreadFields());
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  if (named === null || named === undefined || typeof handle?.useUserBuffer !== 'function' || socket.destroyed) return false;
  const first = reads.next();
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[named.generator] = reads.next;
  fields[named.callback] = reads.read;
  fields[named.buffer] = first;
  handle.useUserBuffer(first);
  return true;
}
