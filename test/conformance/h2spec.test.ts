// HTTP/2 conformance: h2spec's generic and http2 sections against fngate's h2c and
// TLS listeners, each compared with bare node:http2 servers (the baselines) over the same
// transport. fngate's HTTP/2 framing is node:http2's (nghttp2), so a case a bare server fails
// as well is Node's, not fngate's; only cases fngate fails and every baseline passes count.
//
// h2spec sends plain GET requests without gRPC metadata: fngate answers them at once with 415
// (a gRPC request would get a trailers-only error), which is all the frame-level cases need.
// Two baselines, because how a bare Node server answers changes which cases it fails:
//   grpc-ish    200 application/grpc, one empty message, then trailers grpc-status 0 (the
//               trailers need a round trip through JS, so the stream stays open a moment)
//   immediate   what fngate answers h2spec: 415 text/plain with a body, ended at once. Over
//               TLS, h2spec's frame after END_STREAM then arrives in a later read, after the
//               stream closed, and nghttp2 keeps no state of closed streams: it ignores the
//               frame instead of answering STREAM_CLOSED (http2/5.1/5, 5.1/6, 6.1/2).
// Binary: `make conformance-tools` (make/conformance.mk).
import t from 'tap';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import type net from 'node:net';
import { join } from 'node:path';
import { closeServer } from '../helpers/backend.ts';
import { makeTlsCert, randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { startTlsGateway } from '../helpers/gateway.ts';
import { describe, runH2spec, type H2specRun } from '../helpers/h2spec.ts';

const SECTIONS = ['generic', 'http2'];

// --- the baselines: bare node:http2 servers ------------------------------------------------

type Style = 'grpc-ish' | 'immediate';
const EMPTY_GRPC_MESSAGE = Buffer.alloc(5); // uncompressed, length 0

function answer(style: Style): (stream: http2.ServerHttp2Stream) => void {
  return (stream) => {
    stream.on('error', () => {}); // resets are what h2spec is about
    stream.resume(); // read and drop the request body
    if (stream.destroyed || stream.closed) return;
    if (style === 'immediate') {
      stream.respond({ ':status': 415, 'content-type': 'text/plain; charset=utf-8' });
      stream.end('baseline: expected content-type application/grpc\n');
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(EMPTY_GRPC_MESSAGE);
  };
}

async function listen(server: net.Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

const dir = t.testdir({});
const cert = makeTlsCert(join(dir, 'tls'));

/** A bare server answering in `style`, on 127.0.0.1:0. close() cuts its sessions too. */
async function startBaseline(style: Style, useTls: boolean): Promise<{ address: string; close: () => Promise<void> }> {
  const server = useTls
    ? http2.createSecureServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key), allowHTTP1: false })
    : http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('stream', answer(style));
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.on('error', () => {});
    session.once('close', () => sessions.delete(session));
  });
  server.on('sessionError', () => {});
  if (useTls) server.on('tlsClientError', () => {});
  const address = await listen(server);
  const close = (): Promise<void> => closeServer(server, sessions);
  return { address, close };
}

// --- fngate --------------------------------------------------------------------------------

const FN = 'h2spec';
writeFunctionsDir(join(dir, 'fns'), [{ name: 'h2spec', functionId: FN, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: ['127.0.0.1:9'] }] }]);
writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'h2spec', key: randomKey(), functions: [FN] }]);
const gw = await startTlsGateway(t, dir, cert);

const LISTENERS = [
  { name: 'h2c', useTls: false, fngate: gw.h2c },
  { name: 'TLS', useTls: true, fngate: gw.tls },
] as const;
const STYLES: Style[] = ['grpc-ish', 'immediate'];

// Every run first, then the judgement: a case a bare server fails over EITHER transport is
// Node's. nghttp2 frames both listeners the same way; whether a frame after END_STREAM lands
// before or after the stream closed (5.1/5, 5.1/6, 6.1/2) depends on read timing, which
// differs by transport and by machine load, not on fngate.
const runs: Array<{ listener: (typeof LISTENERS)[number]; fngate: H2specRun; baselines: H2specRun[] }> = [];
for (const listener of LISTENERS) {
  const bareServers = await Promise.all(STYLES.map((style) => startBaseline(style, listener.useTls)));
  try {
    // All runs at once: they share nothing, and h2spec mostly waits (--timeout 2 per case).
    const [fngate, ...baselines] = await Promise.all([
      runH2spec(listener.fngate, listener.useTls, join(dir, `fngate-${listener.name}.xml`), SECTIONS),
      ...bareServers.map((b, i) => runH2spec(b.address, listener.useTls, join(dir, `baseline-${STYLES[i]}-${listener.name}.xml`), SECTIONS)),
    ]);
    runs.push({ listener, fngate: fngate as H2specRun, baselines });
  } finally {
    await Promise.all(bareServers.map((b) => b.close()));
  }
}

/** Node-owned: cases some bare server fails, with the style and transport that fail each. */
const nodeOwned = new Map<string, string[]>();
for (const { listener, baselines } of runs) {
  baselines.forEach((baseline, i) => {
    for (const c of baseline.failed.values()) {
      nodeOwned.set(c.id, [...(nodeOwned.get(c.id) ?? []), `${STYLES[i] ?? 'grpc-ish'} over ${listener.name}`]);
    }
  });
}

for (const { listener, fngate, baselines } of runs) {
  t.test(`h2spec ${SECTIONS.join(' + ')} against fngate's ${listener.name} listener`, async (t) => {
    baselines.forEach((baseline, i) => {
      const style = STYLES[i] ?? 'grpc-ish';
      const failures = [...baseline.failed.values()];
      t.comment(
        `bare node:http2 server, ${style} answers (${listener.name}): ${failures.length} of ${baseline.cases.length} cases fail` +
          (failures.length === 0 ? '' : `:\n${failures.map(describe).join('\n')}`),
      );
      t.same(fngate.cases.map((c) => c.id), baseline.cases.map((c) => c.id), `h2spec ran the same cases against fngate and the ${style} baseline`);
    });
    t.ok(fngate.cases.length >= 100, `h2spec ran ${fngate.cases.length} cases`, { output: fngate.output });

    const fngateFailures = [...fngate.failed.values()];
    t.comment(
      `fngate (${listener.name}): ${fngateFailures.length} of ${fngate.cases.length} cases fail` +
        fngateFailures
          .map((c) => {
            const where = nodeOwned.get(c.id);
            return `\n${c.id}: ${where === undefined ? 'FNGATE-OWNED' : `Node's (a bare server fails it too: ${where.join(', ')})`}`;
          })
          .join(''),
    );

    const owned = fngateFailures.filter((c) => !nodeOwned.has(c.id));
    t.same(
      owned.map((c) => c.id),
      [],
      owned.length === 0
        ? 'no fngate-owned failures: fngate fails only cases a bare node:http2 server fails too'
        : `fngate-owned failures (every bare server passes these): ${owned.map(describe).join('; ')}`,
      { owned: owned.map((c) => ({ id: c.id, description: c.description, h2spec: c.detail })), gatewayLogTail: gw.logs().slice(-4000) },
    );

    const better = [...nodeOwned.keys()].filter((id) => !fngate.failed.has(id));
    if (better.length > 0) t.comment(`fngate passes where a bare server fails: ${better.join(', ')}`);

    // h2spec's abuse left the gateway serving.
    const health = await fetch(`http://${gw.admin}/healthz`);
    t.equal(health.status, 200, 'fngate still healthy after h2spec');
  });
}
