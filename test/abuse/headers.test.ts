// Request headers as an attack surface (abuse limits, docs/reliability.md): a header list over the
// advertised SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB), 10,000 metadata keys (over the 128 fields
// a request may carry), an endless CONTINUATION sequence, and grpc-timeout values that are huge
// (no deadline: the call works) or malformed (INVALID_ARGUMENT). Each oversized request is
// refused before the gateway's pipeline sees it (RST_STREAM ENHANCE_YOUR_CALM, which gRPC
// clients report as RESOURCE_EXHAUSTED), never reaches the function, leaves the connection
// usable, and costs no memory that stays.
import t from 'tap';
import { echoClient } from '../helpers/echo-client.ts';
import { metric } from '../helpers/gateway.ts';
import { decodeEchoReply, ECHO_PATHS, encodeEchoRequest } from '../helpers/echo-proto.ts';
import { decodeGrpcMessage, grpcFrame, parseGrpcFrames, rawGrpcCall } from '../helpers/http2-raw.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { cpuMs, expectBackendIdle, expectNoErrorLogs, expectSettled, FN, MiB, resources, setupGateway, startBystander, startRawGrpcBackend } from './abuse-helpers.ts';
import type { RawGrpcBackend } from './abuse-helpers.ts';
import { connectRaw, ErrorCode, Flag, frame, FrameType, grpcRequestHeaders, headerBlock, headersFrame } from './h2-wire.ts';

const MAX_FRAME = 16_384;

/** A header block cut into HEADERS + CONTINUATION frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE). */
function headerFrames(streamId: number, block: Buffer): Buffer {
  const frames: Buffer[] = [];
  for (let at = 0; at < block.length; at += MAX_FRAME) {
    const type = at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
    const flags = at + MAX_FRAME >= block.length ? Flag.END_HEADERS : 0;
    frames.push(frame(type, flags, streamId, block.subarray(at, at + MAX_FRAME)));
  }
  return Buffer.concat(frames);
}

