// A small HTTP/2 server on lib/h2's ServerConnection, over TCP or TLS (ALPN h2), for lib/h2's
// own conformance and peer tests: every request is read to its end (its DATA consumed) and then
// answered 200 with a short body and trailers. It counts what the protections cut.
import net from 'node:net';
import tls from 'node:tls';
import { ServerConnection } from '../../../lib/h2/server-connection.ts';
import { DEFAULT_LIMITS, newCounters, type H2Counters, type H2Limits } from '../../../lib/h2/limits.ts';
import type { H2Stream, StreamHandler } from '../../../lib/h2/stream.ts';

export interface TestH2Server {
  readonly address: string;
  readonly counters: H2Counters;
  /** Requests answered, and every request's fields and body as received. */
  readonly requests: Array<{ fields: string[]; body: Buffer; trailers: string[] | undefined }>;
  readonly connections: Set<ServerConnection>;
  readonly internalErrors: unknown[];
  close(): Promise<void>;
}

const BODY = Buffer.from('hello from lib/h2\n');

export async function startH2Server(opts: { tls?: { cert: Buffer; key: Buffer }; limits?: Partial<H2Limits> } = {}): Promise<TestH2Server> {
  const counters = newCounters();
  const limits: H2Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const requests: TestH2Server['requests'] = [];
  const connections = new Set<ServerConnection>();
  const internalErrors: unknown[] = [];
  const handler: StreamHandler = {
    onHeaders(stream, fields) {
      (stream.context as Request).trailers = fields;
      answer(stream);
    },
    onData(stream, data, endStream) {
      (stream.context as Request).chunks.push(Buffer.from(data));
      stream.consume(data.length);
      if (endStream) answer(stream);
    },
    onClose() {},
    onWritable() {},
  };
  interface Request {
    fields: string[];
    chunks: Buffer[];
    trailers: string[] | undefined;
  }
  const answer = (stream: H2Stream): void => {
    const req = stream.context as Request;
    requests.push({ fields: req.fields, body: Buffer.concat(req.chunks), trailers: req.trailers });
    stream.writeHeaders([':status', '200', 'content-type', 'text/plain'], false);
    stream.writeData(BODY);
    stream.writeTrailers(['x-trailer', 'done']);
  };
  const onSocket = (socket: net.Socket): void => {
    socket.setNoDelay(true);
    const connection = new ServerConnection(socket, limits, counters, {
      onStream(stream, fields, endStream) {
        stream.handler = handler;
        stream.context = { fields, chunks: [], trailers: undefined } satisfies Request;
        if (endStream) answer(stream);
      },
      onGoaway() {},
      onClose() {
        connections.delete(connection);
      },
      onInternalError(_where, err) {
        internalErrors.push(err);
      },
      onStreamCountChanged() {},
    });
    connections.add(connection);
  };
  const server = opts.tls
    ? tls.createServer({ cert: opts.tls.cert, key: opts.tls.key, ALPNProtocols: ['h2'] }, onSocket)
    : net.createServer(onSocket);
  if (opts.tls) server.on('tlsClientError', (_err, socket) => socket.destroy());
  // Every TCP socket, h2 or not yet (a TLS handshake in progress), so close() can end them all.
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return {
    address,
    counters,
    requests,
    connections,
    internalErrors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.destroy();
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
