import t from 'tap';
import type { Test } from 'tap';
import { EndpointLoad } from '../../lib/sessions/endpoint-load.ts';
import { SessionManager } from '../../lib/sessions/session-manager.ts';
import { Registry } from '../../lib/registry/registry.ts';
import { isGrpcError, Status } from '../../lib/grpc/status.ts';
import { defaultUpstreamTuning } from '../../lib/upstreams/upstream-connection.ts';
import type { Endpoint, FunctionSpec, RoutableFunction } from '../../lib/registry/types.ts';
import type { Session } from '../../lib/sessions/session.ts';

const ep = (port: number): Endpoint => ({ host: '127.0.0.1', port, key: `127.0.0.1:${port}` });

t.test('EndpointLoad picks the fewest, honours the cap, ties to the first', async (t) => {
  const load = new EndpointLoad();
  const eps = [ep(1), ep(2), ep(3)];
  t.equal(load.pickFewest(eps, 0)?.port, 1);
  load.acquire(eps[0]!.key);
  t.equal(load.pickFewest(eps, 0)?.port, 2);
  load.acquire(eps[1]!.key);
  load.acquire(eps[2]!.key);
  t.equal(load.pickFewest(eps, 0)?.port, 1, 'all equal again: first');
  t.equal(load.pickFewest(eps, 1), undefined, 'all at cap 1');
  load.release(eps[1]!.key);
  t.equal(load.pickFewest(eps, 1)?.port, 2);
  t.equal(load.count(eps[1]!.key), 0);
  t.notOk(load.snapshot().has(eps[1]!.key), 'released to zero leaves no entry');
});

function fixture(lingerMs: number, cap = 0, ports = [1, 2]) {
  const registry = new Registry();
  const spec = (active: string, endpoints: Record<string, number[]>): FunctionSpec => ({
    name: 'f',
    namespace: 'default',
    functionId: 'fn',
    activeVersion: active,
    maxSessionsPerEndpoint: cap,
    versions: Object.entries(endpoints).map(([versionId, p]) => ({
      versionId,
      backend: { kind: 'static' as const, endpoints: p.map((n) => `127.0.0.1:${n}`) },
    })),
    origin: 'test',
  });
  registry.replaceFunctions([spec('v1', { v1: ports, v2: [9] })]);
  const manager = new SessionManager({ lingerMs, upstream: defaultUpstreamTuning });
  const fn = (): RoutableFunction => registry.getFunction('fn') as RoutableFunction;
  return { registry, manager, fn, spec };
}

const ok = (t: Test, s: Session | { code: number }): Session => {
  t.notOk(isGrpcError(s), 'a session');
  return s as Session;
};

t.test('a connection pins per (function, version); promotion affects new sessions only', async (t) => {
  const { registry, manager, fn, spec } = fixture(1000);
  t.teardown(() => manager.close());
  const a = manager.forConnection();
  const s1 = ok(t, a.acquire(fn(), undefined, undefined));
  t.equal(ok(t, a.acquire(fn(), undefined, undefined)).id, s1.id, 'same session on the same connection');
  t.equal(ok(t, a.acquire(fn(), 'v1', undefined)).id, s1.id, 'naming the pinned version is the same session');
  const v2 = ok(t, a.acquire(fn(), 'v2', undefined));
  t.not(v2.id, s1.id, 'another version is another session');
  registry.replaceFunctions([spec('v2', { v1: [1, 2], v2: [9] })]);
  t.equal(ok(t, a.acquire(fn(), undefined, undefined)).id, s1.id, 'promotion keeps the pinned session');
  t.equal(ok(t, a.acquire(fn(), 'v1', undefined)).id, s1.id, 'and naming v1 still reaches it');
  const b = manager.forConnection();
  t.equal(ok(t, b.acquire(fn(), undefined, undefined)).endpoint.port, 9, 'a new connection gets the new active version');
  a.closeAll();
  b.closeAll();
  t.equal(manager.liveCount(), 0);
});

t.test('endpoint removal re-pins with a new id; resume finds live and lingering sessions', async (t) => {
  const { registry, manager, fn, spec } = fixture(200);
  t.teardown(() => manager.close());
  const a = manager.forConnection();
  const s1 = ok(t, a.acquire(fn(), undefined, undefined));
  const b = manager.forConnection();
  const resumed = ok(t, b.acquire(fn(), undefined, s1.id));
  t.equal(resumed.id, s1.id);
  t.equal(resumed.endpoint.key, s1.endpoint.key, 'resume lands on the same endpoint');
  t.match(manager.forConnection().acquire(fn(), 'v2', s1.id), { code: Status.NOT_FOUND, message: 'no existing session found' }, 'other version');
  a.closeAll();
  b.closeAll();
  const c = manager.forConnection();
  t.equal(ok(t, c.acquire(fn(), undefined, s1.id)).id, s1.id, 'ended, within linger: resumable');
  c.closeAll();
  await new Promise((r) => setTimeout(r, 450));
  t.match(manager.forConnection().acquire(fn(), undefined, s1.id), { code: Status.NOT_FOUND }, 'after linger: gone');

  const d = manager.forConnection();
  const s2 = ok(t, d.acquire(fn(), undefined, undefined));
  const remaining = [1, 2].filter((p) => p !== s2.endpoint.port);
  registry.replaceFunctions([spec('v1', { v1: remaining, v2: [9] })]);
  const s3 = ok(t, d.acquire(fn(), undefined, undefined));
  t.not(s3.id, s2.id, 'new session id');
  t.equal(s3.endpoint.port, remaining[0], 'new endpoint');
  t.match(manager.forConnection().acquire(fn(), undefined, s2.id), { code: Status.NOT_FOUND }, 'the old id names a gone endpoint');
  d.closeAll();
});

t.test('cap: RESOURCE_EXHAUSTED when every endpoint is full, freed on close', async (t) => {
  const { manager, fn } = fixture(1000, 1);
  t.teardown(() => manager.close());
  const conns = [manager.forConnection(), manager.forConnection()];
  const ports = conns.map((c) => ok(t, c.acquire(fn(), undefined, undefined)).endpoint.port).sort();
  t.same(ports, [1, 2]);
  const third = manager.forConnection();
  t.match(third.acquire(fn(), undefined, undefined), { code: Status.RESOURCE_EXHAUSTED });
  conns[0]!.closeAll();
  t.notOk(isGrpcError(third.acquire(fn(), undefined, undefined)), 'slot freed');
  third.closeAll();
  conns[1]!.closeAll();
});
