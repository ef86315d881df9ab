// AsyncResource#bind as fngate installs it (lib/upstreams/shared-bind-accessors.ts): the same
// behaviour as Node's own, and, unlike Node's, nothing a bound function reaches is promoted by
// a scavenge.
import { execFileSync } from 'node:child_process';
import { AsyncLocalStorage, AsyncResource, executionAsyncId } from 'node:async_hooks';
import t from 'tap';
import { shareBindAccessors } from '../../lib/upstreams/shared-bind-accessors.ts';

const nodeBind = AsyncResource.prototype.bind;
shareBindAccessors();

/** What a bound function shows of itself and of the call it makes. */
function observe(bind: typeof nodeBind) {
  const als = new AsyncLocalStorage<string>();
  const resource = als.run('store at creation', () => new AsyncResource('TEST'));
  const receiver = { name: 'receiver' };
  let seen: { self: unknown; args: unknown[]; store: unknown; inScope: boolean } | undefined;
  function target(this: unknown, a: unknown, b: unknown): string {
    seen = { self: this, args: [a, b], store: als.getStore(), inScope: executionAsyncId() === resource.asyncId() };
    return 'returned';
  }
  const bound = bind.call(resource, target) as (this: unknown, ...args: unknown[]) => unknown;
  const result = als.run('store at call', () => bound.call(receiver, 1, 2));
  const length = Object.getOwnPropertyDescriptor(bound, 'length');
  const accessor = Object.getOwnPropertyDescriptor(bound, 'asyncResource');
  return {
    result,
    seen,
    name: bound.name,
    keys: Object.keys(bound),
    length: { ...length },
    accessor: { enumerable: accessor?.enumerable, configurable: accessor?.configurable, get: typeof accessor?.get, set: typeof accessor?.set },
    receiverIsCaller: seen?.self === receiver,
  };
}

t.test('a bound function behaves as one bound by Node', async (t) => {
  const ours = observe(AsyncResource.prototype.bind);
  const node = observe(nodeBind);
  t.same(ours, node, 'same call, scope, store, this, length and accessor shape as Node\'s bind');
  t.equal(ours.result, 'returned');
  t.ok(ours.seen?.inScope, 'runs inside the resource\'s async scope');
  t.equal(ours.seen?.store, 'store at creation', 'sees the AsyncLocalStorage store of the resource, not of the caller');
  t.same(ours.length, { value: 2, writable: false, enumerable: false, configurable: true });
});

t.test('thisArg, the static bind, and errors', async (t) => {
  const thisArg = { me: true };
  let self: unknown;
  // @types/node leaves bind's documented second parameter out.
  const bindWithThis = AsyncResource.prototype.bind as unknown as (this: AsyncResource, fn: () => void, thisArg: unknown) => () => void;
  const bound = bindWithThis.call(
    new AsyncResource('TEST'),
    function (this: unknown) {
      self = this;
    },
    thisArg,
  );
  bound.call({ other: true });
  t.equal(self, thisArg, 'a given thisArg wins over the caller\'s this');

  let scope = -1;
  const viaStatic = AsyncResource.bind(() => (scope = executionAsyncId()), 'STATIC');
  const getter = (f: unknown): unknown => Object.getOwnPropertyDescriptor(f, 'asyncResource')?.get;
  t.equal(getter(viaStatic), getter(bound), 'AsyncResource.bind goes through it (the same shared getter)');
  const a = nodeBind.call(new AsyncResource('TEST'), () => {});
  const b = nodeBind.call(new AsyncResource('TEST'), () => {});
  t.not(getter(a), getter(b), 'where Node\'s bind makes a getter per call');
  viaStatic();
  t.ok(scope > 0 && scope !== executionAsyncId(), 'and runs in a scope of its own');

  const boom = new AsyncResource('TEST').bind(() => {
    throw new Error('boom');
  });
  t.throws(() => boom(), /boom/, 'exceptions pass through');
  t.throws(() => new AsyncResource('TEST').bind('not a function' as unknown as () => void), { code: 'ERR_INVALID_ARG_TYPE' }, 'Node\'s own error');
  const installed = AsyncResource.prototype.bind;
  shareBindAccessors();
  t.equal(AsyncResource.prototype.bind, installed, 'installing twice keeps one bind');
  t.not(installed, nodeBind, 'and it is not Node\'s');
});

// The first test to touch the accessor: the warning is once per process.
t.test('the asyncResource accessor reads and replaces the resource, with one deprecation warning', async (t) => {
  const warnings: Array<{ name: string; code?: string }> = [];
  const onWarning = (w: Error & { code?: string }): void => void warnings.push({ name: w.name, code: w.code });
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const first = new AsyncResource('FIRST');
  const second = new AsyncResource('SECOND');
  const a = first.bind(() => executionAsyncId()) as (() => number) & { asyncResource: AsyncResource };
  const b = second.bind(() => executionAsyncId()) as (() => number) & { asyncResource: AsyncResource };
  t.equal(a.asyncResource, first);
  t.equal(b.asyncResource, second, 'each bound function reads its own resource through the shared accessor');
  a.asyncResource = second;
  t.equal(a.asyncResource, second, 'the setter replaces it');
  t.equal(b.asyncResource, second);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(warnings, [{ name: 'DeprecationWarning', code: 'DEP0172' }], 'DEP0172, once');
});

// Allocates bound functions that each reach ~2 KB, drops them, runs two scavenges and prints
// how much the old generation grew: what the scavenges promoted.
const PROMOTION_PROBE = `
import { AsyncResource } from 'node:async_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
if (process.argv[1] === 'shared') (await import(process.argv[2])).shareBindAccessors();
const oldUsed = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
gc(); gc();
const before = oldUsed();
let sink = 0;
for (let i = 0; i < 20000; i++) {
  const payload = Array.from({ length: 64 }, (_, j) => ({ j }));
  const bound = new AsyncResource('PROBE').bind(() => payload.length);
  sink += bound();
}
gc({ type: 'minor' }); gc({ type: 'minor' });
console.log(JSON.stringify({ grewBytes: oldUsed() - before, sink }));
`;

function promotedBytes(mode: 'node' | 'shared'): number {
  const out = execFileSync(
    process.execPath,
    ['--expose-gc', '--input-type=module', '-e', PROMOTION_PROBE, mode, new URL('../../lib/upstreams/shared-bind-accessors.ts', import.meta.url).href],
    { encoding: 'utf8' },
  );
  return (JSON.parse(out) as { grewBytes: number }).grewBytes;
}

t.test('what a bound function reaches dies young', async (t) => {
  const node = promotedBytes('node');
  const shared = promotedBytes('shared');
  t.comment(`old generation grew ${node} bytes with Node's bind, ${shared} with the shared accessors`);
  t.ok(node > 8 << 20, 'with Node\'s bind, 20,000 calls promote over 8 MiB (the probe sees the problem)');
  t.ok(shared < node / 20, 'with the shared accessors, under a twentieth of that');
});

t.test('loading the upstream connection module installs it', async (t) => {
  const probe = `
import { AsyncResource } from 'node:async_hooks';
const before = AsyncResource.prototype.bind;
await import(process.argv[1]);
console.log(AsyncResource.prototype.bind !== before && AsyncResource.prototype.bind.toString().includes('kResource'));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe, new URL('../../lib/upstreams/upstream-connection.ts', import.meta.url).href], { encoding: 'utf8' });
  t.equal(out.trim(), 'true', 'every upstream request() is bound by the shared-accessor bind');
});
