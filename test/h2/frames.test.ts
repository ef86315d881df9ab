// lib/h2's frame reader and writer: frames cut at every possible place between reads come out
// whole and in order, a frame inside one read is a view of it (no copy) and one split over reads
// is gathered once; a frame over the size limit is refused from its header alone; and what the
// writer gathers in one turn reaches a real socket as the same bytes, in one write.
import t from 'tap';
import fc from 'fast-check';
import net from 'node:net';
import { FRAME_HEADER_LENGTH } from '../../lib/h2/constants.ts';
import { FrameReader, type FrameSink } from '../../lib/h2/frame-reader.ts';
import { FrameWriter } from '../../lib/h2/frame-writer.ts';

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
