// Reads into reused buffers over a real socket: what a reader keeps stays intact however many
// reads follow (a view of a pooled buffer is held, one of the shared buffer copied), a streaming
// socket recycles its buffers once their holders let go, and a socket that goes quiet gives its
// buffer back. Any overwrite of kept bytes shows as a mismatch against what the peer sent.
import t from 'tap';
import type { Test } from 'tap';
import net from 'node:net';
import { isPooled, keep, MAX_STREAMING_SOCKETS, READ_BUFFER_SIZE, readBufferStats, readIntoReused, release, SHARED_READ_SIZE, SocketReads } from '../../lib/h2/read-buffers.ts';
import { waitFor } from '../helpers/wait.ts';

/** Bytes that differ at every offset of a long run (a counter, not a repeating short pattern). */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 4) b.writeUInt32BE((i * 2654435761 + seed) >>> 0, i);
  return b;
}

interface Pair {
  readonly reads: SocketReads;
  readonly client: net.Socket;
  readonly peer: Promise<net.Socket>;
  close(): void;
}

async function pair(t: Test, sink: (chunk: Buffer) => void): Promise<Pair> {
  let accepted!: (s: net.Socket) => void;
  const peer = new Promise<net.Socket>((resolve) => (accepted = resolve));
  const server = net.createServer((s) => accepted(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const reads = new SocketReads();
  reads.sink = { received: sink };
  const client = net.connect({ host: '127.0.0.1', port, onread: reads.options });
  const close = (): void => {
    client.destroy();
    void peer.then((s) => s.destroy());
    server.close();
    reads.close();
  };
  t.teardown(close);
  return { reads, client, peer, close };
}

t.test('every chunk kept across 32 MiB of reads is what was sent', async (t) => {
  const sent = Buffer.concat(Array.from({ length: 32 }, (_, i) => pattern(1 << 20, i)));
  const kept: Buffer[] = [];
  let pooledViews = 0;
  let received = 0;
  const p = await pair(t, (chunk) => {
    if (isPooled(chunk)) pooledViews++;
    kept.push(keep(chunk));
    received += chunk.length;
  });
  (await p.peer).end(sent);
  await waitFor(() => received === sent.length, 10_000, 'all bytes read');
  t.ok(pooledViews > 0, `a streaming socket read into pooled buffers (${pooledViews} of ${kept.length} reads)`);
  t.ok(Buffer.concat(kept).equals(sent), 'the kept chunks are the bytes sent, in order (none overwritten by a later read)');
  for (const k of kept) release(k);
});

t.test('released buffers are read into again; held ones are not', async (t) => {
  const before = readBufferStats();
  const held: Buffer[] = [];
  const copies: Buffer[] = [];
  let received = 0;
  let reads = 0;
  const p = await pair(t, (chunk) => {
    reads++;
    received += chunk.length;
    // Hold every other read until the end; let the others go at once.
    if (reads % 2 === 0) {
      held.push(keep(chunk));
      copies.push(Buffer.from(chunk));
    }
  });
  const peer = await p.peer;
  const total = 64 * READ_BUFFER_SIZE;
  peer.end(pattern(total, 7));
  await waitFor(() => received === total, 10_000, 'all bytes read');
  t.equal(held.filter((h, i) => !h.equals(copies[i] as Buffer)).length, 0, `all ${held.length} held reads are intact`);
  const pooledHeld = held.filter((h) => isPooled(h)).length;
  for (const h of held) release(h);
  p.close();
  t.ok(pooledHeld > 0, `some held reads were views of pooled buffers (${pooledHeld})`);
  const after = readBufferStats();
  t.ok(after.reused > before.reused, `buffers let go of were read into again (${after.reused - before.reused} reuses, ${after.allocated - before.allocated} allocations for ${reads} reads)`);
});

t.test('a socket that goes quiet reads into the shared buffer and holds no buffer of its own', async (t) => {
  const chunks: Buffer[] = [];
  let received = 0;
  let pooledReads = 0;
  const p = await pair(t, (chunk) => {
    if (isPooled(chunk)) pooledReads++;
    chunks.push(chunk);
    received += chunk.length;
  });
  const peer = await p.peer;
  const burst = 4 * READ_BUFFER_SIZE;
  peer.write(pattern(burst, 1));
  await waitFor(() => received === burst, 5000, 'the burst read');
  // One small write: read into what the last read chose, then the socket is quiet.
  peer.write(Buffer.from('ping'));
  await waitFor(() => received === burst + 4, 5000, 'the small write read');
  peer.write(Buffer.from('pong'));
  await waitFor(() => received === burst + 8, 5000, 'the second small write read');
  const last = chunks[chunks.length - 1] as Buffer;
  t.equal(last.toString(), 'pong');
  t.notOk(isPooled(last), 'a quiet socket reads into the shared buffer, not a pooled one');
  t.equal(last.buffer.byteLength, SHARED_READ_SIZE, 'the shared buffer');
  t.ok(pooledReads > 0, `the burst was read into pooled buffers (${pooledReads} reads)`);
  t.notOk(p.reads.streaming, 'the quiet socket holds no pooled buffer');
  const copy = keep(last);
  t.not(copy.buffer, last.buffer, 'keeping a view of the shared buffer copies it');
  t.equal(copy.toString(), 'pong');
});

t.test('an accepted socket turned as it is accepted reads everything through reused buffers', async (t) => {
  const reads = new SocketReads();
  const viaData: Buffer[] = [];
  const viaReads: Buffer[] = [];
  let pooledReads = 0;
  let turned: boolean | undefined;
  let accepted!: (s: net.Socket) => void;
  const serverSide = new Promise<net.Socket>((resolve) => (accepted = resolve));
  // As the h2c listener does: turned in the connection callback, before any read.
  const server = net.createServer((s) => {
    turned = readIntoReused(s, reads);
    s.on('data', (chunk: Buffer) => viaData.push(chunk));
    reads.sink = {
      received(chunk) {
        if (isPooled(chunk)) pooledReads++;
        viaReads.push(keep(chunk));
      },
    };
    accepted(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const socket = await serverSide;
  t.teardown(() => {
    client.destroy();
    socket.destroy();
    server.close();
    reads.close();
  });
  t.equal(turned, true, 'this Node lets an accepted socket read into reused buffers');
  const first = Buffer.from('first');
  client.write(first);
  await waitFor(() => viaReads.length > 0, 5000, 'the first bytes read');
  t.notOk(isPooled(viaReads[0] as Buffer), 'a first small read goes to the shared buffer (kept as a copy)');
  const rest = pattern(8 * READ_BUFFER_SIZE, 3);
  client.end(rest);
  const all = Buffer.concat([first, rest]);
  await waitFor(() => viaReads.reduce((n, c) => n + c.length, 0) === all.length, 5000, 'everything read through the reused buffers');
  t.equal(viaData.length, 0, "nothing came as 'data'");
  t.ok(Buffer.concat(viaReads).equals(all), 'intact and in order');
  t.ok(pooledReads > 0, `streaming, it read into pooled buffers (${pooledReads} reads)`);
  for (const c of viaReads) release(c);
});

t.test('at most MAX_STREAMING_SOCKETS sockets hold a pooled buffer: one 16 KiB read then quiet pins no more', async (t) => {
  // As a client that sends 16 KiB and goes quiet: each such socket would keep a 256 KiB target.
  const bigRead = (reads: SocketReads): Buffer => {
    const target = reads.next();
    target.fill(1, 0, SHARED_READ_SIZE);
    reads.read(SHARED_READ_SIZE);
    return reads.next();
  };
  const base = readBufferStats();
  const sockets = Array.from({ length: MAX_STREAMING_SOCKETS - base.streamingSockets + 5 }, () => new SocketReads());
  t.teardown(() => sockets.forEach((r) => r.close()));
  for (const r of sockets) r.sink = { received() {} };
  const targets = sockets.map(bigRead);
  const pooled = sockets.filter((r) => r.streaming).length;
  t.equal(readBufferStats().streamingSockets, MAX_STREAMING_SOCKETS, 'the limit is reached');
  t.equal(pooled, MAX_STREAMING_SOCKETS - base.streamingSockets, 'sockets up to the limit read into pooled buffers of their own');
  const past = sockets.slice(pooled);
  t.ok(past.every((r) => !r.streaming), 'the sockets past it do not');
  t.ok(targets.slice(pooled).every((b) => b.buffer.byteLength === SHARED_READ_SIZE), 'they read into the shared buffer');
  t.equal(readBufferStats().overLimit - base.overLimit, past.length, 'each counted');
  // One lets go (its socket closes): the next socket that reads big takes the freed place.
  (sockets[0] as SocketReads).close();
  t.equal(readBufferStats().streamingSockets, MAX_STREAMING_SOCKETS - 1);
  bigRead(past[0] as SocketReads);
  t.ok(past[0]?.streaming, 'a socket past the limit streams once a place is free');
  for (const r of sockets) r.close();
  t.equal(readBufferStats().streamingSockets, base.streamingSockets, 'every place given back');
});
