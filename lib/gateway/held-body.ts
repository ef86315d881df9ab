// A request whose forwarding waits (its token being verified, its session waiting for room):
// what the client sends meanwhile is kept unconsumed, so the stream's receive window bounds
// it, and handed to the call in order once it is forwarded.
import { keep, release } from '../h2/read-buffers.ts';
import type { H2Stream, StreamHandler } from '../h2/stream.ts';

const EMPTY = Buffer.alloc(0);

export class HeldBody implements StreamHandler {
  readonly #chunks: Buffer[] = [];
  #end: boolean;
  /** The stream closed (a cancel, the connection going) while held. */
  onClosed: (() => void) | undefined;

  constructor(stream: H2Stream, endStream: boolean) {
    this.#end = endStream;
    stream.handler = this;
  }

  onData(_stream: H2Stream, data: Buffer, endStream: boolean): void {
    // It outlives the read it came in (a buffer that is read into again).
    this.#chunks.push(keep(data));
    this.#end ||= endStream;
  }

  onHeaders(_stream: H2Stream, _fields: string[], endStream: boolean): void {
    this.#end ||= endStream;
  }

  onClose(): void {
    this.onClosed?.();
  }

  onWritable(): void {}

  /** The call's handler is in place now: hand it what came, in order, then the end. */
  replay(target: H2Stream): void {
    const chunks = this.#chunks;
    const end = this.#end;
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i] as Buffer;
      target.handler.onData(target, chunk, end && i === chunks.length - 1);
      release(chunk); // whoever needs it longer kept it in onData
    }
    if (end && chunks.length === 0) target.handler.onData(target, EMPTY, true);
    chunks.length = 0;
  }
}
