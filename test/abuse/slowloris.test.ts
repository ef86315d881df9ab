// Slowloris (abuse limits, docs/reliability.md): connections that hold a socket while sending as little as
// possible. At once, against one gateway (--idle-timeout 2s):
//   - 150 h2c connections that send nothing, 150 that send half the preface, 100 that send the
//     preface a byte a second, 100 that send printable text (no newline) a byte a second: closed
//     by the preface timeout (10 s, counted from the connection, not from the last byte);
//   - 100 that send the preface and then a request's HEADERS one byte at a time (the stream never
//     opens), and 100 that send HEADERS without END_HEADERS and then a CONTINUATION now and then:
//     no stream is open, so the idle timeout sends GOAWAY, and a client that does not hang up
//     then is cut 2 s later (the CONTINUATION trickle may hit nghttp2's 8-CONTINUATION cap first);
//   - 100 TLS connections that never start the handshake, 100 that send a ClientHello a byte a
//     second: closed by the handshake timeout (10 s).
// Meanwhile a well-behaved client keeps its stream and calls, new clients connect and are
// served, and afterwards the gateway's file descriptors and memory are where they were.
import t from 'tap';
import net from 'node:net';
import { join } from 'node:path';
import { echoClient } from '../helpers/echo-client.ts';
import { ECHO_PATHS } from '../helpers/echo-proto.ts';
import { makeTlsCert } from '../helpers/files.ts';
import { waitFor } from '../helpers/wait.ts';
import { expectBackendIdle, expectNoErrorLogs, expectSettled, MiB, mib, resources, setupGateway, startBystander } from './abuse-helpers.ts';
import { connectRaw, frame, FrameType, grpcRequestHeaders, headerBlock, PREFACE, RawH2, splitAddress } from './h2-wire.ts';

/** A plain TCP connection that sends `bytes` (maybe none) and then nothing more. */
async function silentSocket(address: string, bytes: Buffer): Promise<RawH2> {
  const { host, port } = splitAddress(address);
  const socket = net.connect({ host, port });
  const conn = new RawH2(socket, false);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  if (bytes.length > 0) await conn.write(bytes);
  return conn;
}

