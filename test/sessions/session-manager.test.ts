import t from 'tap';
import type { Test } from 'tap';
import { capShare, SOLE_REPLICA } from '../../lib/sessions/cap-share.ts';
import { EndpointLoad } from '../../lib/sessions/endpoint-load.ts';
import { ConnectionSessions } from '../../lib/sessions/connection-sessions.ts';
import { SessionManager } from '../../lib/sessions/session-manager.ts';
import { Registry } from '../../lib/registry/registry.ts';
import { isGrpcError, Status } from '../../lib/grpc/status.ts';
import { NO_SCALING, type Endpoint, type FunctionSpec, type RoutableFunction } from '../../lib/registry/types.ts';
import type { Session } from '../../lib/sessions/session.ts';
import { PendingSession } from '../../lib/sessions/pending-session.ts';
import { newSid, SessionKeyRing, type SessionClaims } from '../../lib/sessions/session-token.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { stubUpstreams } from '../helpers/stub-upstreams.ts';

const ep = (port: number): Endpoint => ({ host: '127.0.0.1', port, key: `127.0.0.1:${port}` });

t.test('EndpointLoad picks the fewest, honours the cap, ties to the first', async (t) => {
  const load = new EndpointLoad();
  const eps = [ep(1), ep(2), ep(3)];
  t.equal(load.pickFewest(eps, undefined)?.port, 1);
  load.acquire(eps[0]!.key);
  t.equal(load.pickFewest(eps, undefined)?.port, 2);
  load.acquire(eps[1]!.key);
  load.acquire(eps[2]!.key);
  t.equal(load.pickFewest(eps, undefined)?.port, 1, 'all equal again: first');
  t.equal(load.pickFewest(eps, () => 1), undefined, 'all at cap 1');
  load.release(eps[1]!.key);
  t.equal(load.pickFewest(eps, () => 1)?.port, 2);
  t.equal(load.count(eps[1]!.key), 0);
  t.notOk(load.snapshot().has(eps[1]!.key), 'released to zero leaves no entry');
});

const SECRET = 'a shared secret of at least thirty-two characters';

/** Replicas that resume each other's sessions share keys and a clock. */
function fixture(lingerMs: number, cap = 0, ports = [1, 2], keys = SessionKeyRing.fromSecrets([SECRET]), clock = new ManualClock()) {
  const registry = new Registry();
  const spec = (active: string, endpoints: Record<string, number[]>): FunctionSpec => ({
    name: 'f',
    namespace: 'default',
    functionId: 'fn',
    activeVersion: active,
    maxSessionsPerEndpoint: cap,
    scaling: NO_SCALING,
    versions: Object.entries(endpoints).map(([versionId, p]) => ({
      versionId,
      backend: { kind: 'static' as const, endpoints: p.map((n) => `127.0.0.1:${n}`) },
    })),
    origin: 'test',
  });
  registry.replaceFunctions([spec('v1', { v1: ports, v2: [9] })]);
  const upstreams = stubUpstreams();
  const manager = new SessionManager({ lingerMs, openUpstream: upstreams.open, keys, clock });
  const fn = (): RoutableFunction => registry.getFunction('fn') as RoutableFunction;
  /** Connections told that a pinned endpoint went away, by index of creation. */
  const gone: number[] = [];
  let made = 0;
  const connection = () => {
    const index = made++;
    return new ConnectionSessions(manager, () => gone.push(index));
  };
  return { registry, manager, fn, spec, connection, gone, upstreams, clock };
}

const ok = (t: Test, s: Session | PendingSession | { code: number }): Session => {
  t.notOk(isGrpcError(s), 'a session');
  t.notOk(s instanceof PendingSession, 'bound, not waiting');
  return s as Session;
};

const claims = (over: Partial<SessionClaims> = {}): SessionClaims => ({
  sid: newSid(),
  functionId: 'fn-é',
  versionId: 'v1',
  endpointKey: '[fd00::1]:50051',
  issuedAt: Date.now(),
  expiresAt: Date.now() + 60_000,
  ...over,
});

