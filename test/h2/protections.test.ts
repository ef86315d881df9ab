// lib/h2's protections, one attack each, on a server built on ServerConnection with small limits
// (so each test needs few frames): the attacking connection gets the answer RFC 9113 and the
// CVE's advisories call for, the counter moves, and a bystander connection is served after it.
import t, { type Test } from 'tap';
import net from 'node:net';
import { ErrorCode } from '../../lib/h2/constants.ts';
import { connectRaw, Flag, frame, FrameType, headerBlock, PREFACE, settingsFrame, type RawH2 } from '../abuse/h2-wire.ts';
import { waitFor } from '../helpers/wait.ts';
import { startH2Server, type TestH2Server } from './support/h2-server.ts';

const LIMITS = {
  maxConcurrentStreams: 10,
  resetBurst: 50,
  resetsPerSecond: 1,
  controlBurst: 200,
  controlPerSecond: 1,
  maxEmptyFrames: 20,
  maxContinuationFrames: 8,
  maxHeaderBlockBytes: 200_000,
  maxOutgoingBytes: 64 * 1024,
  prefaceTimeoutMs: 300,
  settingsTimeoutMs: 600,
};

const requestBlock = headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/x'], [':authority', 'h']]);
const request = (id: number, end = false): Buffer => frame(FrameType.HEADERS, Flag.END_HEADERS | (end ? Flag.END_STREAM : 0), id, requestBlock);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

async function withServer(t: Test): Promise<TestH2Server> {
  const server = await startH2Server({ limits: LIMITS });
  t.teardown(() => server.close());
  return server;
}

async function expectGoaway(t: Test, conn: RawH2, code: number, what: string): Promise<void> {
  await waitFor(() => conn.goaways.length > 0 || conn.closed, 10_000, `${what}: GOAWAY`);
  t.same(conn.goaways.map((g) => g.errorCode), [code], `${what}: GOAWAY ${code} (${conn.goaways[0]?.debug ?? ''})`);
  await conn.waitClosed(10_000);
}

async function bystander(t: Test, server: TestH2Server): Promise<void> {
  const c = await connectRaw(server.address);
  t.teardown(() => c.destroy());
  await c.write(request(1, true));
  await waitFor(() => c.responded.has(1), 10_000, 'bystander answered');
  t.ok(c.responded.has(1), 'a bystander connection is served');
}

t.test('rapid reset (CVE-2023-44487): HEADERS + RST_STREAM past the budget -> GOAWAY(ENHANCE_YOUR_CALM)', async (t) => {
  const server = await withServer(t);
  const conn = await connectRaw(server.address);
  t.teardown(() => conn.destroy());
  const burst: Buffer[] = [];
  for (let i = 0; i < 200; i++) burst.push(request(1 + 2 * i), frame(FrameType.RST_STREAM, 0, 1 + 2 * i, u32(ErrorCode.CANCEL)));
  await conn.write(Buffer.concat(burst));
  await expectGoaway(t, conn, ErrorCode.ENHANCE_YOUR_CALM, 'rapid reset');
  t.ok(server.counters.rapidReset >= 1, `counted (${server.counters.rapidReset})`);
  await bystander(t, server);
});

t.test('resets provoked from the server (CVE-2025-8671, MadeYouReset) share the budget', async (t) => {
  const server = await withServer(t);
  const conn = await connectRaw(server.address);
  t.teardown(() => conn.destroy());
  // Each stream: a request, then WINDOW_UPDATE of 0 on it, which the server must answer with RST_STREAM.
  const burst: Buffer[] = [];
  for (let i = 0; i < 200; i++) burst.push(request(1 + 2 * i), frame(FrameType.WINDOW_UPDATE, 0, 1 + 2 * i, u32(0)));
  await conn.write(Buffer.concat(burst));
  await expectGoaway(t, conn, ErrorCode.ENHANCE_YOUR_CALM, 'provoked resets');
  t.ok(conn.resets.size >= 40 && conn.resets.size <= 60, `about the budget of resets were sent first (${conn.resets.size})`);
  t.ok(server.counters.provokedResets >= 50, `counted (${server.counters.provokedResets})`);
  await bystander(t, server);
});

t.test('CONTINUATION flood (CVE-2024-27316 class): past the frame count -> GOAWAY(ENHANCE_YOUR_CALM)', async (t) => {
  const server = await withServer(t);
  const conn = await connectRaw(server.address);
  t.teardown(() => conn.destroy());
  const frames = [frame(FrameType.HEADERS, 0, 1, requestBlock)];
  for (let i = 0; i < 100; i++) frames.push(frame(FrameType.CONTINUATION, 0, 1, headerBlock([[`x-${i}`, 'v']])));
  await conn.write(Buffer.concat(frames));
  await expectGoaway(t, conn, ErrorCode.ENHANCE_YOUR_CALM, 'CONTINUATION flood');
  t.equal(server.counters.continuationFlood, 1, 'counted');
  await bystander(t, server);
});

