// node:http2's request() wraps every call in `AsyncResource#bind`, and Node's bind gives each
// bound function an `asyncResource` accessor made of two new closures. V8 keeps an accessor
// property's getter and setter in an accessor pair allocated in the old generation, so those
// closures, and everything they reach (the request's stream and its state), outlive every
// scavenge until a mark-compact. Measured: a loop defining per-object getter closures has 70%
// of its allocation survive each scavenge, the same loop with one shared getter none; through
// fngate at 2000 calls/s this was about a third of what survived scavenges, and p99 and CPU
// per call fell with it (docs/performance.md, "Why they survive").
//
// This replaces `AsyncResource.prototype.bind` (process-wide; the static `AsyncResource.bind`
// goes through it) with one that behaves the same (the bound function runs `fn` in the
// resource's scope, has fn's `length` and a deprecated `asyncResource` accessor that reads and
// replaces the resource) but whose accessor functions are shared by all bound functions, so
// nothing made per call is held from the old generation.
import { AsyncResource } from 'node:async_hooks';

const kResource = Symbol('asyncResource');
const DEPRECATION = 'The asyncResource property on bound functions is deprecated';

type Bound = ((...args: unknown[]) => unknown) & { [kResource]: AsyncResource };

let warned = false;
function warnOnce(): void {
  if (warned) return;
  warned = true;
  process.emitWarning(DEPRECATION, 'DeprecationWarning', 'DEP0172');
}

const asyncResourceAccessor: PropertyDescriptor = Object.freeze({
  configurable: true,
  enumerable: true,
  get(this: Bound): AsyncResource {
    warnOnce();
    return this[kResource];
  },
  set(this: Bound, resource: AsyncResource): void {
    warnOnce();
    this[kResource] = resource;
  },
});

const nodeBind = AsyncResource.prototype.bind;

function bind(this: AsyncResource, fn: (...args: unknown[]) => unknown, thisArg?: unknown): Bound {
  // Node's own bind throws Node's own error for a non-function.
  if (typeof fn !== 'function') return Reflect.apply(nodeBind, this, [fn, thisArg]) as Bound;
  let bound: Bound;
  if (thisArg === undefined) {
    const resource = this;
    bound = function (this: unknown, ...args: unknown[]): unknown {
      args.unshift(fn, this);
      return Reflect.apply(resource.runInAsyncScope, resource, args);
    } as Bound;
  } else {
    bound = this.runInAsyncScope.bind(this, fn, thisArg) as Bound;
  }
  // Both kinds of `bound` already have a length of 0 with these attributes; redefining it
  // anyway would turn every bound function into a dictionary-mode object.
  if (fn.length !== 0) Object.defineProperty(bound, 'length', { configurable: true, enumerable: false, value: fn.length, writable: false });
  Object.defineProperty(bound, 'asyncResource', asyncResourceAccessor);
  bound[kResource] = this;
  return bound;
}

/** Installs the shared-accessor bind; idempotent. */
export function shareBindAccessors(): void {
  if (AsyncResource.prototype.bind !== bind) AsyncResource.prototype.bind = bind as typeof nodeBind;
}