t.test('session tokens: what is sealed opens to the same claims, under any key of the ring', async (t) => {
  const old = SessionKeyRing.fromSecrets(['the old secret, thirty-two characters or more']);
  const rotated = SessionKeyRing.fromSecrets([SECRET, 'the old secret, thirty-two characters or more']);
  const c = claims();
  const token = old.seal(c);
  t.match(token, /^[A-Za-z0-9_-]+$/, 'base64url: fits a header and a cookie as it is');
  t.same(old.open(token), c);
  t.same(rotated.open(token), c, 'a ring that still lists the old key opens what it sealed');
  t.same(rotated.open(rotated.seal(c)), c);
  t.equal(old.open(rotated.seal(c)), undefined, 'a key the ring does not have: foreign');
  t.not(old.seal(c), old.seal(c), 'a fresh nonce each time');
  t.notMatch(Buffer.from(token, 'base64url').toString('latin1'), /fd00|fn-/, 'function and endpoint are not readable in the id');
});

t.test('session tokens: forged, tampered, garbled and foreign ids open to nothing', async (t) => {
  const ring = SessionKeyRing.fromSecrets([SECRET]);
  const token = ring.seal(claims());
  const body = Buffer.from(token, 'base64url');
  for (let i = 0; i < body.length; i++) {
    const bad = Buffer.from(body);
    bad[i] = (bad[i] as number) ^ 0x01;
    t.equal(ring.open(bad.toString('base64url')), undefined, `byte ${i} flipped`);
  }
  t.equal(ring.open(body.subarray(0, body.length - 1).toString('base64url')), undefined, 'truncated');
  t.equal(ring.open(Buffer.concat([body, Buffer.from([0])]).toString('base64url')), undefined, 'extended');
  t.equal(ring.open(token + '='), undefined, 'padded: not the canonical spelling');
  t.equal(ring.open(token.slice(0, 10) + '*' + token.slice(10)), undefined, 'junk character inside');
  for (const garbage of ['', 'x', '00000000-0000-0000-0000-000000000000', 'A'.repeat(200), 'A'.repeat(5000), '\u00e9\u0000']) {
    t.equal(ring.open(garbage), undefined, `garbage ${JSON.stringify(garbage.slice(0, 40))}`);
  }
  t.equal(SessionKeyRing.random().open(token), undefined, 'another process key');
  t.equal(SessionKeyRing.fromSecrets([SECRET + '!']).open(token), undefined, 'a different shared secret');
});

t.test('a connection pins per (function, version); promotion affects new sessions only', async (t) => {
  const { registry, manager, fn, spec, connection, upstreams } = fixture(1000);
  t.teardown(() => manager.close());
  const a = connection();
  const s1 = ok(t, a.acquire(fn(), undefined, undefined));
  t.equal(ok(t, a.acquire(fn(), undefined, undefined)).id, s1.id, 'same session on the same connection');
  t.equal(ok(t, a.acquire(fn(), 'v1', undefined)).id, s1.id, 'naming the pinned version is the same session');
  const v2 = ok(t, a.acquire(fn(), 'v2', undefined));
  t.not(v2.id, s1.id, 'another version is another session');
  registry.replaceFunctions([spec('v2', { v1: [1, 2], v2: [9] })]);
  t.equal(ok(t, a.acquire(fn(), undefined, undefined)).id, s1.id, 'promotion keeps the pinned session');
  t.equal(ok(t, a.acquire(fn(), 'v1', undefined)).id, s1.id, 'and naming v1 still reaches it');
  const b = connection();
  t.equal(ok(t, b.acquire(fn(), undefined, undefined)).endpoint.port, 9, 'a new connection gets the new active version');
  t.same(upstreams.opened, ['127.0.0.1:1', '127.0.0.1:9', '127.0.0.1:9'], 'each session gets its own upstream connection from the factory');
  t.same(upstreams.closed, [], '...kept while the session lives');
  a.closeAll();
  b.closeAll();
  t.equal(manager.liveCount(), 0);
  t.same(upstreams.closed.sort(), [...upstreams.opened].sort(), 'and closed when it ends');
});

