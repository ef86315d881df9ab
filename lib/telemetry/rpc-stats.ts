// Per-RPC numbers, aggregated on the hot path without the OpenTelemetry SDK: the SDK hashes
// every measurement's attributes (sort + JSON.stringify, several µs per record), which is more
// than the rest of a forwarded call's bookkeeping together. Here an RPC finds its series by a
// few Map lookups on strings it already has, then adds to plain numbers: no allocation once the
// series exists. The SDK reads these numbers when a reader collects (metrics.ts).
import type { Attributes } from '@opentelemetry/api';
import { Status } from '../grpc/status.ts';

/** Upper bounds in seconds (le), 0.1 ms .. 1 h: unary calls to hour-long streams. */
export const DURATION_BOUNDARIES: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
  1800, 3600,
]);

/** Distinct (function, version, method, status) series before new ones fold into one overflow series. */
export const MAX_RPC_SERIES = 2000;
/** Distinct (function, version) series, likewise. */
export const MAX_FUNCTION_SERIES = 1000;

/** Attribute keys, as in the pinned semantic conventions (1.45: stable RPC) plus fngate's own. */
export const ATTR = {
  rpcSystemName: 'rpc.system.name',
  rpcMethod: 'rpc.method',
  rpcStatusCode: 'rpc.status_code',
  errorType: 'error.type',
  functionId: 'fngate.function_id',
  versionId: 'fngate.version_id',
  sessionId: 'fngate.session_id',
  endpoint: 'fngate.endpoint',
  serverAddress: 'server.address',
  serverPort: 'server.port',
} as const;

/** rpc.method for a method the gateway cannot vouch for (semantic conventions' `_OTHER`). */
export const OTHER_METHOD = '_OTHER';
export const OVERFLOW_ATTRIBUTES: Attributes = Object.freeze({ 'otel.metric.overflow': true });

/** gRPC status code -> name (rpc.status_code is the name: "OK", "NOT_FOUND", ...). */
export const STATUS_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, code] of Object.entries(Status)) names[code] = name;
  return Object.freeze(names);
})();

/** A status the client got, as an index into STATUS_NAMES: a cancel is CANCELLED, anything unknown UNKNOWN. */
export function statusIndex(status: number | undefined): number {
  if (status === undefined) return Status.CANCELLED;
  return status >= 0 && status < STATUS_NAMES.length && Number.isInteger(status) ? status : Status.UNKNOWN;
}

/** Cumulative explicit-bucket histogram; counts[i] holds values in (bounds[i-1], bounds[i]], the last one above every bound. */
export class Histogram {
  readonly counts: number[] = new Array<number>(DURATION_BOUNDARIES.length + 1).fill(0);
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  record(value: number): void {
    const bounds = DURATION_BOUNDARIES;
    let lo = 0;
    let hi = bounds.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (value > (bounds[mid] as number)) lo = mid + 1;
      else hi = mid;
    }
    this.counts[lo] = (this.counts[lo] as number) + 1;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }
}

/** One (function, version, method, status) combination: duration and time-to-first-byte histograms. */
export class RpcSeries {
  readonly attributes: Attributes;
  readonly duration = new Histogram();
  readonly firstByte = new Histogram();
  constructor(attributes: Attributes) {
    this.attributes = attributes;
  }
}

/** One (function, version): open streams and message bytes both ways. */
export class FunctionSeries {
  readonly attributes: Attributes;
  /** Set once a call was forwarded to this version (series only rejected calls made stay unreported). */
  forwarded = false;
  activeStreams = 0;
  bytesIn = 0;
  bytesOut = 0;
  constructor(attributes: Attributes) {
    this.attributes = attributes;
  }
}

/** A counter by a small set of attribute combinations, each with its cached attributes. */
export class LabelledCounter {
  readonly #series = new Map<string, { readonly attributes: Attributes; value: number }>();
  readonly #limit: number;
  readonly #attributes: (key: string) => Attributes;
  #overflow: { readonly attributes: Attributes; value: number } | undefined;

  constructor(limit: number, attributes: (key: string) => Attributes) {
    this.#limit = limit;
    this.#attributes = attributes;
  }

