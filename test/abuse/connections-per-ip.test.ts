// Too many connections from one address (abuse limits, docs/reliability.md): --max-connections-per-ip
// (default 1000) counts the TCP connections each client IP holds on the h2c and TLS listeners
// together. Beyond it a new h2c connection gets the server preface and GOAWAY(ENHANCE_YOUR_CALM)
// whose debug data says why, and is closed; a TLS connection is closed before the handshake.
// Other addresses (127.0.0.2) are served as usual, connections already open are not touched, and
// once the address closes some connections it may open new ones.
import t from 'tap';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import { echoClient } from '../helpers/echo-client.ts';
import { ECHO_PATHS, encodeEchoRequest } from '../helpers/echo-proto.ts';
import { makeTlsCert } from '../helpers/files.ts';
import { grpcFrame } from '../helpers/http2-raw.ts';
import { pyHeaderArgs, runPythonClient } from '../helpers/python.ts';
import { expectBackendIdle, expectNoErrorLogs, expectSettled, MiB, mib, resources, setupGateway, startBystander } from './abuse-helpers.ts';
import type { RawH2 } from './h2-wire.ts';
import { connectRaw, ErrorCode, splitAddress } from './h2-wire.ts';

const LIMIT = 1000;

/** One unary call over a new h2c connection from `localAddress`; resolves with its grpc-status (or the error). */
function callFrom(address: string, localAddress: string, headers: Record<string, string>): Promise<string> {
  const { host, port } = splitAddress(address);
  const session = http2.connect(`http://${address}`, { createConnection: () => net.connect({ host, port, localAddress }) });
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish('timeout'), 5000);
    const finish = (outcome: string): void => {
      clearTimeout(timer);
      session.destroy();
      resolve(outcome);
    };
    session.on('error', (err) => finish(`error: ${err.message}`));
    const req = session.request({ ':method': 'POST', ':path': ECHO_PATHS.Unary, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let status: string | undefined;
    req.on('response', (h) => {
      status ??= h['grpc-status'] === undefined ? undefined : String(h['grpc-status']);
    });
    req.on('trailers', (h) => {
      status = String(h['grpc-status']);
    });
    req.on('error', (err) => finish(`error: ${err.message}`));
    req.on('close', () => finish(status ?? `closed (rst ${req.rstCode})`));
    req.resume();
    req.end(grpcFrame(encodeEchoRequest({})));
  });
}

