// Process-wide session state: endpoint load, session ids, and ended sessions lingering for
// resume. Each client connection gets a ConnectionSessions view that pins its RPCs.
import { randomUUID } from 'node:crypto';
import { grpcError, isGrpcError, Status, type GrpcError } from '../grpc/status.ts';
import type { Endpoint, RoutableFunction, RoutableVersion } from '../registry/types.ts';
import { UpstreamConnection, type UpstreamTuning } from '../upstreams/upstream-connection.ts';
import { EndpointLoad } from './endpoint-load.ts';
import { sessionCookie, type Session, type SessionRecord } from './session.ts';

export interface SessionManagerOptions {
  readonly lingerMs: number;
  readonly upstream: UpstreamTuning;
}

const noSession = grpcError(Status.NOT_FOUND, 'no existing session found');

export class SessionManager {
  readonly load = new EndpointLoad();
  readonly #records = new Map<string, SessionRecord>();
  /** Ended records in the order they ended: linger is constant, so expiry is FIFO. */
  readonly #lingering = new Map<string, SessionRecord>();
  readonly #opts: SessionManagerOptions;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(opts: SessionManagerOptions) {
    this.#opts = opts;
  }

  forConnection(): ConnectionSessions {
    return new ConnectionSessions(this);
  }

  /** Live sessions on this process. */
  liveCount(): number {
    let n = 0;
    for (const record of this.#records.values()) n += record.live;
    return n;
  }

  close(): void {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  /** A new session for this function and version, on the least-loaded endpoint under the cap. */
  open(fn: RoutableFunction, version: RoutableVersion): Session | GrpcError {
    if (version.endpoints.length === 0) {
      return grpcError(Status.UNAVAILABLE, `function ${fn.functionId} version ${version.versionId} has no ready endpoint`);
    }
    const endpoint = this.load.pickFewest(version.endpoints, fn.maxSessionsPerEndpoint);
    if (!endpoint) {
      return grpcError(
        Status.RESOURCE_EXHAUSTED,
        `every endpoint of function ${fn.functionId} version ${version.versionId} already holds ${fn.maxSessionsPerEndpoint} sessions`,
      );
    }
    const record: SessionRecord = {
      id: randomUUID(),
      functionId: fn.functionId,
      versionId: version.versionId,
      endpointKey: endpoint.key,
      live: 0,
      endedAt: 0,
    };
    this.#records.set(record.id, record);
    return this.#bind(record, endpoint);
  }

  /**
   * Binds a new connection to the session `id` names: live, or ended less than the linger ago,
   * of this function (and version, when the caller named one), on an endpoint still ready.
   */
  resume(id: string, fn: RoutableFunction, versionId: string | undefined): Session | GrpcError {
    const record = this.#records.get(id);
    if (!record || record.functionId !== fn.functionId) return noSession;
    if (versionId !== undefined && versionId !== record.versionId) return noSession;
    const endpoint = fn.versions.get(record.versionId)?.byKey.get(record.endpointKey);
    if (!endpoint) return noSession;
    const cap = fn.maxSessionsPerEndpoint;
    if (cap !== 0 && this.load.count(endpoint.key) >= cap) {
      return grpcError(Status.RESOURCE_EXHAUSTED, `endpoint of session ${id} already holds ${cap} sessions`);
    }
    return this.#bind(record, endpoint);
  }

  /** Sessions bound to at least one connection now (for /debug/sessions). */
  *liveRecords(): IterableIterator<Readonly<SessionRecord>> {
    for (const record of this.#records.values()) if (record.live > 0) yield record;
  }

  /** What is known of a session id (live or lingering), if anything. */
  describe(id: string): Readonly<SessionRecord> | undefined {
    return this.#records.get(id);
  }

  /** A session's binding ended (its connection closed, or its endpoint went away). */
  end(session: Session): void {
    session.upstream.close();
    this.load.release(session.endpoint.key);
    const record = this.#records.get(session.id);
    if (!record || --record.live > 0) return;
    record.endedAt = performance.now();
    this.#lingering.set(record.id, record);
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.min(1000, this.#opts.lingerMs)).unref();
  }

  #bind(record: SessionRecord, endpoint: Endpoint): Session {
    record.live++;
    this.#lingering.delete(record.id);
    this.load.acquire(endpoint.key);
    return {
      id: record.id,
      setCookie: [sessionCookie(record.id)],
      functionId: record.functionId,
      versionId: record.versionId,
      endpoint,
      upstream: new UpstreamConnection(endpoint, this.#opts.upstream),
    };
  }

  #sweep(): void {
    const cutoff = performance.now() - this.#opts.lingerMs;
    for (const record of this.#lingering.values()) {
      if (record.endedAt > cutoff) break;
      this.#lingering.delete(record.id);
      if (record.live === 0) this.#records.delete(record.id);
    }
    if (this.#lingering.size === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }
}

/**
 * The sessions of one client connection, one per (function, version) actually used. Calls
 * that name no version follow a per-function pointer to the version their session was pinned
 * with, so promotion (a new activeVersion) only affects sessions opened after it.
 */
export class ConnectionSessions {
  readonly #manager: SessionManager;
  /** "functionId\0versionId" -> session */
  readonly #byVersion = new Map<string, Session>();
  /** functionId -> version that calls naming no version use on this connection */
  readonly #defaults = new Map<string, string>();

  constructor(manager: SessionManager) {
    this.#manager = manager;
  }

  /** The session this RPC runs on: the pinned one if its endpoint is still ready, else a new one. */
  acquire(fn: RoutableFunction, versionId: string | undefined, resumeId: string | undefined): Session | GrpcError {
    if (resumeId !== undefined) return this.#resume(fn, versionId, resumeId);
    let wanted = versionId ?? this.#defaults.get(fn.functionId) ?? fn.activeVersion;
    let session = this.#pinned(fn, wanted);
    if (!session && versionId === undefined && wanted !== fn.activeVersion) {
      // The session the pointer named has ended: a new session takes the active version.
      wanted = fn.activeVersion;
      session = this.#pinned(fn, wanted);
    }
    if (!session) {
      const version = fn.versions.get(wanted);
      if (!version) return grpcError(Status.NOT_FOUND, `function ${fn.functionId} has no version ${wanted}`);
      const opened = this.#manager.open(fn, version);
      if (isGrpcError(opened)) return opened;
      this.#byVersion.set(versionKey(fn.functionId, wanted), opened);
      session = opened;
    }
    if (versionId === undefined) this.#defaults.set(fn.functionId, wanted);
    return session;
  }

  /** The client connection closed: every session of it ends. */
  closeAll(): void {
    for (const session of this.#byVersion.values()) this.#manager.end(session);
    this.#byVersion.clear();
    this.#defaults.clear();
  }

  /** This connection's session for the version, if its endpoint is still ready; a stale one ends. */
  #pinned(fn: RoutableFunction, versionId: string): Session | undefined {
    const key = versionKey(fn.functionId, versionId);
    const session = this.#byVersion.get(key);
    if (!session) return undefined;
    if (fn.versions.get(versionId)?.byKey.has(session.endpoint.key)) return session;
    // Endpoint gone: open streams run on over the old upstream until they end.
    this.#byVersion.delete(key);
    this.#manager.end(session);
    return undefined;
  }

  #resume(fn: RoutableFunction, versionId: string | undefined, resumeId: string): Session | GrpcError {
    const record = this.#manager.describe(resumeId);
    if (!record || record.functionId !== fn.functionId || (versionId !== undefined && versionId !== record.versionId)) {
      return noSession;
    }
    const current = this.#pinned(fn, record.versionId);
    let session: Session | GrpcError;
    if (current?.id === resumeId) {
      session = current;
    } else {
      session = this.#manager.resume(resumeId, fn, versionId);
      if (isGrpcError(session)) return session;
      // Resuming replaces whatever session this connection had for that version.
      if (current) this.#manager.end(current);
      this.#byVersion.set(versionKey(fn.functionId, record.versionId), session);
    }
    if (versionId === undefined) this.#defaults.set(fn.functionId, record.versionId);
    return session;
  }
}

function versionKey(functionId: string, versionId: string): string {
  return functionId + '\0' + versionId;
}