  add(key: string, n = 1): void {
    let s = this.#series.get(key);
    if (s === undefined) {
      if (this.#series.size >= this.#limit) {
        this.#overflow ??= { attributes: OVERFLOW_ATTRIBUTES, value: 0 };
        this.#overflow.value += n;
        return;
      }
      s = { attributes: this.#attributes(key), value: 0 };
      this.#series.set(key, s);
    }
    s.value += n;
  }

  /** The attributes of `key`'s series (of the overflow series once the limit is reached). */
  attributesOf(key: string): Attributes {
    return this.#series.get(key)?.attributes ?? OVERFLOW_ATTRIBUTES;
  }

  *entries(): IterableIterator<{ readonly attributes: Attributes; readonly value: number }> {
    yield* this.#series.values();
    if (this.#overflow) yield this.#overflow;
  }
}

interface VersionEntry {
  readonly fn: FunctionSeries;
  /** path ('' = a method the gateway cannot vouch for) -> series by status index */
  readonly byPath: Map<string, (RpcSeries | undefined)[]>;
}

/**
 * Every RPC series, found by function id -> version id -> path -> status. An empty function or
 * version id means "not known" (a call the gateway rejected): that attribute is left out.
 */
export class RpcStats {
  readonly #byFunction = new Map<string, Map<string, VersionEntry>>();
  readonly #rpcSeries: RpcSeries[] = [];
  readonly #functionSeries: FunctionSeries[] = [];
  #rpcOverflow: RpcSeries | undefined;
  #functionOverflow: VersionEntry | undefined;

  /** The series of one function version a call is forwarded to (created on first use). */
  function(functionId: string, versionId: string): FunctionSeries {
    const { fn } = this.#version(functionId, versionId);
    fn.forwarded = true;
    return fn;
  }

  /**
   * The series of one call's outcome; `path` is the HTTP/2 :path ('' for a method the gateway
   * cannot vouch for), `status` what the client got (undefined: it cancelled).
   */
  rpc(functionId: string, versionId: string, path: string, status: number | undefined): RpcSeries {
    const entry = this.#version(functionId, versionId);
    const index = statusIndex(status);
    let byStatus = entry.byPath.get(path);
    let series = byStatus?.[index];
    if (series === undefined) {
      // Full (or an overflowed function): nothing new is kept, however many paths callers make up.
      if (this.#rpcSeries.length >= MAX_RPC_SERIES || entry === this.#functionOverflow) {
        this.#rpcOverflow ??= new RpcSeries(OVERFLOW_ATTRIBUTES);
        return this.#rpcOverflow;
      }
      if (byStatus === undefined) {
        byStatus = new Array<RpcSeries | undefined>(STATUS_NAMES.length).fill(undefined);
        entry.byPath.set(path, byStatus);
      }
      series = new RpcSeries(rpcAttributes(functionId, versionId, path, index));
      byStatus[index] = series;
      this.#rpcSeries.push(series);
    }
    return series;
  }

  /** Every RPC series (overflow last), for collection. */
  *rpcSeries(): IterableIterator<RpcSeries> {
    yield* this.#rpcSeries;
    if (this.#rpcOverflow) yield this.#rpcOverflow;
  }

  *functionSeries(): IterableIterator<FunctionSeries> {
    yield* this.#functionSeries;
    if (this.#functionOverflow) yield this.#functionOverflow.fn;
  }

  #version(functionId: string, versionId: string): VersionEntry {
    let versions = this.#byFunction.get(functionId);
    let entry = versions?.get(versionId);
    if (entry !== undefined) return entry;
    if (this.#functionSeries.length >= MAX_FUNCTION_SERIES) {
      this.#functionOverflow ??= { fn: new FunctionSeries(OVERFLOW_ATTRIBUTES), byPath: new Map() };
      return this.#functionOverflow;
    }
    const attributes: Record<string, string> = {};
    if (functionId !== '') attributes[ATTR.functionId] = functionId;
    if (versionId !== '') attributes[ATTR.versionId] = versionId;
    entry = { fn: new FunctionSeries(Object.freeze(attributes)), byPath: new Map() };
    if (versions === undefined) {
      versions = new Map();
      this.#byFunction.set(functionId, versions);
    }
    versions.set(versionId, entry);
    this.#functionSeries.push(entry.fn);
    return entry;
  }
}

/** rpc.method from an HTTP/2 path: "/pkg.Service/Method" -> "pkg.Service/Method". */
export function methodOf(path: string): string {
  const method = path.startsWith('/') ? path.slice(1) : path;
  return method === '' ? OTHER_METHOD : method;
}

function rpcAttributes(functionId: string, versionId: string, path: string, status: number): Attributes {
  const attributes: Record<string, string> = {
    [ATTR.rpcSystemName]: 'grpc',
    [ATTR.rpcMethod]: methodOf(path),
    [ATTR.rpcStatusCode]: STATUS_NAMES[status] ?? 'UNKNOWN',
  };
  if (functionId !== '') attributes[ATTR.functionId] = functionId;
  if (versionId !== '') attributes[ATTR.versionId] = versionId;
  return Object.freeze(attributes);
}