/** A TLS connection attempt: 'handshake' if it completed, else what happened. */
function tlsAttempt(address: string, ca: Buffer, localAddress: string): Promise<string> {
  const { host, port } = splitAddress(address);
  return new Promise((resolve) => {
    const socket = tls.connect({ socket: net.connect({ host, port, localAddress }), ca, servername: 'localhost', ALPNProtocols: ['h2'] });
    const timer = setTimeout(() => done('no answer'), 5000);
    const done = (what: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(what);
    };
    socket.once('secureConnect', () => done('handshake'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(`error ${err.code ?? err.message}`));
    socket.once('close', () => done('closed'));
  });
}

t.test(`one address may hold ${LIMIT} connections; beyond that they are refused, others are served`, async (t) => {
  const dir = t.testdir({});
  const cert = makeTlsCert(join(dir, 'tls'));
  const { gw, echo, auth } = await setupGateway(t, ['--idle-timeout', '60s', '--tls-listen', '127.0.0.1:0', '--tls-cert', cert.cert, '--tls-key', cert.key], { dir });
  const bystander = await startBystander(t, gw, auth); // connection 1 of 127.0.0.1
  const before = await resources(gw);

  // Connections 2..1000 of 127.0.0.1: real HTTP/2 connections (preface and SETTINGS), idle.
  const held: RawH2[] = [];
  t.teardown(() => held.forEach((c) => c.destroy()));
  for (let i = 0; i < LIMIT - 1; i += 100) {
    held.push(...(await Promise.all(Array.from({ length: Math.min(100, LIMIT - 1 - i) }, () => connectRaw(gw.h2c)))));
  }
  t.ok(held.every((c) => !c.closed && c.goaways.length === 0), `${LIMIT} connections from 127.0.0.1 accepted`);
  const full = await resources(gw);
  t.equal(full.connections, LIMIT, `the gateway counts ${LIMIT} client connections`);
  t.comment(`gateway RSS with ${LIMIT} idle connections: ${mib(full.rss)} (${((full.rss - before.rss) / (LIMIT - 1) / 1024).toFixed(1)} KiB each), ${full.fds} fds`);

  await t.test('connection 1001 (h2c): SETTINGS, GOAWAY(ENHANCE_YOUR_CALM) saying why, closed', async (t) => {
    const refused = await connectRaw(gw.h2c);
    t.teardown(() => refused.destroy());
    await refused.waitClosed(3000);
    t.equal(refused.goaways.length, 1, 'one GOAWAY');
    t.equal(refused.goaways[0]?.errorCode, ErrorCode.ENHANCE_YOUR_CALM, 'ENHANCE_YOUR_CALM');
    t.equal(refused.goaways[0]?.lastStreamId, 0, 'no stream accepted');
    t.equal(refused.goaways[0]?.debug, `fngate: too many connections from this address (limit ${LIMIT})`, 'debug data says why');
  });

  await t.test('gRPC clients from the same address are not served', async (t) => {
    // grpc-js fails the call at once. What it calls it depends on Node's http2 under it: on Node 24
    // the GOAWAY's ENHANCE_YOUR_CALM reaches it as RESOURCE_EXHAUSTED; on Node 26 the session closes
    // before its write ("Session closed with error code 11"), UNAVAILABLE. The GOAWAY itself is
    // checked to the byte above.
    const c = echoClient(gw.h2c);
    t.teardown(() => c.close());
    const r = await c.unary(auth, {}, { deadlineMs: 5000 });
    t.ok(r.status === 8 || (r.status === 14 && /error code 11/.test(r.details)), `grpc-js: refused at once, ENHANCE_YOUR_CALM (${r.status} ${r.details})`);
    t.ok(r.elapsedMs < 4000, `after ${r.elapsedMs.toFixed(0)} ms`);
    // grpcio treats a connection closed at once as one to retry (with backoff), as it treats a
    // reset or a FIN: its call ends at its deadline, never served.
    const py = (await runPythonClient(['--target', gw.h2c, '--timeout', '2', ...pyHeaderArgs(auth), 'unary'])).calls[0];
    t.ok(py?.code === 'DEADLINE_EXCEEDED' || py?.code === 'UNAVAILABLE' || py?.code === 'RESOURCE_EXHAUSTED', `grpcio: not served (${py?.code} "${py?.details}" after ${py?.elapsed_ms} ms)`);
  });

  await t.test('TLS from the same address: closed before the handshake', async (t) => {
    const outcome = await tlsAttempt(gw.tls ?? '', cert.ca, '127.0.0.1');
    t.not(outcome, 'handshake', `no handshake: ${outcome}`);
    t.not(outcome, 'no answer', 'answered at once');
  });

  await t.test('another address (127.0.0.2) is served, on both listeners', async (t) => {
    t.equal(await callFrom(gw.h2c, '127.0.0.2', auth), '0', 'h2c call from 127.0.0.2: OK');
    t.equal(await tlsAttempt(gw.tls ?? '', cert.ca, '127.0.0.2'), 'handshake', 'TLS from 127.0.0.2: handshake');
    await bystander.check(t, 'with its address at the limit');
    t.ok(held.every((c) => !c.closed), 'the connections already open are untouched');
  });

  await t.test('after closing 10 connections, 127.0.0.1 may open 10 again', async (t) => {
    for (const c of held.splice(0, 10)) c.destroy();
    const until = Date.now() + 3000;
    let outcome = '';
    for (let i = 0; i < 30 && Date.now() < until; i++) {
      outcome = await callFrom(gw.h2c, '127.0.0.1', auth);
      if (outcome === '0') break;
    }
    t.equal(outcome, '0', 'a call from 127.0.0.1 over a new connection: OK');
  });

  for (const c of held) c.destroy();
  await expectSettled(t, gw, echo, before, 1, { rssGrowth: 64 * MiB, peakGrowth: 150 * MiB });
  await bystander.finish(t);
  await expectBackendIdle(t, echo);
  expectNoErrorLogs(t, gw);
});
