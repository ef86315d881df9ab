// The waiting room of lib/sessions without sockets: sessions wait first come, first served for
// room on a capped endpoint, a connection's later calls join its waiting session, a full queue
// refuses, the holdTimeout (on a manual clock) ends a wait, and the per-version counts (what
// KEDA is told) follow; SessionTotals adds the other replicas' published counts and says which
// version changed.
import t from 'tap';
import { isGrpcError, Status, type GrpcError } from '../../lib/grpc/status.ts';
import { Registry } from '../../lib/registry/registry.ts';
import type { FunctionSpec, RoutableFunction } from '../../lib/registry/types.ts';
import { SessionTotals } from '../../lib/scaling/session-totals.ts';
import { PendingSession, type SessionWaiter, type WaitOutcome } from '../../lib/sessions/pending-session.ts';
import { ConnectionSessions } from '../../lib/sessions/connection-sessions.ts';
import { SessionManager } from '../../lib/sessions/session-manager.ts';
import type { Session } from '../../lib/sessions/session.ts';
import { SessionKeyRing } from '../../lib/sessions/session-token.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { stubUpstreams } from '../helpers/stub-upstreams.ts';

const spec = (endpoints: string[], maxPendingSessions = 100): FunctionSpec => ({
  name: 'f',
  namespace: 'default',
  functionId: 'fn',
  activeVersion: 'v1',
  maxSessionsPerEndpoint: 1,
  scaling: { holdTimeoutMs: 60_000, maxPendingSessions, targetSessionsPerEndpoint: 1 },
  versions: [{ versionId: 'v1', backend: { kind: 'static', endpoints } }],
  origin: 'test',
});

function fixture(maxPendingSessions = 100) {
  const registry = new Registry();
  registry.replaceFunctions([spec(['127.0.0.1:1'], maxPendingSessions)]);
  const ended: WaitOutcome[] = [];
  /** [outcome, waitedMs] as metrics get them. */
  const waits: [WaitOutcome, number][] = [];
  const clock = new ManualClock();
  const manager = new SessionManager({
    lingerMs: 1000,
    openUpstream: stubUpstreams().open,
    keys: SessionKeyRing.random(),
    lookup: (id) => registry.getFunction(id),
    onWaitEnded: (_f, _v, outcome, waitedMs) => {
      ended.push(outcome);
      waits.push([outcome, waitedMs]);
    },
    clock,
  });
  const fn = (): RoutableFunction => registry.getFunction('fn') as RoutableFunction;
  return { registry, manager, fn, ended, waits, clock };
}

/** A waiter that records how its wait ended, and after how long. */
function waiter(): SessionWaiter & { session?: Session; error?: GrpcError; waitedMs?: number } {
  const w: SessionWaiter & { session?: Session; error?: GrpcError; waitedMs?: number } = {
    bound(session, waitedMs) {
      w.session = session;
      w.waitedMs = waitedMs;
    },
    failed(error, waitedMs) {
      w.error = error;
      w.waitedMs = waitedMs;
    },
  };
  return w;
}

t.test('first come, first served on a capped endpoint; a connection waits on one session', async (t) => {
  const { manager, fn, ended } = fixture();
  t.teardown(() => manager.close());
  const [a, b, c] = [0, 1, 2].map(() => new ConnectionSessions(manager, () => {})) as [ConnectionSessions, ConnectionSessions, ConnectionSessions];
  const held = a.acquire(fn(), undefined, undefined);
  t.notOk(isGrpcError(held) || held instanceof PendingSession, 'a takes the only slot');
  const pb = b.acquire(fn(), undefined, undefined);
  const pc = c.acquire(fn(), undefined, undefined);
  t.ok(pb instanceof PendingSession && pc instanceof PendingSession, 'b and c wait');
  t.equal(b.acquire(fn(), undefined, undefined), pb, "b's second call waits on b's session");
  const [wb1, wb2, wc] = [waiter(), waiter(), waiter()];
  manager.wait(pb as PendingSession, wb1);
  manager.wait(pb as PendingSession, wb2);
  manager.wait(pc as PendingSession, wc);
  t.same(manager.versions.get('fn', 'v1'), { functionId: 'fn', versionId: 'v1', open: 1, waiting: 2 });

  a.closeAll();
  t.ok(wb1.session && wb1.session === wb2.session, "b, first in line, is bound; both of its calls get its session");
  t.equal(wc.session, undefined, 'c still waits');
  t.equal(b.acquire(fn(), undefined, undefined), wb1.session, 'b now simply has its session');
  t.same(manager.versions.get('fn', 'v1'), { functionId: 'fn', versionId: 'v1', open: 1, waiting: 1 });
  b.closeAll();
  t.ok(wc.session, 'c is bound when b lets go');
  c.closeAll();
  t.equal(manager.versions.get('fn', 'v1'), undefined, 'nothing open or waiting');
  t.same(ended, ['bound', 'bound']);
});

