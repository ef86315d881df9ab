// Stream and frame floods on one client connection (abuse limits, docs/reliability.md):
//   - max concurrent streams: the gateway advertises SETTINGS_MAX_CONCURRENT_STREAMS 1000; a
//     gRPC client queues its 1001st call until a stream ends, and a peer that opens it anyway
//     gets GOAWAY(PROTOCOL_ERROR "max concurrent streams exceeded") and loses the connection;
//   - rapid reset (CVE-2023-44487): HEADERS + RST_STREAM pairs as fast as they can be written;
//     the connection is cut after about a thousand (nghttp2's reset rate limit), every upstream
//     stream it caused is cancelled, and reconnecting to do it again costs the gateway the same
//     bounded amount each time;
//   - PING flood: the gateway answers PINGs in C++ without waking JavaScript, drops a peer that
//     lets more than a thousand answers pile up unread, and a paced flood costs microseconds each.
// Throughout: RSS and file descriptors return, the backend's streams return to the bystander's
// one, and the bystander's held stream and calls carry on.
import t from 'tap';
import type { CallResult } from '../helpers/echo-client.ts';
import { echoClient } from '../helpers/echo-client.ts';
import { ECHO_PATHS } from '../helpers/echo-proto.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { cpuMs, expectBackendIdle, expectNoErrorLogs, expectSettled, MiB, mib, resources, setupGateway, startBystander } from './abuse-helpers.ts';
import { connectRaw, ErrorCode, FrameType, grpcRequestHeaders, headersFrame, pingFrame, rstFrame } from './h2-wire.ts';

const { gw, echo, auth } = await setupGateway(t);
const bystander = await startBystander(t, gw, auth);
const BYSTANDER_STREAMS = 1;

t.test('max concurrent streams per connection (1000)', async (t) => {
  await t.test('grpc-js: the 1001st call waits for a free stream instead of failing', async (t) => {
    const before = await resources(gw);
    const c = echoClient(gw.h2c);
    t.teardown(() => c.close());
    const aborts = Array.from({ length: 1001 }, () => new AbortController());
    const settled: CallResult[] = [];
    const calls: Array<Promise<CallResult>> = [];
    const logStart = echo.callLog.length;
    /** This connection's calls (by x-call) that reached the function since `from`, in order. */
    const arrived = (from = logStart): string[] => echo.callLog.slice(from).flatMap((r) => /^x-call: (\d+)$/m.exec(r.metadata)?.[1] ?? []);
    for (let i = 0; i < 1001; i++) {
      const call = c.serverStream({ ...auth, 'x-echo-hold': '1', 'x-call': String(i) }, { count: 1 }, { signal: aborts[i]?.signal });
      calls.push(call);
      void call.then((r) => settled.push(r));
    }
    await echo.waitFor(() => echo.active === 1000 + BYSTANDER_STREAMS, 20_000);
    t.equal(arrived().length, 1000, 'exactly 1000 streams of the connection reach the function');
    const at1000 = gw.rssBytes();
    t.comment(`gateway RSS with 1000 open streams on one connection: ${mib(at1000)} (${((at1000 - before.rss) / 1000 / 1024).toFixed(1)} KiB per stream)`);
    await bystander.check(t, 'while 1000 streams are open');
    t.same([arrived().length, arrived().includes('1000')], [1000, false], 'the bystander answered since, and the 1001st (made last) has still not reached the function');
    t.same(settled, [], 'none of the 1001 calls failed');
    // One stream ends: the waiting call goes out, and is the one call of the connection to arrive after that.
    const logged = echo.callLog.length;
    aborts[0]?.abort();
    await echo.waitFor(() => arrived(logged).length > 0 && echo.active === 1000 + BYSTANDER_STREAMS, 5000);
    t.same(arrived(logged), ['1000'], 'when one stream ended, the 1001st call reached the function');
    for (const a of aborts) a.abort();
    const results = await Promise.all(calls);
    t.same([...new Set(results.map((r) => r.status))], [1], 'all 1001 ended CANCELLED (by the client), none refused');
    c.close();
    await expectSettled(t, gw, echo, before, BYSTANDER_STREAMS);
  });

  await t.test('a peer opening a 1001st stream anyway gets RST_STREAM(REFUSED_STREAM) for it; its 1000 streams go on', async (t) => {
    const before = await resources(gw);
    const conn = await connectRaw(gw.h2c);
    t.teardown(() => conn.destroy());
    const headers = grpcRequestHeaders(gw.h2c, ECHO_PATHS.Bidi, auth);
    for (let i = 0; i < 1000; i++) await conn.write(headersFrame(1 + 2 * i, headers));
    await echo.waitFor(() => echo.active === 1000 + BYSTANDER_STREAMS, 20_000);
    t.equal(conn.closed, false, '1000 streams: accepted');
    await conn.write(headersFrame(2001, headers));
    await waitFor(() => conn.resets.has(2001) || conn.closed, 5000, 'the 1001st stream answered');
    t.equal(conn.resets.get(2001), ErrorCode.REFUSED_STREAM, 'the 1001st stream was refused (REFUSED_STREAM: not processed, safe to retry)');
    t.equal(conn.closed, false, 'the connection stays');
    t.equal(echo.active, 1000 + BYSTANDER_STREAMS, 'the 1001st never reached the function; the 1000 are still open');
    await bystander.check(t, 'after the violator');
    conn.destroy();
    await expectSettled(t, gw, echo, before, BYSTANDER_STREAMS);
  });
});