t.test('resume: live and lingering sessions here; after linger + reseal period, NOT_FOUND', async (t) => {
  // linger 200 ms: tokens are resealed after 1 s (the floor) and live 1.2 s.
  const { manager, fn, connection, clock } = fixture(200);
  t.teardown(() => manager.close());
  const a = connection();
  const s1 = ok(t, a.acquire(fn(), undefined, undefined));
  const b = connection();
  const resumed = ok(t, b.acquire(fn(), undefined, s1.token));
  t.equal(resumed.id, s1.id);
  t.equal(resumed.token, s1.token, 'a fresh token is handed back as it is');
  t.equal(resumed.endpoint.key, s1.endpoint.key, 'resume lands on the same endpoint');
  t.match(connection().acquire(fn(), 'v2', s1.token), { code: Status.NOT_FOUND, message: 'no existing session found' }, 'other version');
  t.match(connection().acquire(fn(), undefined, s1.id), { code: Status.NOT_FOUND }, 'the bare sid is not an id');
  a.closeAll();
  b.closeAll();
  const c = connection();
  t.equal(ok(t, c.acquire(fn(), undefined, s1.token)).id, s1.id, 'ended, within linger: resumable');
  c.closeAll();
  clock.advance(1199);
  const d = connection();
  t.equal(ok(t, d.acquire(fn(), undefined, s1.token)).id, s1.id, 'linger over, token valid for 1 ms more: resumable by the token alone');
  d.closeAll();
  clock.advance(200);
  t.match(connection().acquire(fn(), undefined, s1.token), { code: Status.NOT_FOUND }, 'token expired and the linger over again');
});

t.test('linger: an ended session resumes here until --session-linger has passed since its last connection, even with its token expired', async (t) => {
  const { manager, fn, connection, clock } = fixture(200);
  t.teardown(() => manager.close());
  const a = connection();
  const s1 = ok(t, a.acquire(fn(), undefined, undefined));
  const token = s1.token;
  clock.advance(1300); // live all along, so its first token expires unused
  a.closeAll();
  for (const when of ['199 ms after the last close', 'another 199 ms on (the close restarted the linger)']) {
    clock.advance(199);
    const b = connection();
    t.equal(ok(t, b.acquire(fn(), undefined, token)).id, s1.id, `${when}: resumed, though its token expired`);
    b.closeAll();
  }
  clock.advance(200);
  t.match(connection().acquire(fn(), undefined, token), { code: Status.NOT_FOUND }, 'a linger after the last close: gone');
});

t.test('linger: thousands of ended sessions expire in the order they ended, those later still resumable', async (t) => {
  const { manager, fn, connection, clock } = fixture(200);
  t.teardown(() => manager.close());
  const conns = Array.from({ length: 1500 }, () => connection());
  const sessions = conns.map((c) => c.acquire(fn(), undefined, undefined));
  t.equal(sessions.filter((s) => isGrpcError(s) || s instanceof PendingSession).length, 0, '1500 sessions bound');
  const tokens = sessions.map((s) => (s as Session).token);
  clock.advance(1300); // every token expired: only this process's records resume them
  for (const c of conns.slice(0, 1200)) c.closeAll();
  clock.advance(100);
  for (const c of conns.slice(1200)) c.closeAll();
  clock.advance(150); // the first 1200 ended 250 ms ago, the rest 150 ms ago
  const resumes = (from: number, to: number): number => tokens.slice(from, to).filter((token) => {
    const c = connection();
    const got = c.acquire(fn(), undefined, token);
    c.closeAll();
    return !isGrpcError(got);
  }).length;
  t.equal(resumes(0, 1200), 0, 'those that ended over a linger ago are gone');
  t.equal(resumes(1200, 1500), 300, 'those that ended less than a linger ago resume');
  clock.advance(250);
  t.equal(resumes(1200, 1500), 0, 'a linger after their last close, they are gone too');
});