t.test('slowloris connections are closed by the preface, handshake and idle timeouts; nothing is exhausted', async (t) => {
  const dir = t.testdir({});
  const cert = makeTlsCert(join(dir, 'tls'));
  const { gw, echo, auth } = await setupGateway(t, ['--idle-timeout', '2s', '--tls-listen', '127.0.0.1:0', '--tls-cert', cert.cert, '--tls-key', cert.key], { dir });
  const bystander = await startBystander(t, gw, auth);
  const before = await resources(gw);
  const headers = headerBlock(grpcRequestHeaders(gw.h2c, ECHO_PATHS.Unary, auth));

  const started = performance.now();
  const timers: NodeJS.Timeout[] = [];
  t.teardown(() => timers.forEach((x) => clearInterval(x)));
  const all: RawH2[] = [];
  t.teardown(() => all.forEach((c) => c.destroy()));
  const open = async (n: number, make: () => Promise<RawH2>): Promise<RawH2[]> => {
    const conns = await Promise.all(Array.from({ length: n }, make));
    all.push(...conns);
    return conns;
  };

  // 900 in all, with the bystander and a new client under the 1000 connections one address may
  // hold (test/abuse/connections-per-ip.test.ts): that limit is what bounds slow connections.
  const nothing = await open(150, () => silentSocket(gw.h2c, Buffer.alloc(0)));
  const halfPreface = await open(150, () => silentSocket(gw.h2c, PREFACE.subarray(0, 12)));
  const tlsSilent = await open(100, () => silentSocket(gw.tls ?? '', Buffer.alloc(0)));
  // A byte a second: the preface, printable text that never ends its line, a TLS ClientHello.
  const prefaceTrickle = await open(100, () => silentSocket(gw.h2c, Buffer.alloc(0)));
  const textTrickle = await open(100, () => silentSocket(gw.h2c, Buffer.alloc(0)));
  const helloTrickle = await open(100, () => silentSocket(gw.tls ?? '', Buffer.alloc(0)));
  const CLIENT_HELLO = Buffer.from(`16030100c8010000c40303${'00'.repeat(190)}`, 'hex');
  let tick = 0;
  timers.push(
    setInterval(() => {
      for (const c of prefaceTrickle) void c.write(PREFACE.subarray(tick % PREFACE.length, (tick % PREFACE.length) + 1));
      for (const c of textTrickle) void c.write(Buffer.from('G'));
      for (const c of helloTrickle) void c.write(CLIENT_HELLO.subarray(tick, tick + 1));
      tick++;
    }, 1000),
  );
  const trickles = [...prefaceTrickle, ...textTrickle, ...helloTrickle];
  // HEADERS one byte at a time: the 9-byte frame header, then the block, a byte every 200 ms.
  const slowHeaders = await open(100, () => connectRaw(gw.h2c));
  const slowFrame = frame(FrameType.HEADERS, 0x4 | 0x1, 1, headers);
  let at = 0;
  timers.push(
    setInterval(() => {
      if (at < slowFrame.length) for (const c of slowHeaders) void c.write(slowFrame.subarray(at, at + 1));
      at++;
    }, 200),
  );
  // HEADERS without END_HEADERS, then a small CONTINUATION every 500 ms (never the last one).
  const slowContinuation = await open(100, () => connectRaw(gw.h2c));
  for (const c of slowContinuation) await c.write(frame(FrameType.HEADERS, 0, 1, headers));
  let n = 0;
  timers.push(
    setInterval(() => {
      n++;
      for (const c of slowContinuation) void c.write(frame(FrameType.CONTINUATION, 0, 1, headerBlock([[`x-slow-${n}`, 'v']])));
    }, 500),
  );
  const opened = performance.now() - started;
  const during = await resources(gw);
  t.comment(`900 slow connections opened in ${opened.toFixed(0)} ms; gateway fds ${before.fds} -> ${during.fds}, RSS ${mib(before.rss)} -> ${mib(during.rss)}`);
  t.ok(during.fds >= before.fds + 850, 'the gateway did accept them');

  // While they hang on: the bystander and a brand-new client are served promptly.
  await bystander.check(t, 'with 900 slow connections open');
  const fresh = echoClient(gw.h2c);
  t.teardown(() => fresh.close());
  const r = await fresh.unary(auth, {}, { deadlineMs: 5000 });
  t.equal(r.status, 0, `a new client is served (${r.details}, ${r.elapsedMs.toFixed(0)} ms)`);
  fresh.close();

  // Slow headers: no stream ever opened, so the connection is idle and closed after 2 s.
  await waitFor(() => [...slowHeaders, ...slowContinuation].every((c) => c.closed), 8000, 'slow-headers connections closed by the idle timeout');
  const idleClosedAt = performance.now() - started;
  t.ok(idleClosedAt < 8000, `slow headers and slow CONTINUATIONs: all closed after ${idleClosedAt.toFixed(0)} ms (--idle-timeout 2s, then 2 s of grace)`);
  t.equal(at < slowFrame.length, true, 'before the HEADERS frame was complete');
  t.ok(slowHeaders.every((c) => c.goaways[0]?.errorCode === 0), 'slow headers: told GOAWAY(NO_ERROR) first');
  t.ok([...nothing, ...halfPreface, ...tlsSilent, ...trickles].every((c) => !c.closed), 'no-preface connections are still open at that point');

  // No preface, half a preface, no TLS handshake, a byte a second: closed at the 10 s preface/handshake timeout.
  await waitFor(() => [...nothing, ...halfPreface, ...tlsSilent, ...trickles].every((c) => c.closed), 15_000, 'silent and trickling connections closed');
  const silentClosedAt = performance.now() - started;
  t.ok(silentClosedAt >= 9500 && silentClosedAt < 14_000, `no preface, half a preface, no TLS handshake, a byte a second: all closed after ${silentClosedAt.toFixed(0)} ms (timeout 10 s)`);
  t.ok(tick >= 9, `the trickling ones had sent ${tick} bytes each (less than the preface's 24)`);
  t.ok(nothing.every((c) => c.bytesReceived === 0), 'a connection that never sent the preface was sent nothing');

  await bystander.check(t, 'after the slow connections are gone');
  await expectSettled(t, gw, echo, before, 1, { rssGrowth: 32 * MiB, peakGrowth: 64 * MiB });
  await bystander.finish(t);
  await expectBackendIdle(t, echo);
  expectNoErrorLogs(t, gw);
});
