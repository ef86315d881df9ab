// The TLS listener (docs/reference.md, Clients): `--tls-listen` with `--tls-cert`/`--tls-key`,
// ALPN h2, grpc-js and Python (grpcio) clients over TLS, a readable answer (or a close) for
// clients that do not speak h2, and certificate reload without dropping connections.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import tls from 'node:tls';
import { startEchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import { makeTlsCert, randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { startTlsGateway, SESSION_ID } from '../helpers/gateway.ts';
import { writeSessionKeys } from '../helpers/session-ids.ts';
import { runPythonClient } from '../helpers/python.ts';
import { waitFor } from '../helpers/wait.ts';

const FN = 'fn-tls';

interface Probe {
  /** Negotiated ALPN protocol (false: none). */
  alpn: string | false;
  /** SHA-256 fingerprint of the certificate the server presented. */
  fingerprint: string;
  /** Subject CN of that certificate. */
  cn: string;
}

/** A raw TLS handshake with `127.0.0.1:port` (SNI localhost), trusting `ca`, offering `alpn`. */
function tlsProbe(address: string, ca: Buffer, alpn: string[]): Promise<Probe> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, ca, servername: 'localhost', ALPNProtocols: alpn }, () => {
      const cert = socket.getPeerCertificate();
      resolve({ alpn: socket.alpnProtocol ?? false, fingerprint: cert.fingerprint256, cn: String(cert.subject.CN) });
      socket.destroy();
    });
    socket.once('error', reject);
    socket.setTimeout(5000, () => {
      socket.destroy();
      reject(new Error('TLS handshake: no answer within 5 s'));
    });
  });
}

/** What happened to a TLS client that does not speak h2: the bytes it got before the end, or the error. */
interface Http1Outcome {
  handshake: boolean;
  alpn: string | false | null;
  received: string;
  error: string | undefined;
  ms: number;
}

/**
 * Offers `alpn` (none if empty), sends an HTTP/1.1 request after the handshake and waits for
 * the connection to end. Rejects if it is still open after 5 s (a hang).
 */
function http1OverTls(address: string, ca: Buffer, alpn: string[]): Promise<Http1Outcome> {
  const [host, port] = splitAddress(address);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const out: Http1Outcome = { handshake: false, alpn: null, received: '', error: undefined, ms: 0 };
    const socket = tls.connect({ host, port, ca, servername: 'localhost', ...(alpn.length > 0 ? { ALPNProtocols: alpn } : {}) }, () => {
      out.handshake = true;
      out.alpn = socket.alpnProtocol ?? false;
      socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      out.received += chunk;
    });
    socket.on('error', (err) => {
      out.error ??= err.message;
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`HTTP/1.1 over TLS (ALPN ${JSON.stringify(alpn)}): still open after 5 s; received ${JSON.stringify(out.received)}`));
    }, 5000);
    socket.on('close', () => {
      clearTimeout(timer);
      out.ms = performance.now() - started;
      resolve(out);
    });
  });
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}

