// The default idle timeout (docs/reference.md, Connections: `--idle-timeout` defaults to 30s), tested
// once at its real value: no --idle-timeout flag, no FNGATE_IDLE_TIMEOUT, no config file.
// This file takes about 31 s.
import t from 'tap';
import http2 from 'node:http2';
import { startGateway } from '../helpers/gateway.ts';

t.test('without --idle-timeout an idle connection gets GOAWAY(NO_ERROR) after 30 s', async (t) => {
  // No functions or keys are needed: the connection never opens a stream.
  const gw = await startGateway([]);
  t.teardown(() => gw.stop());

  const session = http2.connect(`http://${gw.h2c}`);
  t.teardown(() => session.destroy());
  const goaways: Array<{ errorCode: number; lastStreamID: number; at: number }> = [];
  session.on('goaway', (errorCode, lastStreamID) => goaways.push({ errorCode, lastStreamID, at: performance.now() }));
  session.on('error', () => {});
  const connectedAt = await new Promise<number>((resolve, reject) => {
    session.once('connect', () => resolve(performance.now()));
    session.once('close', () => reject(new Error('closed before connecting')));
  });
  // Waited for, then placed: a timer never fires early, so a GOAWAY at 29 s or later rules out a
  // shorter default whatever the machine's load.
  const closedAt = await new Promise<number>((resolve) => {
    const timer = setTimeout(() => resolve(NaN), 45_000);
    session.once('close', () => {
      clearTimeout(timer);
      resolve(performance.now());
    });
  });
  t.ok(goaways.length >= 1, `GOAWAY received: ${JSON.stringify(goaways)}`);
  t.ok(goaways.every((g) => g.errorCode === http2.constants.NGHTTP2_NO_ERROR), 'GOAWAY NO_ERROR');
  const goawayAfter = (goaways[0]?.at ?? NaN) - connectedAt;
  t.ok(goawayAfter >= 29_000 && goawayAfter <= 33_000, `GOAWAY ${goawayAfter.toFixed(0)} ms after connecting (29-33 s)`);
  const closedAfter = closedAt - connectedAt;
  t.ok(closedAfter >= 29_000 && closedAfter <= 33_000, `connection closed ${closedAfter.toFixed(0)} ms after connecting`);
});
