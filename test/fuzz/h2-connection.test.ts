// Fuzzing lib/h2's server connection over real sockets: after the preface, arbitrary bytes,
// and valid traffic (requests, DATA, trailers, PING, SETTINGS, WINDOW_UPDATE, RST_STREAM) with
// one octet changed. Every connection either ends in a GOAWAY with a defined error code, or
// still answers PING; every RST_STREAM carries a defined code; nothing throws out of the
// connection (no internal error); a bystander connection is served throughout.
//
// FUZZ_RUNS / 10 runs per property (200 in `make test`, 20,000 in `make fuzz`); FUZZ_SEED replays.
import t from 'tap';
import fc from 'fast-check';
import { connectRaw, Flag, frame, FrameType, headerBlock, type RawH2 } from '../abuse/h2-wire.ts';
import { waitFor } from '../helpers/wait.ts';
import { startH2Server } from '../h2/support/h2-server.ts';

const RUNS = Math.max(1, Math.round(Number(process.env['FUZZ_RUNS'] ?? 2000) / 10));
const SEED = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);
const params = { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) };
const MAX_ERROR_CODE = 0xd;

const server = await startH2Server({ limits: { settingsTimeoutMs: 60_000 } });
t.teardown(() => server.close());

const PROBE = Buffer.from('probe-h2', 'latin1');
const probe = frame(FrameType.PING, 0, 0, PROBE);
const PROBES = Buffer.concat(Array.from({ length: 60 }, () => probe));
const answered = (c: RawH2): boolean => c.frames.some((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(PROBE));

/** Sends `bytes` after the handshake, then PINGs until answered or closed (a frame may claim more octets than sent). */
async function send(bytes: Buffer): Promise<RawH2> {
  const c = await connectRaw(server.address, { keepFrames: true });
  try {
    await c.write(Buffer.concat([bytes, probe]));
    const ended = (): boolean => c.closed || answered(c);
    for (let i = 0; i < 40 && !ended(); i++) await waitFor(ended, 250, 'answer').catch(() => c.write(PROBES));
    await waitFor(ended, 20_000, 'the connection closed or answered the PING');
    return c;
  } finally {
    c.destroy();
  }
}

function check(c: RawH2): void {
  for (const g of c.goaways) if (g.errorCode > MAX_ERROR_CODE) throw new Error(`GOAWAY with undefined code ${g.errorCode}`);
  for (const [id, code] of c.resets) if (code > MAX_ERROR_CODE) throw new Error(`RST_STREAM ${id} with undefined code ${code}`);
  if (c.closed && c.goaways.length === 0 && !answered(c)) throw new Error('closed without a GOAWAY');
  if (server.internalErrors.length > 0) throw new Error(`internal error: ${String(server.internalErrors[0])}`);
}

const request = (id: number, end: boolean): Buffer =>
  frame(FrameType.HEADERS, Flag.END_HEADERS | (end ? Flag.END_STREAM : 0), id, headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/x'], [':authority', 'h'], ['te', 'trailers']]));
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
/** Valid traffic for streams 1, 3, 5: a request, its body, trailers, and control frames between. */
const validFrame = fc.oneof(
  fc.constantFrom(1, 3, 5).map((id) => request(id, false)),
  fc.tuple(fc.constantFrom(1, 3, 5), fc.uint8Array({ maxLength: 64 }), fc.boolean()).map(([id, data, end]) => frame(FrameType.DATA, end ? Flag.END_STREAM : 0, id, Buffer.from(data))),
  fc.constantFrom(1, 3, 5).map((id) => frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, headerBlock([['grpc-status', '0']]))),
  fc.constant(frame(FrameType.PING, 0, 0, Buffer.alloc(8, 1))),
  fc.constant(frame(FrameType.SETTINGS, 0, 0)),
  fc.integer({ min: 1, max: 1000 }).map((n) => frame(FrameType.WINDOW_UPDATE, 0, 0, u32(n))),
  fc.constantFrom(1, 3, 5).map((id) => frame(FrameType.RST_STREAM, 0, id, u32(8))),
);

t.test('arbitrary bytes after the preface', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 200 }), async (bytes) => check(await send(Buffer.from(bytes)))),
    params,
  );
  t.same(server.internalErrors, [], 'no internal error');
});

t.test('valid traffic with one octet changed', async (t) => {
  let closed = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(validFrame, { minLength: 1, maxLength: 10 }), fc.nat(), fc.integer({ min: 0, max: 255 }), async (frames, at, octet) => {
      const bytes = Buffer.concat(frames);
      bytes[at % bytes.length] = octet;
      const c = await send(bytes);
      if (c.closed) closed++;
      check(c);
    }),
    params,
  );
  t.comment(`${RUNS} runs, ${closed} ended in a GOAWAY`);
  t.same(server.internalErrors, [], 'no internal error');
});

t.test('a bystander is served after all that', async (t) => {
  const c = await connectRaw(server.address, { keepFrames: true });
  t.teardown(() => c.destroy());
  const before = server.requests.length;
  await c.write(request(1, true));
  await waitFor(() => server.requests.length > before && c.responded.has(1), 10_000, 'the bystander request is answered');
  t.ok(c.responded.has(1), 'answered');
});
