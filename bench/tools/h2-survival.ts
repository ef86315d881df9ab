// The smallest node:http2 programs that show why fngate's p99 follows scavenge pauses: each
// side of one unary gRPC call, on its own, with none of fngate's code. Run either under
// --trace-gc-nvp and read `new_space_survived` against `allocated` on the `gc=s` lines once
// the load is steady (docs/performance.md, "p99 at a fixed rate"):
//
//   fngate-benchkit backend -listen 127.0.0.1:18200 &
//   node --trace-gc-nvp bench/tools/h2-survival.ts client 127.0.0.1:18200   # request() side
//   node --trace-gc-nvp bench/tools/h2-survival.ts server 18100             # 'stream' side, load it
//                                                                           # with ghz (bench/README.md)
//
// "client" sends 2 unary calls per millisecond (about 2000 a second, at most 2 in flight) for
// 10 s and exits; "server" answers every call with grpc-status 0 and no message.
import http2 from 'node:http2';

const [mode, where] = process.argv.slice(2);
const CALLS = 20_000;
// A 5-byte gRPC frame header and a 34-byte fngate.bench.Payload, as the bench's unary call.
const BODY = Buffer.concat([Buffer.from([0, 0, 0, 0, 34, 10, 32]), Buffer.from('abcdefghijklmnopqrstuvwxyzabcdef')]);

if (mode === 'client' && where) {
  const session = http2.connect(`http://${where}`);
  session.on('error', (err) => {
    process.stderr.write(`h2-survival: ${err.message}\n`);
    process.exit(1);
  });
  const headers = { ':method': 'POST', ':path': '/fngate.bench.Bench/Unary', 'content-type': 'application/grpc', te: 'trailers' };
  let started = 0;
  let closed = 0;
  const call = (): void => {
    started++;
    const req = session.request(headers);
    req.on('data', () => {});
    req.on('error', () => {});
    req.on('close', () => {
      if (++closed === CALLS) session.close();
    });
    req.end(BODY);
  };
  const tick = setInterval(() => {
    call();
    call();
    if (started >= CALLS) clearInterval(tick);
  }, 1);
} else if (mode === 'server' && where) {
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '0' }, { endStream: true });
    stream.resume();
  });
  server.listen(Number(where), '127.0.0.1');
  process.once('SIGTERM', () => process.exit(0));
} else {
  process.stderr.write('usage: h2-survival.ts client HOST:PORT | server PORT\n');
  process.exit(2);
}
