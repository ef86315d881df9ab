// lib/h2's frame reader and writer: frames cut at every possible place between reads come out
// whole and in order, a frame inside one read is a view of it (no copy), one split over reads
// into a pooled buffer whose rest was read right after it is a view too, any other split one is
// gathered once; a frame over the size limit is refused from its header alone; and what the
// writer gathers in one turn reaches a real socket as the same bytes, in one write.
import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import net from 'node:net';
import { FRAME_HEADER_LENGTH } from '../../lib/h2/constants.ts';
import { FrameReader, type FrameSink } from '../../lib/h2/frame-reader.ts';
import { FrameWriter } from '../../lib/h2/frame-writer.ts';
import { isPooled, keep, readBufferStats, release, SHARED_READ_SIZE, SocketReads } from '../../lib/h2/read-buffers.ts';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 2000);

interface Seen {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

function collector(): { sink: FrameSink; frames: Seen[]; tooLarge: Array<[number, number, number]> } {
  const frames: Seen[] = [];
  const tooLarge: Array<[number, number, number]> = [];
  return {
    frames,
    tooLarge,
    sink: {
      onFrame: (type, flags, streamId, payload) => frames.push({ type, flags, streamId, payload }),
      onFrameTooLarge: (type, streamId, length) => tooLarge.push([type, streamId, length]),
    },
  };
}

function encode(f: { type: number; flags: number; streamId: number; payload: Buffer }): Buffer {
  const head = Buffer.alloc(FRAME_HEADER_LENGTH);
  head.writeUIntBE(f.payload.length, 0, 3);
  head[3] = f.type;
  head[4] = f.flags;
  head.writeUInt32BE(f.streamId, 5);
  return Buffer.concat([head, f.payload]);
}

const anyFrame = fc.record({
  type: fc.integer({ min: 0, max: 255 }),
  flags: fc.integer({ min: 0, max: 255 }),
  streamId: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  payload: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
});

t.test('frames cut anywhere between reads come out whole, in order', async (t) => {
  fc.assert(
    fc.property(fc.array(anyFrame, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, cuts) => {
      const bytes = Buffer.concat(frames.map(encode));
      const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
      const { sink, frames: seen } = collector();
      const reader = new FrameReader(sink);
      let from = 0;
      for (const p of [...points, bytes.length]) {
        reader.push(bytes.subarray(from, p));
        from = p;
      }
      const got = seen.map((f) => ({ ...f, payload: Buffer.from(f.payload) }));
      if (JSON.stringify(got) !== JSON.stringify(frames)) throw new Error(`got ${JSON.stringify(got).slice(0, 300)}`);
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} random frame sequences, randomly cut`);
});

t.test('one byte at a time, and every cut of two frames', async (t) => {
  const frames = [
    { type: 1, flags: 4, streamId: 1, payload: Buffer.from('header block') },
    { type: 0, flags: 1, streamId: 1, payload: Buffer.alloc(100, 7) },
  ];
  const bytes = Buffer.concat(frames.map(encode));
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { sink, frames: seen } = collector();
    const reader = new FrameReader(sink);
    reader.push(bytes.subarray(0, cut));
    reader.push(bytes.subarray(cut));
    t.same(seen, frames, `cut at ${cut}`);
  }
  const { sink, frames: seen } = collector();
  const reader = new FrameReader(sink);
  for (let i = 0; i < bytes.length; i++) reader.push(bytes.subarray(i, i + 1));
  t.same(seen, frames, 'a byte at a time');
});

t.test('a frame inside one read is a view of it; a split one is gathered once, at its own size', async (t) => {
  const frame = encode({ type: 0, flags: 0, streamId: 3, payload: Buffer.alloc(1000, 1) });
  const read = Buffer.concat([frame, frame.subarray(0, 500)]);
  const { sink, frames } = collector();
  const reader = new FrameReader(sink);
  reader.push(read);
  t.equal(frames.length, 1);
  t.equal(frames[0]?.payload.buffer, read.buffer, 'the whole frame is a view of the read');
  t.equal(frames[0]?.payload.byteOffset, read.byteOffset + FRAME_HEADER_LENGTH);
  reader.push(frame.subarray(500, 700));
  reader.push(frame.subarray(700));
  t.equal(frames.length, 2, 'the split frame came out once complete');
  t.equal(frames[1]?.payload.length, 1000);
  read.fill(0);
  t.ok(frames[1]?.payload.equals(Buffer.alloc(1000, 1)), 'gathered into a buffer of its own (the reads can be reused)');
});

/** Reads `bytes` through `reads` as net would: each read into the target next() gives, `sizes` long in turn. */
function readThrough(reads: SocketReads, bytes: Buffer, sizes: readonly number[]): void {
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const target = reads.next();
    const n = Math.min(target.length, Math.max(1, sizes[i % sizes.length] as number), bytes.length - at);
    bytes.copy(target, 0, at, at + n);
    at += n;
    reads.read(n);
  }
}

t.test('frames read through pooled buffers, cut anywhere, come out whole and stay intact while kept', async (t) => {
  const runs = Math.max(50, RUNS / 10);
  let views = 0;
  let frames = 0;
  fc.assert(
    fc.property(
      fc.array(fc.record({ length: fc.integer({ min: 0, max: 16384 }), seed: fc.nat(255) }), { minLength: 1, maxLength: 40 }),
      fc.array(fc.integer({ min: 1, max: 80_000 }), { minLength: 1, maxLength: 16 }),
      (specs, sizes) => {
        const sent = specs.map(({ length, seed }, i) => ({ type: 0, flags: 0, streamId: 2 * i + 1, payload: Buffer.alloc(length, seed) }));
        const kept: Buffer[] = [];
        const reader = new FrameReader({
          onFrame: (_type, _flags, _streamId, payload) => {
            if (isPooled(payload)) views++;
            kept.push(keep(payload)); // held as a writer or a queue would hold it
          },
          onFrameTooLarge: () => {
            throw new Error('no frame here is too large');
          },
        });
        const reads = new SocketReads();
        reads.sink = { received: (chunk) => reader.push(chunk) };
        readThrough(reads, Buffer.concat(sent.map(encode)), sizes);
        reads.close();
        frames += kept.length;
        // Compared only now: a later read into a buffer something still held would show here.
        const bad = kept.findIndex((k, i) => !k.equals((sent[i] as { payload: Buffer }).payload));
        for (const k of kept) release(k);
        if (kept.length !== sent.length || bad >= 0) throw new Error(`frame ${bad} of ${kept.length}/${sent.length} differs`);
      },
    ),
    { numRuns: runs },
  );
  t.ok(views > frames / 4, `${runs} runs: ${views} of ${frames} frames came out as views of pooled buffers`);
});

/** A frame reader fed by a socket's reads that is already streaming (its next read is pooled). */
function streamingReader(t: Test): { reads: SocketReads; frames: Seen[] } {
  const { sink, frames } = collector();
  const reader = new FrameReader(sink);
  const reads = new SocketReads();
  reads.sink = { received: (chunk) => reader.push(chunk) };
  t.teardown(() => {
    reads.close();
    reader.stop();
  });
  // A first read that fills the shared target makes the socket stream.
  const filler = encode({ type: 0, flags: 0, streamId: 1, payload: Buffer.alloc(SHARED_READ_SIZE - FRAME_HEADER_LENGTH, 9) });
  readThrough(reads, filler, [filler.length]);
  frames.length = 0;
  return { reads, frames };
}

t.test('a frame split over two reads into the same pooled buffer is one view of it; the hold ends with it', async (t) => {
  const first = encode({ type: 0, flags: 0, streamId: 1, payload: Buffer.alloc(16384, 1) });
  const split = encode({ type: 0, flags: 1, streamId: 1, payload: Buffer.alloc(16384, 2) });
  const { reads, frames } = streamingReader(t);
  // One read of a whole frame and the start of the next, then the rest of it.
  const bytes = Buffer.concat([first, split]);
  const cut = first.length + 5000;
  const before = readBufferStats();
  readThrough(reads, bytes, [cut, bytes.length - cut]);
  t.equal(frames.length, 2);
  const whole = frames[0]?.payload as Buffer;
  const joined = frames[1]?.payload as Buffer;
  t.ok(isPooled(whole), 'the frame inside the read is a view of the pooled buffer');
  t.equal(joined.buffer, whole.buffer, 'the split frame is a view of the same buffer: read on right after the first read');
  t.equal(joined.byteOffset, whole.byteOffset + whole.length + FRAME_HEADER_LENGTH);
  t.ok(joined.equals(Buffer.alloc(16384, 2)), 'its octets');
  const after = readBufferStats();
  t.equal(after.allocated + after.reused - (before.allocated + before.reused), 1, 'one pooled buffer taken for both reads');
  reads.close();
  t.notOk(isPooled(joined), 'with the socket gone and the frame handed on, nobody holds the buffer: back in the pool');
});

t.test('a split frame whose rest went to another buffer is gathered into its own; the first buffer is let go', async (t) => {
  const split = encode({ type: 0, flags: 0, streamId: 1, payload: Buffer.alloc(16384, 3) });
  const { reads, frames } = streamingReader(t);
  // A short read (under the shared size) sends the next read to the shared buffer: not next to it.
  readThrough(reads, split, [1000, split.length - 1000]);
  t.equal(frames.length, 1);
  const gathered = frames[0]?.payload as Buffer;
  t.notOk(isPooled(gathered), 'gathered into a buffer of its own');
  t.ok(gathered.equals(Buffer.alloc(16384, 3)), 'its octets');
  t.notOk(reads.streaming, 'the socket went quiet and its pooled buffer back to the pool');
});

t.test('a frame over the limit is refused from its header; nothing after it is parsed', async (t) => {
  const { sink, frames, tooLarge } = collector();
  const reader = new FrameReader(sink);
  const huge = Buffer.from([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
  reader.push(Buffer.concat([encode({ type: 6, flags: 0, streamId: 0, payload: Buffer.alloc(8) }), huge.subarray(0, 4)]));
  reader.push(Buffer.concat([huge.subarray(4), encode({ type: 6, flags: 0, streamId: 0, payload: Buffer.alloc(8) })]));
  t.equal(frames.length, 1, 'the frame before it was read');
  t.same(tooLarge, [[0, 1, 0xffffff]], 'the 16 MiB announcement was refused from its split header');
  t.equal(reader.stopped, true);
  reader.push(encode({ type: 6, flags: 0, streamId: 0, payload: Buffer.alloc(8) }));
  t.equal(frames.length, 1, 'nothing more is parsed');
  const r2 = collector();
  const reader2 = new FrameReader(r2.sink);
  reader2.maxFrameSize = 100;
  reader2.push(encode({ type: 0, flags: 0, streamId: 1, payload: Buffer.alloc(101) }));
  t.same(r2.tooLarge, [[0, 1, 101]], 'the advertised limit is the one applied');
});

t.test('the writer: one turn, one write, the same bytes on a real socket', async (t) => {
  const received: Buffer[] = [];
  const server = net.createServer((s) => s.on('data', (c: Buffer) => received.push(c)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  socket.on('error', () => {});
  t.teardown(() => socket.destroy());
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const writes: number[] = [];
  const write = socket.write.bind(socket);
  const uncork = socket.uncork.bind(socket);
  let corked = 0;
  socket.cork = ((orig) => () => {
    corked++;
    orig();
  })(socket.cork.bind(socket));
  socket.uncork = () => {
    writes.push(corked);
    uncork();
  };
  socket.write = ((chunk: Buffer) => write(chunk)) as typeof socket.write;

  const big = Buffer.alloc(5000, 9);
  const frames = [
    { type: 1, flags: 4, streamId: 1, payload: Buffer.from('headers') },
    { type: 0, flags: 0, streamId: 1, payload: big },
    { type: 0, flags: 1, streamId: 1, payload: Buffer.from('small') },
    { type: 6, flags: 1, streamId: 0, payload: Buffer.alloc(8, 2) },
  ];
  const writer = new FrameWriter(socket);
  const other = new FrameWriter(socket);
  for (const [i, f] of frames.entries()) {
    writer.frame(f.type, f.flags, f.streamId, f.payload);
    if (i === 0) other.frame(8, 0, 0, Buffer.from([0, 0, 0, 1])); // another connection writing in between
  }
  t.ok(writer.pendingBytes >= frames.reduce((n, f) => n + 9 + f.payload.length, 0), `pendingBytes counts this turn (${writer.pendingBytes})`);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(writes, [1], 'the turn went out as one corked write (header + small payloads copied, the large payload as it is)');
  const expected = Buffer.concat([...frames.map(encode), encode({ type: 8, flags: 0, streamId: 0, payload: Buffer.from([0, 0, 0, 1]) })]);
  const until = Date.now() + 10_000;
  while (Buffer.concat(received).length < expected.length && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 5));
  // This writer's turn was scheduled first, so it is sent first; the other writer's frame,
  // written into the shared slab in between, did not end up inside this writer's run.
  t.ok(Buffer.concat(received).equals(expected), 'the frames arrived intact and in order, then the other writer\'s');
});
