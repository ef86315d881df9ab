// The Node floor: a bare node:http2 gRPC pass-through with none of fngate's work (no auth,
// routing, sessions ids, metrics, deadlines). Like fngate it gives each client connection its
// own upstream connection, forwards headers, body (with backpressure) and trailers, and maps
// nothing. `make bench` runs it as "node-bare" when BENCH_PROXIES names it: the distance from
// fngate to it is what fngate's own features cost; the distance from it to the native
// proxies is Node's.
//
//   node bench/tools/node-bare-proxy.ts LISTEN_PORT BACKEND_HOST:PORT [objects|raw]
//
// "raw" passes Node 24's flat header arrays ([name, value, ...]) instead of header objects
// to request() and respond() (sendTrailers() takes objects only).
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';

const [portArg, backend, mode = 'objects'] = process.argv.slice(2);
if (!portArg || !backend || (mode !== 'objects' && mode !== 'raw')) {
  process.stderr.write('usage: node-bare-proxy.ts LISTEN_PORT BACKEND_HOST:PORT [objects|raw]\n');
  process.exit(2);
}
const raw = mode === 'raw';
const settings = { initialWindowSize: 1 << 20, maxConcurrentStreams: 1000 };
const skip = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);
const kUpstream = Symbol('upstream');

const server = http2.createServer({ settings, maxSessionMemory: 64 });
server.on('session', (session) => {
  if (!session.destroyed) session.setLocalWindowSize(8 << 20);
  session.on('error', () => {});
  session.once('close', () => (session as unknown as Record<symbol, ClientHttp2Session | undefined>)[kUpstream]?.close());
});
server.on('stream', (client: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
  const owner = client.session as unknown as Record<symbol, ClientHttp2Session | undefined>;
  let up = owner[kUpstream];
  if (!up || up.closed || up.destroyed) {
    up = http2.connect(`http://${backend}`, { settings: { enablePush: false, initialWindowSize: 1 << 20 }, maxSessionMemory: 64 });
    up.on('error', () => {});
    const u = up;
    up.once('connect', () => u.setLocalWindowSize(8 << 20));
    owner[kUpstream] = up;
  }
  client.on('error', () => {});
  let upstream: ClientHttp2Stream;
  if (raw) {
    const out: string[] = [];
    for (let i = 0; i < rawHeaders.length; i += 2) {
      if (!skip.has(rawHeaders[i] as string)) out.push(rawHeaders[i] as string, rawHeaders[i + 1] as string);
    }
    upstream = up.request(out as unknown as http2.OutgoingHttpHeaders, { endStream: false });
  } else {
    const out: http2.OutgoingHttpHeaders = {};
    for (const name in headers) if (!skip.has(name)) out[name] = headers[name];
    upstream = up.request(out, { endStream: false });
  }
  let trailers: http2.OutgoingHttpHeaders | undefined;
  client.on('data', (chunk: Buffer) => {
    if (!upstream.write(chunk)) client.pause();
  });
  upstream.on('drain', () => client.resume());
  client.on('end', () => upstream.end());
  client.on('close', () => {
    if (!upstream.closed) upstream.close(http2.constants.NGHTTP2_CANCEL);
  });
  upstream.on('error', () => {});
  upstream.on('response', (h: IncomingHttpHeaders, flags: number, rawH: string[]) => {
    if (client.closed) return;
    const end = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    client.respond(raw ? (rawH as unknown as http2.OutgoingHttpHeaders) : h, end ? { endStream: true } : { waitForTrailers: true });
  });
  upstream.on('data', (chunk: Buffer) => {
    if (!client.closed && !client.write(chunk)) upstream.pause();
  });
  client.on('drain', () => upstream.resume());
  // sendTrailers() takes an object only, in either mode.
  upstream.on('trailers', (t: IncomingHttpHeaders) => {
    trailers = t;
  });
  client.on('wantTrailers', () => client.sendTrailers(trailers ?? { 'grpc-status': '13', 'grpc-message': 'no trailers' }));
  upstream.on('end', () => {
    if (!client.closed) client.end();
  });
  upstream.on('close', () => {
    if (!client.closed && !client.headersSent) client.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14' }, { endStream: true });
    else if (!client.closed && !trailers) client.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
});
server.listen(Number(portArg), '127.0.0.1', () => process.stderr.write(`node-bare-proxy (${mode}) listening\n`));
process.once('SIGTERM', () => process.exit(0));
