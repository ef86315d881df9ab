// One write, the first of a connection, that holds the preface, SETTINGS, a valid request HEADERS
// frame and, right behind it, a frame that is a connection error (here DATA longer than
// SETTINGS_MAX_FRAME_SIZE; docs/reliability.md has the case). The HTTP/2 layer answers
// GOAWAY(FRAME_SIZE_ERROR) and tears the connection down while the request it already parsed is
// still on its way to the gateway's pipeline; that request must find its connection gone and be
// dropped, not take the process with it. Checked on a one-worker gateway: the process stays up,
// a bystander on another connection keeps its held stream and its calls, and the attacker's
// connection gets GOAWAY(FRAME_SIZE_ERROR). More connection errors after HEADERS, and random
// frames after HEADERS, are in test/fuzz/frames.test.ts.
import t from 'tap';
import { ECHO_PATHS } from '../helpers/echo-proto.ts';
import { waitFor } from '../helpers/wait.ts';
import { expectSettled, isRunning, resources, setupGateway, startBystander } from './abuse-helpers.ts';
import { connectRaw, frame, FrameType, grpcRequestHeaders, headersFrame, PREFACE, settingsFrame } from './h2-wire.ts';

const FRAME_SIZE_ERROR = 0x6;
const DEFAULT_MAX_FRAME_SIZE = 16_384;

t.test('HEADERS then an oversized DATA frame in one write: GOAWAY(FRAME_SIZE_ERROR), the process serves on', async (t) => {
  const { gw, echo, auth } = await setupGateway(t, ['--workers', '1']);
  const bystander = await startBystander(t, gw, auth);
  const before = await resources(gw);

  for (let round = 0; round < 20; round++) {
    const conn = await connectRaw(gw.h2c, { preface: false });
    t.teardown(() => conn.destroy());
    const headers = headersFrame(1, grpcRequestHeaders(gw.h2c, ECHO_PATHS.Unary, auth));
    const oversized = frame(FrameType.DATA, 0, 1, Buffer.alloc(DEFAULT_MAX_FRAME_SIZE + 1));
    await conn.write(Buffer.concat([PREFACE, settingsFrame(), headers, oversized]));
    await waitFor(() => conn.goaways.length > 0 || conn.closed, 10_000, 'the gateway answers the attack');
    await conn.waitClosed(10_000);
    if (round === 0) {
      t.same(
        conn.goaways.map((g) => g.errorCode),
        [FRAME_SIZE_ERROR],
        'the attacking connection got GOAWAY(FRAME_SIZE_ERROR) and was closed',
      );
    } else if (conn.goaways[0]?.errorCode !== FRAME_SIZE_ERROR) {
      t.fail(`round ${round}: GOAWAY ${JSON.stringify(conn.goaways)}`);
    }
  }

  await bystander.check(t, 'after 20 attacking writes');
  t.equal(isRunning(gw.pid), true, 'the gateway process is still running');
  await expectSettled(t, gw, echo, before, 1);
  await bystander.finish(t);
  t.same(gw.logLines().filter((l) => l['level'] === 'error'), [], 'nothing logged at level error');
});

