// SIGTERM under load (no call that started before the drain is lost):
// eight grpc-js clients keep 400 unary calls in flight (the function takes 100-800 ms each)
// when SIGTERM arrives. Every call a client started before the signal must end OK, however
// close to the signal it was sent; calls started after it may be refused (UNAVAILABLE, the
// drain) but must never hang or fail otherwise; the function sees no call cancelled; the
// process exits 0. The plain drain (streams finish, --drain-timeout cuts) is in
// test/gateway/lifecycle.test.ts.
import t from 'tap';
import { echoClient } from '../helpers/echo-client.ts';
import type { EchoClient } from '../helpers/echo-client.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { fdCount, mib, setupGateway } from './abuse-helpers.ts';

const CLIENTS = 8;
const IN_FLIGHT_PER_CLIENT = 50;

interface Outcome {
  startedAt: number;
  status: number;
  details: string;
}

t.test('SIGTERM with 400 unary calls in flight: none that started before it fails; exit 0', async (t) => {
  const { gw, echo, auth } = await setupGateway(t, ['--drain-timeout', '20s']);
  const clients: EchoClient[] = Array.from({ length: CLIENTS }, () => echoClient(gw.h2c));
  let stopStarting = false;
  // Lanes still running when the test ends (a failed assertion) stop before their clients close.
  t.teardown(() => {
    stopStarting = true;
    clients.forEach((c) => c.close());
  });
  await Promise.all(clients.map((c) => c.waitForReady()));
  const rssBefore = gw.rssBytes();
  const fdsBefore = fdCount(gw.pid);

  const outcomes: Outcome[] = [];
  let started = 0;
  // Each client keeps IN_FLIGHT_PER_CLIENT calls going: a call that ends starts the next.
  const lane = async (c: EchoClient, lane: number): Promise<void> => {
    for (let i = 0; i < 10_000 && !stopStarting; i++) {
      const startedAt = performance.now();
      started++;
      const sleepMs = String(100 + ((lane * 37 + i * 53) % 700));
      const r = await c.unary({ ...auth, 'x-echo-sleep-ms': sleepMs }, {}, { deadlineMs: 30_000 });
      outcomes.push({ startedAt, status: r.status, details: r.details });
    }
  };
  const lanes: Array<Promise<void>> = [];
  for (const [ci, c] of clients.entries()) {
    for (let l = 0; l < IN_FLIGHT_PER_CLIENT; l++) lanes.push(lane(c, ci * IN_FLIGHT_PER_CLIENT + l));
  }
  // Under way: every lane has finished calls and the function holds about 400 at once.
  // The deadline is for a slow, busy machine; the condition is what the test needs.
  await waitFor(() => outcomes.length >= 1000 && echo.active >= CLIENTS * IN_FLIGHT_PER_CLIENT - 20, 90_000, 'load running');
  const cancelledBefore = echo.cancelled;
  const inFlightAtSignal = echo.active;
  const sigtermAt = performance.now();
  gw.signal('SIGTERM');
  const exited = gw.exited.then((e) => ({ ...e, at: performance.now() }));
  // The clients keep starting calls for a while after the signal, as real ones would.
  await sleep(1500);
  stopStarting = true;
  await Promise.all(lanes);

  const before = outcomes.filter((o) => o.startedAt < sigtermAt);
  const after = outcomes.filter((o) => o.startedAt >= sigtermAt);
  const failedBefore = before.filter((o) => o.status !== 0);
  t.comment(`${started} calls, ${inFlightAtSignal} in flight at the function when SIGTERM came; ${before.length} started before it, ${after.length} after`);
  t.same(
    failedBefore.slice(0, 5).map((o) => ({ ms: Math.round(o.startedAt - sigtermAt), status: o.status, details: o.details })),
    [],
    `every call started before SIGTERM ended OK (${failedBefore.length} of ${before.length} did not)`,
  );
  const afterStatuses = new Map<string, number>();
  for (const o of after) afterStatuses.set(String(o.status), (afterStatuses.get(String(o.status)) ?? 0) + 1);
  t.comment(`calls started after SIGTERM, by status: ${JSON.stringify(Object.fromEntries(afterStatuses))}`);
  t.ok([...afterStatuses.keys()].every((s) => s === '0' || s === '14'), 'calls started after SIGTERM ended OK or UNAVAILABLE (drain), nothing else');
  t.equal(echo.cancelled - cancelledBefore, 0, 'the function saw no call cancelled');

  const exit = await exited;
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'the gateway exited 0');
  // Before --drain-timeout: it exited because the calls were done, not because the drain cut them.
  t.ok(exit.at - sigtermAt < 20_000, `exited ${(exit.at - sigtermAt).toFixed(0)} ms after SIGTERM, before --drain-timeout (the last calls take under 1 s)`);
  t.comment(`gateway RSS before the drain ${mib(rssBefore)}, ${fdsBefore} fds`);
  t.same(gw.logLines().filter((l) => l['level'] === 'error'), [], 'nothing logged at level error');
  await echo.waitFor(() => echo.active === 0);
});