t.test('TLS listener', async (t) => {
  const dir = t.testdir({});
  const b = await startEchoBackend({ name: 'tls-backend' });
  t.teardown(() => b.stop(1000));
  writeFunctionsDir(join(dir, 'fns'), [{ name: 'tls', functionId: FN, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [b.address] }] }]);
  const key = randomKey();
  writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'tls-tester', key, functions: [FN] }]);
  const certDir = join(dir, 'tls');
  const first = makeTlsCert(certDir, { commonName: 'fngate-first' });
  const sessionKeys = writeSessionKeys(dir);
  const { sidOf } = sessionKeys;
  const gw = await startTlsGateway(t, dir, first, ['--session-key-file', sessionKeys.path]);
  const tlsAddr = gw.tls;
  t.match(tlsAddr, /^127\.0\.0\.1:\d+$/, 'TLS listener bound where asked');
  t.not(tlsAddr, gw.h2c, 'separate from the h2c listener');
  const auth = { authorization: `Bearer ${key}`, 'function-id': FN };

  t.test('ALPN h2 is negotiated, with the configured certificate', async (t) => {
    const probe = await tlsProbe(tlsAddr, first.ca, ['h2']);
    t.equal(probe.alpn, 'h2');
    t.equal(probe.fingerprint, new X509Certificate(first.ca).fingerprint256, 'the --tls-cert certificate');
    t.equal(probe.cn, 'fngate-first');
    const preferH2 = await tlsProbe(tlsAddr, first.ca, ['http/1.1', 'h2']);
    t.equal(preferH2.alpn, 'h2', 'h2 chosen when offered beside http/1.1');
  });

  t.test('grpc-js over TLS: all four RPC kinds', async (t) => {
    const c = echoClient(tlsAddr, { tls: { ca: first.ca, serverName: 'localhost' } });
    t.teardown(() => c.close());
    const u = await c.unary({ ...auth, 'x-k': 'v' }, { payload: Buffer.from('hi') });
    t.equal(u.status, 0, u.details);
    t.equal(u.reply?.backend, 'tls-backend');
    t.equal(u.reply?.received_bytes, 2);
    t.match(u.reply?.metadata, /^x-k: v$/m);
    t.match(u.reply?.metadata, /^fngate-subject: tls-tester$/m);
    t.notMatch(u.reply?.metadata, /authorization/, 'authorization is not passed on');
    t.match(String(u.initial['nvcf-reqid']), SESSION_ID, 'nvcf-reqid');
    t.equal(u.initial['x-initial'], 'hello');
    t.equal(u.trailing['x-trailer'], 'bye');
    const ss = await c.serverStream(auth, { count: 4, reply_size: 1000 });
    t.match(ss, { status: 0, replyCount: 4, replyBytes: 4000 });
    const cs = await c.clientStream(auth, [{ payload: Buffer.alloc(10) }, { payload: Buffer.alloc(20) }]);
    t.match(cs, { status: 0, reply: { received_bytes: 30, received_messages: 2 } });
    const bi = await c.bidi(auth, [{ payload: Buffer.alloc(1) }, { payload: Buffer.alloc(2) }]);
    t.match(bi, { status: 0, replyCount: 2 });
    t.equal(sidOf(ss.initial['nvcf-reqid']), sidOf(u.initial['nvcf-reqid']), 'one connection, one session');
    const denied = await c.unary({ 'function-id': FN });
    t.equal(denied.status, 16, 'gateway errors work over TLS too (UNAUTHENTICATED)');
  });

  t.test('Python grpcio over TLS', async (t) => {
    const target = ['--target', tlsAddr, '--tls-ca', first.cert, '--tls-server-name', 'localhost', '-H', `authorization=Bearer ${key}`, '-H', `function-id=${FN}`];
    const unary = await runPythonClient([...target, 'unary', '--calls', '2', '--payload-size', '100']);
    t.equal(unary.calls.length, 2);
    t.match(unary.calls[0], { code: 'OK', backend: 'tls-backend', received_bytes: 100 });
    t.match(unary.calls[0]?.initial_metadata['nvcf-reqid'], SESSION_ID);
    t.equal(sidOf(unary.calls[1]?.initial_metadata['nvcf-reqid']), sidOf(unary.calls[0]?.initial_metadata['nvcf-reqid']), 'same channel, same session');
    const ss = await runPythonClient([...target, 'server-stream', '--count', '3', '--reply-size', '500']);
    t.match(ss.calls[0], { code: 'OK', replies: 3, reply_bytes: 1500 });
    const bidi = await runPythonClient([...target, 'bidi', '--count', '3', '--payload-size', '10']);
    t.match(bidi.calls[0], { code: 'OK', replies: 3 });
  });

  t.test('a TLS client offering only http/1.1 gets a readable HTTP/1.1 error or a closed connection, not a hang', async (t) => {
    for (const alpn of [['http/1.1'], []]) {
      const out = await http1OverTls(tlsAddr, first.ca, alpn);
      const what = `ALPN ${JSON.stringify(alpn)}: handshake ${out.handshake}, alpn ${String(out.alpn)}, error ${out.error ?? 'none'}, ${out.ms.toFixed(0)} ms, received ${JSON.stringify(out.received.slice(0, 60))}`;
      t.not(out.alpn, 'h2', `h2 is not negotiated (${what})`);
      if (out.received.length > 0) {
        t.match(out.received, /^HTTP\/1\.1 [45]\d\d /, `a readable HTTP/1.1 error (${what})`);
      } else {
        t.pass(`the connection was closed without an answer (${what})`);
      }
      t.ok(out.ms < 3000, `ended promptly (${out.ms.toFixed(0)} ms)`);
    }
  });

  t.test('certificate reload: open connections keep working, new ones get the new certificate', async (t) => {
    const c = echoClient(tlsAddr, { tls: { ca: first.ca, serverName: 'localhost' } });
    t.teardown(() => c.close());
    const before = await c.unary(auth);
    t.equal(before.status, 0, before.details);
    const sessionId = before.initial['nvcf-reqid'];
    const peersBefore = b.peers.size;

    // A stream that runs across the reload: 8 replies 300 ms apart.
    let replies = 0;
    const spanning = c.serverStream({ ...auth, 'x-echo-sleep-ms': '300' }, { count: 8 }, { onReply: () => void replies++ });
    await waitFor(() => replies >= 1, 5000, 'first reply of the spanning stream');

    const reloadedAt = performance.now();
    const second = makeTlsCert(certDir, { commonName: 'fngate-second' });
    const newPrint = new X509Certificate(second.ca).fingerprint256;
    t.not(newPrint, new X509Certificate(first.ca).fingerprint256, 'a different certificate');

    // New connections: poll until they are served the new certificate.
    let probe = await tlsProbe(tlsAddr, second.ca, ['h2']).catch((err: Error) => err);
    while (probe instanceof Error || probe.fingerprint !== newPrint) {
      if (performance.now() - reloadedAt > 5000) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Before the reload the old certificate fails verification against the new CA: keep asking.
      probe = await tlsProbe(tlsAddr, second.ca, ['h2']).catch((err: Error) => err);
    }
    const took = performance.now() - reloadedAt;
    if (probe instanceof Error) {
      t.fail(`no new TLS connection verified with the new certificate within 5 s: ${probe.message}`);
    } else {
      t.equal(probe.fingerprint, newPrint, `a new connection sees the new certificate after ${took.toFixed(0)} ms`);
      t.equal(probe.cn, 'fngate-second');
      t.equal(probe.alpn, 'h2', 'still ALPN h2 after the reload');
    }
    await gw.waitForLog((l) => l['msg'] === 'TLS certificate reloaded', 5000);

    // The open channel was not dropped: the stream finished, and the same connection (same
    // session, same upstream connection) serves the next call.
    const spanned = await spanning;
    t.match(spanned, { status: 0, replyCount: 8 }, `the stream spanning the reload completed: ${spanned.details}`);
    t.equal(spanned.initial['nvcf-reqid'], sessionId, 'on the same session');
    const after = await c.unary(auth);
    t.equal(after.status, 0, `the open channel still works: ${after.details}`);
    t.equal(after.initial['nvcf-reqid'], sessionId, 'same session: the connection was not re-established');
    t.equal(b.peers.size, peersBefore, 'no new upstream connection either');

    // A new grpc-js client trusting only the new certificate works; one trusting only the old fails.
    const fresh = echoClient(tlsAddr, { tls: { ca: second.ca, serverName: 'localhost' } });
    t.teardown(() => fresh.close());
    const r = await fresh.unary(auth);
    t.equal(r.status, 0, `new client with the new CA: ${r.details}`);
    t.not(r.initial['nvcf-reqid'], sessionId, 'a new connection, a new session');
    const stale = echoClient(tlsAddr, { tls: { ca: first.ca, serverName: 'localhost' } });
    t.teardown(() => stale.close());
    const s = await stale.unary(auth, {}, { deadlineMs: 3000 });
    t.equal(s.status, 14, `a new client trusting only the old certificate cannot connect: ${s.status} ${s.details}`);
    t.same(gw.logLines().filter((l) => l['level'] === 'error'), [], 'no error logged');
  });
});