t.test('the last call leaving ends the wait; a full queue refuses at once; a drain fails all', async (t) => {
  const { manager, fn, ended } = fixture(1);
  t.teardown(() => manager.close());
  const owner = new ConnectionSessions(manager, () => {});
  owner.acquire(fn(), undefined, undefined);
  const x = new ConnectionSessions(manager, () => {});
  const px = x.acquire(fn(), undefined, undefined) as PendingSession;
  const w = waiter();
  manager.wait(px, w);
  const full = new ConnectionSessions(manager, () => {}).acquire(fn(), undefined, undefined);
  t.match(full, { code: Status.RESOURCE_EXHAUSTED, message: /1 sessions already wait for function fn version v1/ });
  manager.leave(px, w, 'cancelled');
  t.equal(manager.waitingCount(), 0, 'its only call left: the session stops waiting');
  const y = new ConnectionSessions(manager, () => {});
  const py = y.acquire(fn(), undefined, undefined) as PendingSession;
  const wy = waiter();
  manager.wait(py, wy);
  manager.failWaiting();
  t.match(wy.error, { code: Status.UNAVAILABLE, message: /draining/ });
  t.same(ended, ['queue_full', 'cancelled', 'drain']);
  t.not(y.acquire(fn(), undefined, undefined), py, 'a failed wait is forgotten by its connection');
  owner.closeAll();
  y.closeAll();
});

t.test('holdTimeout: the wait fails when it has passed, not before; a session bound in time is not failed later', async (t) => {
  const { manager, fn, waits, clock } = fixture();
  t.teardown(() => manager.close());
  const owner = new ConnectionSessions(manager, () => {});
  owner.acquire(fn(), undefined, undefined);
  const late = new ConnectionSessions(manager, () => {}).acquire(fn(), undefined, undefined) as PendingSession;
  const wl = waiter();
  manager.wait(late, wl);
  clock.advance(30_000);
  const early = new ConnectionSessions(manager, () => {});
  const pe = early.acquire(fn(), undefined, undefined) as PendingSession;
  const we = waiter();
  manager.wait(pe, we);

  clock.advance(29_999);
  t.same([wl.error, manager.waitingCount()], [undefined, 2], "a millisecond before the first one's holdTimeout (1m): both still wait");
  clock.advance(1);
  t.match(wl.error, { code: Status.UNAVAILABLE, message: 'function fn version v1 had no ready endpoint with room for a new session after 1m' });
  t.equal(wl.waitedMs, 60_000, 'after waiting exactly the holdTimeout');
  t.equal(manager.waitingCount(), 1, 'the one that came later still waits');
  t.same(manager.versions.get('fn', 'v1'), { functionId: 'fn', versionId: 'v1', open: 1, waiting: 1 });

  owner.closeAll();
  t.equal(we.waitedMs, 30_000, 'room came: bound, after the 30 s it waited');
  t.ok(we.session, 'with a session');
  clock.advance(60_000);
  t.equal(we.error, undefined, 'its holdTimeout passing later fails nothing: the timer went with the wait');
  t.same(waits, [['timeout', 60_000], ['bound', 30_000]], 'what metrics are told');
  early.closeAll();
});

t.test('SessionTotals: own counts plus the peers\', and which version changed', async (t) => {
  const { manager } = fixture();
  const totals = new SessionTotals(manager.versions);
  const changed: string[] = [];
  const unsubscribe = totals.onChange((key) => changed.push(key));
  manager.versions.add('fn', 'v1', 1, 0);
  t.same(totals.of('fn', 'v1'), { open: 1, waiting: 0 });
  totals.setPeers(new Map([['gw-b', new Map([['fn/v1', [2, 3] as const], ['other/v9', [1, 0] as const]])]]));
  t.same(totals.of('fn', 'v1'), { open: 3, waiting: 3 });
  t.same(totals.of('other', 'v9'), { open: 1, waiting: 0 });
  totals.setPeers(new Map([['gw-b', new Map([['fn/v1', [2, 3] as const]])]]));
  t.same(totals.of('other', 'v9'), { open: 0, waiting: 0 }, 'a version a peer no longer reports counts nothing');
  t.same(changed, ['fn/v1', 'fn/v1', 'other/v9', 'other/v9'], 'own change, then each version a peer changed; an unchanged one is not repeated');
  t.same([...totals.own()], [['fn/v1', [1, 0]]], 'what this process publishes');
  unsubscribe();
  manager.versions.add('fn', 'v1', -1, 0);
  t.equal(changed.length, 4, 'unsubscribed');
});
