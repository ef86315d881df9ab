// What lib/h2 costs per request against node:http2, with nothing else around them: one server
// of each kind answers every request the way a gRPC function does (200, a short body,
// trailers), pinned to one core, loaded by h2load from the other. Prints the server's address;
// read its CPU time from /proc before and after the load (docs/performance.md, "lib/h2"):
//
//   taskset -c 0 node bench/tools/h2-server-probe.ts lib > addr &   # or: node
//   taskset -c 1 h2load -n 200000 -c 10 -m 10 http://$(cat addr)/x
import http2 from 'node:http2';
import net from 'node:net';
import { DEFAULT_LIMITS, newCounters } from '../../lib/h2/limits.ts';
import { ServerConnection } from '../../lib/h2/server-connection.ts';
import type { H2Stream, StreamHandler } from '../../lib/h2/stream.ts';

const BODY = Buffer.from('hello from the probe\n');
const RESPONSE = [':status', '200', 'content-type', 'application/grpc'];
const TRAILERS = ['grpc-status', '0'];

function answer(stream: H2Stream): void {
  stream.writeHeaders(RESPONSE, false);
  stream.writeData(BODY);
  stream.writeTrailers(TRAILERS);
}

const handler: StreamHandler = {
  onHeaders: (stream) => answer(stream),
  onData(stream, data, endStream) {
    stream.consume(data.length);
    if (endStream) answer(stream);
  },
  onClose() {},
  onWritable() {},
};

const kind = process.argv[2];
let server: net.Server;
if (kind === 'lib') {
  const counters = newCounters();
  server = net.createServer((socket) => {
    socket.setNoDelay(true);
    new ServerConnection(socket, DEFAULT_LIMITS, counters, {
      onStream(stream, _fields, endStream) {
        stream.handler = handler;
        if (endStream) answer(stream);
      },
      onGoaway() {},
      onClose() {},
      onInternalError(where, err) {
        console.error(where, err);
      },
      onStreamCountChanged() {},
    });
  });
} else if (kind === 'node') {
  const h2 = http2.createServer();
  h2.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(BODY);
    });
  });
  server = h2;
} else {
  throw new Error('usage: h2-server-probe.ts lib|node');
}
server.listen(0, '127.0.0.1', () => console.log(`127.0.0.1:${(server.address() as net.AddressInfo).port}`));