t.test('resume on another replica: same keys reach the same endpoint; other keys, expiry or a gone endpoint do not', async (t) => {
  const clock = new ManualClock();
  const one = fixture(200, 0, [1, 2], undefined, clock);
  const two = fixture(200, 0, [1, 2], undefined, clock);
  const stranger = fixture(200, 0, [1, 2], SessionKeyRing.random(), clock);
  t.teardown(() => [one, two, stranger].forEach((f) => f.manager.close()));
  // Replica two already holds a session on endpoint 1, so a new session there would go to 2.
  const busy = ok(t, two.connection().acquire(two.fn(), undefined, undefined));
  t.equal(busy.endpoint.port, 1);
  const a = one.connection();
  const s1 = ok(t, a.acquire(one.fn(), undefined, undefined));
  t.equal(s1.endpoint.port, 1);
  const firstToken = s1.token;
  const onTwo = two.connection();
  const there = ok(t, onTwo.acquire(two.fn(), undefined, firstToken));
  t.equal(there.endpoint.port, 1, 'the endpoint the token names, not the least loaded one');
  t.equal(there.id, s1.id);
  onTwo.closeAll(); // replica two forgets it after the linger
  t.match(stranger.connection().acquire(stranger.fn(), undefined, s1.token), { code: Status.NOT_FOUND, message: 'no existing session found' }, 'foreign key');

  // Long-lived on replica one: its token expires (linger 200 ms + reseal 1 s after sealing),
  // yet replica one knows the session is live.
  clock.advance(1200);
  t.match(two.connection().acquire(two.fn(), undefined, firstToken), { code: Status.NOT_FOUND }, 'expired token on a replica that holds no such session now');
  t.equal(ok(t, one.connection().acquire(one.fn(), undefined, firstToken)).id, s1.id, 'the issuing replica still resumes its live session');

  // An RPC after the reseal period moves the expiry on: same sid, new token.
  t.equal(ok(t, a.acquire(one.fn(), undefined, undefined)), s1, 'the same session');
  const fresh = s1.token;
  t.not(fresh, firstToken, 'resealed');
  t.equal(ok(t, two.connection().acquire(two.fn(), undefined, fresh)).endpoint.port, 1, 'the resealed token resumes on the other replica');

  two.registry.replaceFunctions([two.spec('v1', { v1: [2], v2: [9] })]);
  t.match(two.connection().acquire(two.fn(), undefined, fresh), { code: Status.NOT_FOUND }, 'endpoint gone there: NOT_FOUND');
});

t.test('endpoint removal: the sessions pinned there end, their connections are told, the next RPC re-pins', async (t) => {
  const { registry, manager, fn, spec, connection, gone } = fixture(200);
  t.teardown(() => manager.close());
  const conns = [connection(), connection(), connection()];
  const sessions = conns.map((c) => ok(t, c.acquire(fn(), undefined, undefined)));
  t.same(sessions.map((s) => s.endpoint.port), [1, 2, 1]);
  registry.replaceFunctions([spec('v1', { v1: [2], v2: [9] })]);
  manager.retireUnready((id) => registry.getFunction(id));
  t.same(gone, [0, 2], 'the two connections pinned to endpoint 1, once each');
  t.same(Object.fromEntries(manager.load.snapshot()), { '127.0.0.1:2': 1 }, 'their load is released');
  manager.retireUnready((id) => registry.getFunction(id));
  t.same(gone, [0, 2], 'nothing more to tell');
  const next = ok(t, conns[0]!.acquire(fn(), undefined, undefined));
  t.not(next.id, sessions[0]!.id, 'new session id');
  t.equal(next.endpoint.port, 2, 'on a ready endpoint');
  t.match(connection().acquire(fn(), undefined, sessions[2]!.token), { code: Status.NOT_FOUND }, 'the old id names a gone endpoint');
  registry.replaceFunctions([]);
  manager.retireUnready((id) => registry.getFunction(id));
  t.same([...gone].sort(), [0, 0, 1, 2], 'a deleted function retires every session of it');
  conns.forEach((c) => c.closeAll());
  t.equal(manager.liveCount(), 0);
});

