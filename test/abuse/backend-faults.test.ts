// Function endpoints that misbehave in the middle of a session (faults, docs/reliability.md):
//   - GOAWAY during streams: the streams already open finish normally, the next call of the
//     same client session goes over a new upstream connection;
//   - garbage bytes in the middle of a stream: that client's streams end UNAVAILABLE at once,
//     another client of the same function (its own session, its own upstream connection) is
//     not disturbed, and the first client's next call works again.
// Killed backends, silent backends and garbage from the first byte are in
// test/gateway/faults.test.ts and test/gateway/errors.test.ts.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import { closeServer } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient, holdStream } from '../helpers/echo-client.ts';
import type { CallResult } from '../helpers/echo-client.ts';
import { waitFor } from '../helpers/wait.ts';
import { expectNoErrorLogs, expectSettled, replyFrame, resources, setupGateway } from './abuse-helpers.ts';

interface GoawayBackend {
  readonly address: string;
  /** Upstream connections accepted so far. */
  readonly connections: number;
  /** Streams open now. */
  readonly active: number;
  /** GOAWAY(NO_ERROR) on every connection, naming the last stream it accepted: open streams go on. */
  goawayAll(): void;
  /** Each held stream gets a second reply and ends OK. */
  releaseAll(): void;
  close(): Promise<void>;
}

/**
 * A raw node:http2 gRPC backend: each call gets one reply at once; with `x-hold: 1` it is then
 * held (releaseAll sends a second reply and OK), without it it ends OK. Replies carry the
 * number of the upstream connection as `peer`.
 */
async function startGoawayBackend(): Promise<GoawayBackend> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  const held = new Set<http2.ServerHttp2Stream>();
  const open = new Set<http2.ServerHttp2Stream>();
  let connections = 0;
  const connectionOf = new WeakMap<http2.ServerHttp2Session, number>();
  server.on('session', (s) => {
    connectionOf.set(s, ++connections);
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    const peer = `connection-${connectionOf.get(stream.session as http2.ServerHttp2Session) ?? 0}`;
    open.add(stream);
    stream.on('close', () => {
      open.delete(stream);
      held.delete(stream);
    });
    stream.on('error', () => {});
    stream.resume();
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.write(replyFrame('goaway', peer));
    if (headers['x-hold'] === '1') held.add(stream);
    else stream.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    get active() {
      return open.size;
    },
    goawayAll() {
      for (const s of sessions) s.goaway(http2.constants.NGHTTP2_NO_ERROR);
    },
    releaseAll() {
      for (const stream of held) {
        const peer = `connection-${connectionOf.get(stream.session as http2.ServerHttp2Session) ?? 0}`;
        stream.write(replyFrame('goaway', peer));
        stream.end();
      }
      held.clear();
    },
    close: () => closeServer(server, sessions),
  };
}

interface GarbageProxy {
  readonly address: string;
  /** Connections through the proxy so far, in order. */
  readonly connections: number;
  /** Writes `bytes` random bytes toward the gateway on connection `index` (0-based), mid-stream. */
  inject(index: number, bytes: number): void;
  close(): Promise<void>;
}

/** A TCP proxy to `target` that can inject garbage into one connection's server-to-gateway direction. */
async function startGarbageProxy(target: string): Promise<GarbageProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const downstreams: net.Socket[] = [];
  const all = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect({ host, port });
    downstreams.push(down);
    for (const s of [down, up]) {
      all.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        all.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    get connections() {
      return downstreams.length;
    },
    inject(index, bytes) {
      // Not a valid frame header: a frame type and length out of nothing, then noise.
      downstreams[index]?.write(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0x42, 0xff, 0x7f, 0xff, 0xff, 0xff]), randomBytes(bytes)]));
    },
    close: () => closeServer(server, all),
  };
}