t.test('rapid reset (CVE-2023-44487): HEADERS + RST_STREAM floods are cut off', async (t) => {
  const before = await resources(gw);
  const callsBefore = echo.calls;
  const headers = grpcRequestHeaders(gw.h2c, ECHO_PATHS.Bidi, auth);
  const ATTACKS = 5;
  const PER_ATTACK = 20_000;
  let total = 0;
  const cutAfter: number[] = [];
  const cpuBefore = cpuMs(gw.pid);
  const started = performance.now();
  for (let a = 0; a < ATTACKS; a++) {
    const conn = await connectRaw(gw.h2c);
    t.teardown(() => conn.destroy());
    let sent = 0;
    for (; sent < PER_ATTACK && !conn.closed; sent++) {
      const id = 1 + 2 * sent;
      conn.socket.write(Buffer.concat([headersFrame(id, headers), rstFrame(id, ErrorCode.CANCEL)]));
      if (sent % 100 === 99) await new Promise((resolve) => setImmediate(resolve)); // let the answer in
    }
    await conn.waitClosed(5000).catch((err: Error) => t.fail(err.message));
    total += sent;
    cutAfter.push(sent);
  }
  const elapsed = performance.now() - started;
  const cpu = cpuMs(gw.pid) - cpuBefore;
  // What the attacker wrote before it noticed the close says little (the kernel buffers it);
  // what the gateway acted on is what reached the function.
  const forwarded = echo.calls - callsBefore;
  t.comment(`${ATTACKS} connections, each cut off (the attacker had written ${cutAfter.join(', ')} pairs by then, ${total} in ${elapsed.toFixed(0)} ms)`);
  t.comment(`the gateway forwarded ${forwarded} streams (${Math.round(forwarded / ATTACKS)} per connection) and used ${cpu} ms of CPU (${((cpu * 1000) / forwarded).toFixed(0)} us per forwarded stream)`);
  t.ok(forwarded / ATTACKS < 2500, 'each attacking connection was cut off after a bounded number of streams (nghttp2 allows a burst of 1000 resets)');
  t.ok(cpu / ATTACKS < 1500, 'the gateway CPU per attacking connection is bounded (< 1.5 s)');
  await bystander.check(t, 'after the rapid resets');
  await expectSettled(t, gw, echo, before, BYSTANDER_STREAMS);
});

t.test('PING flood', async (t) => {
  const before = await resources(gw);

  await t.test('a peer that never reads its PING ACKs is dropped', async (t) => {
    const conn = await connectRaw(gw.h2c, { paused: true });
    t.teardown(() => conn.destroy());
    const batch = Buffer.concat(Array.from({ length: 1000 }, (_, i) => pingFrame(i)));
    let sent = 0;
    for (let i = 0; i < 1000 && !conn.closed; i++) {
      if (!(await conn.write(batch))) break;
      sent += 1000;
    }
    await conn.waitClosed(5000);
    t.ok(sent < 1_000_000, `closed after ${sent} PINGs`);
  });

  await t.test('a burst of PINGs (1000 per write) from a reading peer: answered or cut off, bounded', async (t) => {
    const conn = await connectRaw(gw.h2c);
    t.teardown(() => conn.destroy());
    const batch = Buffer.concat(Array.from({ length: 1000 }, (_, i) => pingFrame(i)));
    const cpuBefore = cpuMs(gw.pid);
    let sent = 0;
    for (let i = 0; i < 100 && !conn.closed; i++) {
      if (!(await conn.write(batch))) break;
      sent += 1000;
    }
    await waitFor(() => conn.closed || conn.count(FrameType.PING) === sent, 10_000, 'every PING answered or the peer cut off').catch(() => {});
    const cpu = cpuMs(gw.pid) - cpuBefore;
    t.comment(`${sent} PINGs sent, ${conn.count(FrameType.PING)} answered, closed: ${conn.closed}, GOAWAY ${JSON.stringify(conn.goaways)}; gateway CPU ${cpu} ms`);
    t.ok(conn.closed || conn.count(FrameType.PING) === sent, 'either every PING was answered or the peer was cut off');
  });

  await t.test('a paced flood: 50,000 PINGs, 50 a millisecond, costs microseconds each', async (t) => {
    const conn = await connectRaw(gw.h2c);
    t.teardown(() => conn.destroy());
    const batch = Buffer.concat(Array.from({ length: 50 }, (_, i) => pingFrame(i)));
    const cpuBefore = cpuMs(gw.pid);
    const started = performance.now();
    let sent = 0;
    for (let i = 0; i < 1000 && !conn.closed; i++) {
      if (!(await conn.write(batch))) break;
      sent += 50;
      await sleep(1);
    }
    await waitFor(() => conn.count(FrameType.PING) >= sent || conn.closed, 5000, 'answers');
    const cpu = cpuMs(gw.pid) - cpuBefore;
    const elapsed = performance.now() - started;
    t.comment(`${sent} PINGs in ${elapsed.toFixed(0)} ms, ${conn.count(FrameType.PING)} answered, closed: ${conn.closed}; gateway CPU ${cpu} ms (${((cpu * 1000) / sent).toFixed(1)} us per PING)`);
    t.equal(conn.closed, false, 'a paced flood is answered, not cut off');
    t.equal(conn.count(FrameType.PING), sent, 'every PING answered');
    t.ok((cpu * 1000) / sent < 100, 'under 100 us of gateway CPU per PING');
    await bystander.check(t, 'during the paced PING flood');
  });

  await expectSettled(t, gw, echo, before, BYSTANDER_STREAMS, { rssGrowth: 32 * MiB, peakGrowth: 64 * MiB });
});

t.test('the bystander was never disturbed', async (t) => {
  await bystander.check(t, 'at the end');
  await bystander.finish(t);
  await expectBackendIdle(t, echo);
  expectNoErrorLogs(t, gw);
});
