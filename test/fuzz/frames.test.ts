// Frame fuzzing against a running gateway (one worker, so a crash is not hidden by a restart):
// a valid, authenticated request HEADERS frame followed IN THE SAME WRITE by a connection error
// of each kind, then by random frames (fast-check). The write is tried both as the connection's
// first (preface + SETTINGS + HEADERS + the rest: the HTTP/2 layer then tears the connection down
// before the request reaches the gateway's pipeline) and after the SETTINGS exchange. In every
// case the connection ends in a GOAWAY or keeps answering PING, the process stays up, and a
// bystander on its own connection keeps its held stream and its calls.
//
// FUZZ_RUNS sets the runs (each run here is a live connection, so a tenth of FUZZ_RUNS: 200 in
// `make test`, 20,000 in `make fuzz`). FUZZ_SEED=<seed> replays a failure.
import t from 'tap';
import fc from 'fast-check';
import { expectSettled, isRunning, resources, setupGateway, startBystander } from '../abuse/abuse-helpers.ts';
import { connectRaw, ErrorCode, Flag, frame, FrameType, grpcRequestHeaders, headersFrame, PREFACE, settingsFrame } from '../abuse/h2-wire.ts';
import type { RawH2 } from '../abuse/h2-wire.ts';
import { ECHO_PATHS } from '../helpers/echo-proto.ts';
import { waitFor } from '../helpers/wait.ts';

const RUNS = Math.max(1, Math.round(Number(process.env['FUZZ_RUNS'] ?? 2000) / 10));
const SEED = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);

const FRAME_SIZE_ERROR = 0x6;
const FLOW_CONTROL_ERROR = 0x3;
const MAX_FRAME_SIZE = 16_384;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};
const setting = (id: number, value: number): Buffer => {
  const b = Buffer.alloc(6);
  b.writeUInt16BE(id, 0);
  b.writeUInt32BE(value >>> 0, 2);
  return b;
};
/** A PING the gateway must answer if the connection still stands: the end of every write. */
const PROBE = Buffer.from('fngate-p', 'latin1');
const probe = (): Buffer => frame(FrameType.PING, 0, 0, PROBE);
const probeAnswered = (conn: RawH2): boolean =>
  conn.frames.some((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(PROBE));

/** Each connection error RFC 9113 names, as the frame(s) that follow a valid HEADERS on stream 1. */
const CONNECTION_ERRORS: ReadonlyArray<{ name: string; frames: Buffer; code: number }> = [
  { name: 'DATA longer than SETTINGS_MAX_FRAME_SIZE', frames: frame(FrameType.DATA, 0, 1, Buffer.alloc(MAX_FRAME_SIZE + 1)), code: FRAME_SIZE_ERROR },
  { name: 'DATA on stream 0', frames: frame(FrameType.DATA, 0, 0, Buffer.alloc(4)), code: ErrorCode.PROTOCOL_ERROR },
  { name: 'HEADERS on an even (server-initiated) stream id', frames: frame(FrameType.HEADERS, Flag.END_HEADERS, 2, Buffer.from([0x82])), code: ErrorCode.PROTOCOL_ERROR },
  {
    name: 'connection WINDOW_UPDATE overflowing 2^31-1',
    frames: Buffer.concat([frame(FrameType.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)), frame(FrameType.WINDOW_UPDATE, 0, 0, u32(0x7fffffff))]),
    code: FLOW_CONTROL_ERROR,
  },
  { name: 'SETTINGS_ENABLE_PUSH = 2', frames: frame(FrameType.SETTINGS, 0, 0, setting(SETTINGS_ENABLE_PUSH, 2)), code: ErrorCode.PROTOCOL_ERROR },
  {
    name: 'SETTINGS_INITIAL_WINDOW_SIZE = 2^31',
    frames: frame(FrameType.SETTINGS, 0, 0, setting(SETTINGS_INITIAL_WINDOW_SIZE, 0x80000000)),
    code: FLOW_CONTROL_ERROR,
  },
  { name: 'SETTINGS with a length not a multiple of 6', frames: frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(5)), code: FRAME_SIZE_ERROR },
  { name: 'an unknown frame type on stream 0, longer than SETTINGS_MAX_FRAME_SIZE', frames: frame(0x42, 0, 0, Buffer.alloc(MAX_FRAME_SIZE + 1)), code: FRAME_SIZE_ERROR },
  { name: 'CONTINUATION without HEADERS', frames: frame(FrameType.CONTINUATION, Flag.END_HEADERS, 3, Buffer.from([0x82])), code: ErrorCode.PROTOCOL_ERROR },
  { name: 'PING with 7 bytes', frames: frame(FrameType.PING, 0, 0, Buffer.alloc(7)), code: FRAME_SIZE_ERROR },
  { name: 'WINDOW_UPDATE of 0 on stream 0', frames: frame(FrameType.WINDOW_UPDATE, 0, 0, u32(0)), code: ErrorCode.PROTOCOL_ERROR },
];