t.test('oversized header lists', async (t) => {
  const { gw, echo, auth } = await setupGateway(t);
  const bystander = await startBystander(t, gw, auth);
  const before = await resources(gw);
  const callsBefore = echo.calls;
  const base = grpcRequestHeaders(gw.h2c, ECHO_PATHS.Bidi, auth);
  const manyKeys = Array.from({ length: 10_000 }, (_, i) => [`x-key-${i}`, 'v'] as [string, string]);

  await t.test('10,000 metadata keys (a 136 KiB header block in 9 frames), 200 times on one connection', async (t) => {
    const conn = await connectRaw(gw.h2c);
    t.teardown(() => conn.destroy());
    const block = headerBlock([...base, ...manyKeys]);
    const cpuBefore = cpuMs(gw.pid);
    const N = 200;
    for (let i = 0; i < N; i++) await conn.write(headerFrames(1 + 2 * i, block));
    await waitFor(() => conn.resets.size === N || conn.closed, 10_000, `${N} refusals`);
    const cpu = cpuMs(gw.pid) - cpuBefore;
    t.equal(conn.closed, false, 'the connection stays open');
    t.same([...new Set(conn.resets.values())], [ErrorCode.ENHANCE_YOUR_CALM], `each request refused with RST_STREAM(ENHANCE_YOUR_CALM) (${conn.resets.size})`);
    t.equal(conn.responded.size, 0, 'none was answered as a call');
    t.comment(`${N} requests of ${(block.length / 1024).toFixed(0)} KiB headers: ${cpu} ms of gateway CPU (${((cpu * 1000) / N).toFixed(0)} us each)`);
    t.ok(cpu < 5000, 'CPU bounded');
    // The same connection then carries a normal call.
    const good = 1 + 2 * N;
    await conn.write(headersFrame(good, base));
    await waitFor(() => conn.responded.has(good), 5000, 'a normal call on the same connection is answered');
    t.equal(conn.resets.has(good), false, 'a normal call on the same connection is served');
  });

  await t.test('a header list over 64 KiB (SETTINGS_MAX_HEADER_LIST_SIZE) in fields of 16 KB', async (t) => {
    const conn = await connectRaw(gw.h2c);
    t.teardown(() => conn.destroy());
    const big = Array.from({ length: 5 }, (_, i) => [`x-big-${i}`, 'a'.repeat(16_000)] as [string, string]);
    await conn.write(headerFrames(1, headerBlock([...base, ...big])));
    await waitFor(() => conn.resets.has(1) || conn.closed, 5000, 'refusal');
    t.equal(conn.resets.get(1), ErrorCode.ENHANCE_YOUR_CALM, 'RST_STREAM(ENHANCE_YOUR_CALM)');
    t.equal(conn.closed, false, 'the connection stays open');
  });

  await t.test('one header field over 64 KiB: the connection ends with GOAWAY(COMPRESSION_ERROR)', async (t) => {
    // A field this long cannot be decoded at all, so the HPACK state is lost: a connection error.
    const conn = await connectRaw(gw.h2c);
    t.teardown(() => conn.destroy());
    await conn.write(headerFrames(1, headerBlock([...base, ['x-big', 'a'.repeat(80 * 1024)]])));
    await conn.waitClosed(5000);
    t.same(conn.goaways.map((g) => g.errorCode), [ErrorCode.COMPRESSION_ERROR], 'GOAWAY(COMPRESSION_ERROR), then closed');
  });

  await t.test('grpc-js: the same requests end RESOURCE_EXHAUSTED, and the channel serves the next call', async (t) => {
    const c = echoClient(gw.h2c);
    t.teardown(() => c.close());
    const md: Record<string, string> = { ...auth };
    for (const [k, v] of manyKeys) md[k] = v;
    const many = await c.unary(md, {}, { deadlineMs: 5000 });
    t.equal(many.status, 8, `10,000 keys: RESOURCE_EXHAUSTED (${many.details})`);
    const fields129 = await c.unary(Object.fromEntries([...Object.entries(auth), ...manyKeys.slice(0, 129)]), {}, { deadlineMs: 5000 });
    t.equal(fields129.status, 8, `129 custom keys (over the 128 fields of a request): RESOURCE_EXHAUSTED (${fields129.details})`);
    const fields100 = await c.unary(Object.fromEntries([...Object.entries(auth), ...manyKeys.slice(0, 100)]), {}, { deadlineMs: 5000 });
    t.equal(fields100.status, 0, `100 custom keys: OK (${fields100.details})`);
    const big = await c.unary({ ...auth, 'x-big': 'a'.repeat(100 * 1024) }, {}, { deadlineMs: 5000 });
    t.equal(big.status, 8, `a 100 KiB value: RESOURCE_EXHAUSTED (${big.details})`);
    const after = await c.unary(auth);
    t.equal(after.status, 0, `the next call on the channel: OK (${after.details})`);
  });

  await t.test('an endless CONTINUATION sequence ends the connection', async (t) => {
    const conn = await connectRaw(gw.h2c);
    t.teardown(() => conn.destroy());
    await conn.write(frame(FrameType.HEADERS, 0, 1, headerBlock(base)));
    let sent = 0;
    for (; sent < 10_000 && !conn.closed; sent++) {
      if (!(await conn.write(frame(FrameType.CONTINUATION, 0, 1, headerBlock([[`x-c${sent}`, 'b'.repeat(1000)]]))))) break;
      if (sent % 10 === 9) await sleep(1); // let the gateway's answer arrive
    }
    await conn.waitClosed(5000);
    // What the client managed to send before it saw the close depends on the machine's load;
    // what counts is that the gateway cut the flood at its limit (32 frames) and said so.
    t.ok(sent < 10_000, `closed by the gateway, after the client had sent ${sent} CONTINUATION frames`);
    t.ok((await metric(gw, 'fngate_http2_protections_total{protection="continuation_flood",side="client"}')) >= 1, 'counted as a CONTINUATION flood');
  });

  await t.test('nothing reached the function; the gateway is where it was', async (t) => {
    const oversized = echo.callLog.slice(callsBefore).filter((c) => /x-key-200|x-big|x-c0/.test(c.metadata));
    t.same(oversized, [], 'no oversized request reached the function');
    await bystander.check(t, 'after the oversized headers');
    await expectSettled(t, gw, echo, before, 1, { rssGrowth: 32 * MiB, peakGrowth: 64 * MiB });
    await bystander.finish(t);
    await expectBackendIdle(t, echo);
    expectNoErrorLogs(t, gw);
  });
});