t.test('a header list over SETTINGS_MAX_HEADER_LIST_SIZE: RST_STREAM(ENHANCE_YOUR_CALM), the connection stays', async (t) => {
  const server = await withServer(t);
  const conn = await connectRaw(server.address);
  t.teardown(() => conn.destroy());
  const block = headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/x'], ...Array.from({ length: 5000 }, (_, i) => [`x-key-${i}`, 'v'] as [string, string])]);
  const frames: Buffer[] = [];
  for (let at = 0; at < block.length; at += 16_384) {
    frames.push(frame(at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION, at + 16_384 >= block.length ? Flag.END_HEADERS : 0, 1, block.subarray(at, at + 16_384)));
  }
  await conn.write(Buffer.concat([...frames, request(3, true)]));
  await waitFor(() => conn.responded.has(3), 10_000, 'the next request is answered');
  t.equal(conn.resets.get(1), ErrorCode.ENHANCE_YOUR_CALM, 'the oversized request got RST_STREAM(ENHANCE_YOUR_CALM)');
  t.equal(conn.goaways.length, 0, 'no GOAWAY');
  t.equal(server.counters.headerListTooLarge, 1, 'counted');
});

t.test('SETTINGS flood and PING flood (CVE-2019-9512/9515) past the budget -> GOAWAY(ENHANCE_YOUR_CALM)', async (t) => {
  const server = await withServer(t);
  for (const [what, f] of [
    ['SETTINGS', settingsFrame()],
    ['PING', frame(FrameType.PING, 0, 0, Buffer.alloc(8))],
  ] as const) {
    const conn = await connectRaw(server.address);
    t.teardown(() => conn.destroy());
    await conn.write(Buffer.concat(Array.from({ length: 500 }, () => f)));
    await expectGoaway(t, conn, ErrorCode.ENHANCE_YOUR_CALM, `${what} flood`);
  }
  t.equal(server.counters.controlFlood, 2, 'counted');
  await bystander(t, server);
});

t.test('empty frames (CVE-2019-9518): empty DATA frames in a row -> GOAWAY(ENHANCE_YOUR_CALM)', async (t) => {
  const server = await withServer(t);
  const conn = await connectRaw(server.address);
  t.teardown(() => conn.destroy());
  await conn.write(Buffer.concat([request(1), ...Array.from({ length: 100 }, () => frame(FrameType.DATA, 0, 1))]));
  await expectGoaway(t, conn, ErrorCode.ENHANCE_YOUR_CALM, 'empty DATA flood');
  t.equal(server.counters.emptyFrameFlood, 1, 'counted');
  await bystander(t, server);
});

t.test('streams past SETTINGS_MAX_CONCURRENT_STREAMS: RST_STREAM(REFUSED_STREAM), the others go on', async (t) => {
  const server = await withServer(t);
  const conn = await connectRaw(server.address);
  t.teardown(() => conn.destroy());
  await conn.write(Buffer.concat(Array.from({ length: 11 }, (_, i) => request(1 + 2 * i))));
  await waitFor(() => conn.resets.size > 0, 10_000, 'a refusal');
  t.same([...conn.resets.entries()], [[21, ErrorCode.REFUSED_STREAM]], 'the 11th stream was refused');
  await conn.write(frame(FrameType.DATA, Flag.END_STREAM, 1));
  await waitFor(() => conn.responded.has(1), 10_000, 'stream 1 answered');
  t.equal(conn.goaways.length, 0, 'the connection stays');
  t.equal(server.counters.refusedStreams, 1, 'counted');
});

t.test('a peer that never reads (CVE-2019-9517): cut once the queue toward it passes the bound', async (t) => {
  // A budget that lets the PINGs through: the queue bound is what must cut this peer.
  const server = await startH2Server({ limits: { ...LIMITS, controlBurst: 1e9, controlPerSecond: 1e9 } });
  t.teardown(() => server.close());
  const conn = await connectRaw(server.address, { paused: true });
  t.teardown(() => conn.destroy());
  // Each PING is answered with a 17-octet ACK that nobody reads: the kernel's buffers fill
  // first (a few MB on loopback), then the gateway's own queue.
  const pings = Buffer.concat(Array.from({ length: 10_000 }, () => frame(FrameType.PING, 0, 0, Buffer.alloc(8))));
  for (let i = 0; i < 200 && server.counters.outgoingQueueFull === 0; i++) {
    if (!(await conn.write(pings))) break;
  }
  await waitFor(() => server.counters.outgoingQueueFull > 0, 10_000, 'the connection was cut');
  t.equal(server.counters.outgoingQueueFull, 1, 'cut at the queue bound, counted');
  await bystander(t, server);
});

t.test('a silent peer: no preface within the deadline -> closed; SETTINGS never acknowledged -> GOAWAY(SETTINGS_TIMEOUT)', async (t) => {
  const server = await withServer(t);
  const [host, port] = server.address.split(':') as [string, string];
  const silent = net.connect(Number(port), host);
  silent.on('error', () => {});
  silent.resume();
  t.teardown(() => silent.destroy());
  await new Promise<void>((resolve) => silent.once('close', () => resolve()));
  t.equal(server.counters.prefaceTimeout, 1, 'closed at the preface deadline, counted');

  const mute = net.connect(Number(port), host);
  mute.on('error', () => {});
  t.teardown(() => mute.destroy());
  const got: Buffer[] = [];
  mute.on('data', (c: Buffer) => got.push(c));
  mute.write(Buffer.concat([PREFACE, settingsFrame()]));
  await new Promise<void>((resolve) => mute.once('close', () => resolve()));
  const bytes = Buffer.concat(got);
  const goaway = bytes.indexOf(Buffer.from([FrameType.GOAWAY, 0, 0, 0, 0, 0]), 0);
  t.ok(goaway > 3 && bytes.readUInt32BE(goaway + 10) === ErrorCode.SETTINGS_TIMEOUT, 'GOAWAY(SETTINGS_TIMEOUT) when our SETTINGS was never acknowledged');
  t.equal(server.counters.settingsTimeout, 1, 'counted');
});