t.test('cap: RESOURCE_EXHAUSTED when every endpoint is full, freed on close', async (t) => {
  const { manager, fn, connection } = fixture(1000, 1);
  t.teardown(() => manager.close());
  const conns = [connection(), connection()];
  const ports = conns.map((c) => ok(t, c.acquire(fn(), undefined, undefined)).endpoint.port).sort();
  t.same(ports, [1, 2]);
  const third = connection();
  t.match(third.acquire(fn(), undefined, undefined), { code: Status.RESOURCE_EXHAUSTED });
  conns[0]!.closeAll();
  t.notOk(isGrpcError(third.acquire(fn(), undefined, undefined)), 'slot freed');
  third.closeAll();
  conns[1]!.closeAll();
});

t.test('cap shares: over all processes, every endpoint gets exactly its cap, dealt out evenly', async (t) => {
  const keys = Array.from({ length: 200 }, (_, i) => `10.0.${i >> 8}.${i & 255}:50051`);
  for (let count = 1; count <= 5; count++) {
    for (let cap = 1; cap <= 7; cap++) {
      const bad = keys.filter((key) => {
        const shares = Array.from({ length: count }, (_, index) => capShare(cap, key, { index, count }));
        const sum = shares.reduce((a, b) => a + b, 0);
        return sum !== cap || shares.some((s) => s !== Math.floor(cap / count) && s !== Math.ceil(cap / count));
      });
      t.same(bad, [], `cap ${cap} over ${count} processes: shares add up to the cap, each floor or ceil`);
    }
  }
  // Cap 1, two processes: each holds the only slot of about half of the endpoints.
  const first = keys.filter((key) => capShare(1, key, { index: 0, count: 2 }) === 1).length;
  t.ok(first > 70 && first < 130, `process 0 holds the slot of ${first} of 200 endpoints`);
  t.equal(capShare(0, keys[0] as string, { index: 1, count: 3 }), Infinity, 'no cap: unlimited');
  t.equal(capShare(4, keys[0] as string, SOLE_REPLICA), 4, 'one process: the whole cap');
});

t.test('two gateway processes with cap 1 never put two sessions on one endpoint; one leaving frees its share', async (t) => {
  const ports = [1, 2, 3, 4];
  const a = fixture(1000, 1, ports);
  const b = fixture(1000, 1, ports);
  t.teardown(() => [a, b].forEach((f) => f.manager.close()));
  a.manager.setRank({ index: 0, count: 2 });
  b.manager.setRank({ index: 1, count: 2 });
  /** New sessions on `f` until it refuses one; the ports they got, and the refusal. */
  const fill = (f: ReturnType<typeof fixture>): [number[], { code: number; message: string }] => {
    const got: number[] = [];
    for (;;) {
      const s = f.connection().acquire(f.fn(), undefined, undefined);
      if (isGrpcError(s)) return [got, s];
      got.push(ok(t, s).endpoint.port);
    }
  };
  const [onA, fullA] = fill(a);
  const [onB] = fill(b);
  t.same([...onA, ...onB].sort(), ports, `each endpoint once over both processes (a: ${onA}, b: ${onB})`);
  t.match(fullA, { code: Status.RESOURCE_EXHAUSTED, message: "every endpoint of function fn version v1 already holds this gateway's share of its 1 sessions (2 gateway processes share the cap)" });
  // b went away: a alone holds the whole cap now.
  a.manager.setRank(SOLE_REPLICA);
  const [more, fullAlone] = fill(a);
  t.same([...onA, ...more].sort(), ports, 'a fills the endpoints b held');
  t.match(fullAlone, { code: Status.RESOURCE_EXHAUSTED, message: 'every endpoint of function fn version v1 already holds 1 sessions' });
});