t.test('grpc-timeout', async (t) => {
  // The huge values go to a backend that ignores grpc-timeout: grpc-js servers cut a timeout
  // to 32 bits (`| 0`) and expire most of these at once themselves, which is not the gateway's doing.
  let raw: RawGrpcBackend | undefined;
  const { gw, echo, auth } = await setupGateway(t, [], {
    before: async () => {
      raw = await startRawGrpcBackend();
      t.teardown(() => raw?.close());
    },
    functions: (e) => [
      { name: 'abuse', functionId: FN, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [e.address] }] },
      { name: 'raw', functionId: 'fn-raw', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [raw?.address ?? ''] }] },
    ],
  });
  const body = [grpcFrame(encodeEchoRequest({}))];
  const call = (timeout: string | string[], extra: Record<string, string> = {}) =>
    rawGrpcCall(gw.h2c, { ':path': ECHO_PATHS.Unary, ...auth, ...extra, 'grpc-timeout': timeout }, body, { timeoutMs: 10_000 });

  await t.test('huge values mean no deadline: the call works, is not cut, and the header is passed on', async (t) => {
    for (const timeout of ['99999999H', '99999999M', '99999999S', '99999999m', '2147484S']) {
      const r = await call(timeout, { 'function-id': 'fn-raw', 'x-sleep-ms': '300' });
      t.equal(r.trailers['grpc-status'] ?? r.headers['grpc-status'], '0', `grpc-timeout ${timeout}: OK (${decodeGrpcMessage(r.trailers['grpc-message'] ?? r.headers['grpc-message'])})`);
      const reply = parseGrpcFrames(r.data)[0];
      t.equal(reply === undefined ? undefined : decodeEchoReply(reply).metadata, `grpc-timeout: ${timeout}`, `grpc-timeout ${timeout}: passed on unchanged`);
    }
    // grpc-js clients send a far deadline as such a header too.
    const c = echoClient(gw.h2c);
    t.teardown(() => c.close());
    const far = await c.unary({ ...auth, 'function-id': 'fn-raw' }, {}, { deadlineMs: 10 * 365 * 24 * 3600 * 1000 });
    t.equal(far.status, 0, `grpc-js with a 10-year deadline: OK (${far.details})`);
    t.match(far.reply?.metadata, /^grpc-timeout: \d{1,8}[HMS]$/, `sent as ${far.reply?.metadata}`);
  });

  await t.test('malformed values: INVALID_ARGUMENT, the call never reaches the function', async (t) => {
    const callsBefore = echo.calls;
    // (A value with leading or trailing whitespace is not a valid HTTP/2 field at all: nghttp2 drops it.)
    const bad = ['', '1', 'S', '123456789H', '-1S', '1.5S', '1s', '1 S', '0x10S', '1SS', '\u0661S', '+1S', '1e3m', 'abcH'];
    for (const timeout of bad) {
      const r = await call(timeout);
      t.equal(r.headers[':status'], 200, `${JSON.stringify(timeout)}: HTTP 200`);
      t.equal(r.headers['grpc-status'], '3', `${JSON.stringify(timeout)}: INVALID_ARGUMENT, trailers-only`);
      t.equal(decodeGrpcMessage(r.headers['grpc-message']), 'malformed grpc-timeout metadata', `${JSON.stringify(timeout)}: says why`);
    }
    const twice = await call(['1S', '2S']);
    t.equal(twice.headers['grpc-status'], '3', 'two grpc-timeout headers: INVALID_ARGUMENT');
    t.equal(echo.calls, callsBefore, 'none reached the function');
  });

  await t.test('the smallest values expire at once: DEADLINE_EXCEEDED from the gateway', async (t) => {
    // To the backend that ignores grpc-timeout (a grpc-js one would expire these itself), so
    // only the gateway can end its calls before their 2 s answer.
    const backend = raw as RawGrpcBackend;
    const callsBefore = backend.calls;
    const cancelledBefore = backend.cancelled;
    // 200m as well: long enough for the function's stream to be open when the deadline comes.
    for (const timeout of ['0S', '1n', '1u', '1m', '200m']) {
      const r = await call(timeout, { 'function-id': 'fn-raw', 'x-sleep-ms': '2000' });
      t.equal(r.headers['grpc-status'] ?? r.trailers['grpc-status'], '4', `grpc-timeout ${timeout}: DEADLINE_EXCEEDED`);
    }
    await waitFor(() => backend.open === 0, 5000, 'the function streams are closed');
    // A call can expire before its stream reaches the function at all; every one that did was cut.
    t.ok(backend.calls - callsBefore >= 1, 'the function saw at least the 200m call');
    t.equal(backend.cancelled - cancelledBefore, backend.calls - callsBefore, 'every function stream that was opened was reset with CANCEL');
    expectNoErrorLogs(t, gw);
  });
});
