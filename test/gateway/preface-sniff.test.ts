// The h2c listener's preface check hands a connection over with every byte it read: sockets
// that read into reused buffers (the default) pass the bytes to the connection's reads, and
// sockets that read as Node does (a Node without net's onread fields, or
// readIntoReusedBuffers: false) put them back with unshift. Both paths, over real sockets, with
// the preface cut across writes; and an HTTP/1.1 request is answered on both.
import t from 'tap';
import type { Test } from 'tap';
import net from 'node:net';
import { defaultClientTuning, listenH2c } from '../../lib/gateway/listeners.ts';
import type { SocketReads } from '../../lib/h2/read-buffers.ts';
import { waitFor } from '../helpers/wait.ts';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

interface Accepted {
  readonly reads: SocketReads | undefined;
  readonly bytes: Buffer[];
}

async function listener(t: Test, reuse: boolean): Promise<{ port: number; accepted: Accepted[] }> {
  const accepted: Accepted[] = [];
  const server = await listenH2c(
    (socket, reads) => {
      const got: Accepted = { reads, bytes: [] };
      accepted.push(got);
      // As the h2 connection does: take the reads (or 'data') at once, in the accept call.
      if (reads !== undefined) reads.sink = { received: (chunk) => got.bytes.push(Buffer.from(chunk)) };
      else socket.on('data', (chunk: Buffer) => got.bytes.push(chunk));
      socket.resume();
      t.teardown(() => socket.destroy());
    },
    { ...defaultClientTuning, maxConnectionsPerIp: 0, readIntoReusedBuffers: reuse },
    { host: '127.0.0.1', port: 0, text: '127.0.0.1:0' },
  );
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as net.AddressInfo).port, accepted };
}

async function connect(t: Test, port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  t.teardown(() => socket.destroy());
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return socket;
}

for (const reuse of [true, false]) {
  const how = reuse ? 'reused buffers' : "Node's own reads";
  t.test(`${how}: a preface cut across writes is handed over with what follows, byte for byte`, async (t) => {
    const { port, accepted } = await listener(t, reuse);
    const socket = await connect(t, port);
    const after = Buffer.alloc(40_000, 7); // more than the shared read buffer after the preface
    // Each piece is sent before the next is written (usually a read of its own; the check
    // below holds however the reads fall).
    const send = (b: Buffer): Promise<void> => new Promise((resolve) => socket.write(b, () => resolve()));
    await send(PREFACE.subarray(0, 5));
    await send(PREFACE.subarray(5, 20));
    await send(Buffer.concat([PREFACE.subarray(20), after.subarray(0, 9)]));
    await send(after.subarray(9));
    const expected = Buffer.concat([PREFACE, after]);
    await waitFor(() => accepted.length === 1 && Buffer.concat(accepted[0]?.bytes ?? []).length >= expected.length, 5000, 'the bytes after the handover');
    const got = accepted[0] as Accepted;
    t.equal(got.reads !== undefined, reuse, reuse ? 'handed over with its reads' : 'handed over without reads: it reads through data events');
    t.ok(Buffer.concat(got.bytes).equals(expected), 'the preface and everything after it, once, in order');
  });

  t.test(`${how}: an HTTP/1.1 request is answered and never handed over`, async (t) => {
    const { port, accepted } = await listener(t, reuse);
    const socket = await connect(t, port);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await ended;
    t.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 505 /, 'the HTTP/1.1 answer');
    t.equal(accepted.length, 0);
  });
}