const { gw, echo, auth } = await setupGateway(t, ['--workers', '1']);
const requestHeaders = (streamId: number): Buffer => headersFrame(streamId, grpcRequestHeaders(gw.h2c, ECHO_PATHS.Unary, auth));

/**
 * Sends `body` after a valid HEADERS on stream 1, in one write, then a PING; resolves once the
 * connection ended or answered the PING. A frame whose length field claims more than was sent
 * swallows what follows, the PING included, so PINGs keep coming (1 KiB at a time, enough to fill
 * any frame the gateway would accept) until one is answered or the connection is closed.
 */
async function attack(body: Buffer, firstWrite: boolean): Promise<RawH2> {
  const conn = await connectRaw(gw.h2c, { preface: !firstWrite, keepFrames: true });
  const head = firstWrite ? [PREFACE, settingsFrame()] : [];
  const ended = (): boolean => conn.closed || probeAnswered(conn);
  try {
    await conn.write(Buffer.concat([...head, requestHeaders(1), body, probe()]));
    for (let i = 0; i < 40 && !ended(); i++) {
      await waitFor(ended, 250, 'answer').catch(() => conn.write(PROBES));
    }
    await waitFor(ended, 20_000, 'the connection closed or answered the PING');
    return conn;
  } catch (err) {
    conn.destroy();
    throw err;
  }
}
const PROBES = Buffer.concat(Array.from({ length: 60 }, probe));


const bystander = await startBystander(t, gw, auth);
const before = await resources(gw);

t.test('a valid HEADERS then each kind of connection error, in one write', async (t) => {
  for (const firstWrite of [true, false]) {
    for (const c of CONNECTION_ERRORS) {
      const conn = await attack(c.frames, firstWrite);
      await conn.waitClosed(10_000).catch(() => {});
      conn.destroy();
      const codes = conn.goaways.map((g) => g.errorCode);
      t.same(codes, [c.code], `${c.name}${firstWrite ? ' (first write)' : ''}: GOAWAY ${codes.join(',')} (${conn.goaways[0]?.debug ?? ''}), closed`);
      t.equal(conn.closed, true, `${c.name}: the connection was closed`);
      t.equal(isRunning(gw.pid), true, `${c.name}: the gateway is still running`);
    }
  }
  await bystander.check(t, 'after every connection error');
});

// Random frames behind the HEADERS: any type (the ten defined and unknown ones), flags, a
// stream id from a set that hits the interesting cases, a payload, and a length field that may
// lie about it.
const streamId = fc.oneof(fc.constantFrom(0, 1, 2, 3, 5, 0x7fffffff), fc.integer({ min: 0, max: 0x7fffffff }));
const anyFrame = fc
  .record({
    type: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 10, max: 255 })),
    flags: fc.integer({ min: 0, max: 255 }),
    streamId,
    payload: fc.uint8Array({ maxLength: 48 }),
    lie: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -8, max: 64 }) }),
  })
  .map(({ type, flags, streamId, payload, lie }) => {
    const f = frame(type, flags, streamId, Buffer.from(payload));
    if (lie !== 0) f.writeUIntBE(Math.max(0, payload.length + lie), 0, 3);
    return f;
  });

t.test('a valid HEADERS then random frames, in one write: the gateway answers or closes, never falls over', async (t) => {
  let closed = 0;
  let answered = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(anyFrame, { minLength: 1, maxLength: 6 }), fc.boolean(), async (frames, firstWrite) => {
      const conn = await attack(Buffer.concat(frames), firstWrite);
      if (conn.closed) closed++;
      else answered++;
      conn.destroy();
      if (!isRunning(gw.pid)) throw new Error(`the gateway exited; its last log lines:\n${gw.logs().slice(-2000)}`);
    }),
    { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
  );
  t.comment(`${RUNS} runs: ${closed} connections closed by the gateway, ${answered} still answering`);
  t.equal(isRunning(gw.pid), true, 'the gateway is still running');
  await bystander.check(t, 'after the random frames');
});

t.test('nothing is left behind and nothing was an internal error', async (t) => {
  await expectSettled(t, gw, echo, before, 1);
  await bystander.finish(t);
  t.same(
    gw.logLines().filter((l) => l['level'] === 'error'),
    [],
    'nothing logged at level error (no handler threw)',
  );
});