t.test('a function endpoint sends GOAWAY while streams are open: they finish, new calls take a new connection', async (t) => {
  let backend: GoawayBackend | undefined;
  const { gw, echo, auth, sidOf } = await setupGateway(t, [], {
    functions: (e: EchoBackend) => [
      { name: 'goaway', functionId: 'fn-goaway', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [backend?.address ?? ''] }] },
      { name: 'echo', functionId: 'fn-abuse', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [e.address] }] },
    ],
    before: async () => {
      backend = await startGoawayBackend();
      t.teardown(() => backend?.close());
    },
  });
  const b = backend as GoawayBackend;
  const md = { authorization: auth.authorization, 'function-id': 'fn-goaway' };
  const before = await resources(gw);

  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  const first = await c.unary(md);
  t.equal(first.status, 0, `first call OK (${first.details})`);
  t.equal(first.reply?.peer, 'connection-1');

  // Three streams held open on the session's upstream connection.
  const streams: Array<Promise<CallResult>> = [];
  let replies = 0;
  for (let i = 0; i < 3; i++) streams.push(c.serverStream({ ...md, 'x-hold': '1' }, {}, { onReply: () => void replies++ }));
  await waitFor(() => replies === 3 && b.active === 3, 5000, 'three held streams');

  b.goawayAll();
  // The next call of the same client connection (same session) goes over a new upstream connection.
  const next = await c.unary(md);
  t.equal(next.status, 0, `a call after the GOAWAY: OK (${next.details})`);
  t.equal(next.reply?.peer, 'connection-2', 'over a new upstream connection');
  t.equal(sidOf(next.initial['nvcf-reqid']), sidOf(first.initial['nvcf-reqid']), 'in the same session');
  t.equal(b.active, 3, 'the held streams are still open on the old connection');

  b.releaseAll();
  const results = await Promise.all(streams);
  for (const [i, r] of results.entries()) {
    t.equal(r.status, 0, `held stream ${i}: OK after the GOAWAY (${r.details})`);
    t.same(r.replies.map((x) => x.peer), ['connection-1', 'connection-1'], `held stream ${i}: both replies, on the old connection`);
  }
  t.equal(b.connections, 2, 'two upstream connections in all');
  c.close();
  await expectSettled(t, gw, echo, before, 0);
  await waitFor(() => b.active === 0, 5000, 'backend streams closed');
  expectNoErrorLogs(t, gw);
});

t.test('garbage from a function endpoint mid-stream: that client gets UNAVAILABLE, another client is not disturbed', async (t) => {
  let proxy: GarbageProxy | undefined;
  const { gw, echo, auth } = await setupGateway(t, [], {
    functions: (e: EchoBackend) => [{ name: 'abuse', functionId: 'fn-abuse', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [proxy?.address ?? e.address] }] }],
    before: async (e: EchoBackend) => {
      proxy = await startGarbageProxy(e.address);
      t.teardown(() => proxy?.close());
    },
  });
  const p = proxy as GarbageProxy;
  const before = await resources(gw);

  // The victim: its session's upstream connection is the proxy's first.
  const victim = echoClient(gw.h2c);
  t.teardown(() => victim.close());
  let victimReplies = 0;
  const victimStream = victim.serverStream({ ...auth, 'x-echo-sleep-ms': '100' }, { count: 1_000_000, reply_size: 100 }, { keepReplies: false, onReply: () => void victimReplies++ });
  await waitFor(() => victimReplies >= 3 && p.connections === 1, 5000, 'victim stream flowing');

  // The bystander: another client of the same function, on the proxy's second connection.
  const bystander = echoClient(gw.h2c);
  t.teardown(() => bystander.close());
  const held = await holdStream(bystander, auth, 'bystander stream open');
  t.equal(p.connections, 2, 'each client session has its own upstream connection');

  const injectedAt = performance.now();
  p.inject(0, 4096);
  const r = await victimStream;
  const took = performance.now() - injectedAt;
  t.equal(r.status, 14, `the victim's stream: UNAVAILABLE (${r.status} ${r.details})`);
  t.match(r.details, /connection to function endpoint .* failed/, 'the message says the endpoint connection failed');
  t.ok(took < 2000, `ended ${took.toFixed(0)} ms after the garbage`);

  const after = await bystander.unary(auth);
  t.equal(after.status, 0, `bystander: a new call OK (${after.details})`);
  t.equal(held.replies, 1, 'bystander: its held stream is untouched');
  const again = await victim.unary(auth);
  t.equal(again.status, 0, `victim: its next call works again (${again.details})`);
  t.equal((await held.cancel()).status, 1, 'bystander: the held stream ended only when cancelled');

  victim.close();
  bystander.close();
  await expectSettled(t, gw, echo, before, 0);
  expectNoErrorLogs(t, gw);
});
