// Process-wide session state: endpoint load, sealing session ids, what this process knows
// of the ids it handed out, and which connections to tell when a pinned endpoint goes away.
// Each client connection gets a ConnectionSessions view that pins its RPCs.
import { grpcError, isGrpcError, Status, type GrpcError } from '../grpc/status.ts';
import type { Endpoint, RoutableFunction, RoutableVersion } from '../registry/types.ts';
import { UpstreamConnection, type UpstreamTuning } from '../upstreams/upstream-connection.ts';
import { capShare, SOLE_REPLICA, type ReplicaRank } from './cap-share.ts';
import { EndpointLoad } from './endpoint-load.ts';
import { sessionCookie, type Session, type SessionRecord } from './session.ts';
import { newSid, type SessionClaims, type SessionKeyRing } from './session-token.ts';

export interface SessionManagerOptions {
  readonly lingerMs: number;
  readonly upstream: UpstreamTuning;
  /** Seals and opens session ids; shared by every replica for resume anywhere. */
  readonly keys: SessionKeyRing;
}

/** Looks a function up as routing sees it now (the registry). */
export type FunctionLookup = (functionId: string) => RoutableFunction | undefined;

const noSession = grpcError(Status.NOT_FOUND, 'no existing session found');

export class SessionManager {
  readonly load = new EndpointLoad();
  /** sid -> what this process knows of it: live here, or ended less than the linger ago. */
  readonly #records = new Map<string, SessionRecord>();
  /** Ended records in the order they ended: linger is constant, so expiry is FIFO. */
  readonly #lingering = new Map<string, SessionRecord>();
  /** "function\0version\0endpoint" -> live sessions pinned there, with the connection holding each. */
  readonly #bound = new Map<string, Map<Session, ConnectionSessions>>();
  readonly #opts: SessionManagerOptions;
  #keys: SessionKeyRing;
  /** Which share of each endpoint's maxSessionsPerEndpoint this process may fill. */
  #rank: ReplicaRank = SOLE_REPLICA;
  /** A token is resealed (its expiry moved on) by the first RPC this long after sealing... */
  readonly #resealMs: number;
  /** ...and stays valid this long, so the newest token a client holds is good for at least the linger. */
  readonly #lifetimeMs: number;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(opts: SessionManagerOptions) {
    this.#opts = opts;
    this.#keys = opts.keys;
    this.#resealMs = Math.min(Math.max(opts.lingerMs, 1000), 60_000);
    this.#lifetimeMs = opts.lingerMs + this.#resealMs;
  }

  /** The sessions of a new client connection; `onEndpointGone` runs when one's endpoint stops being ready. */
  forConnection(onEndpointGone: () => void): ConnectionSessions {
    return new ConnectionSessions(this, onEndpointGone);
  }

  /** New keys (the key file changed): ids sealed from now on use the first. */
  setKeys(keys: SessionKeyRing): void {
    this.#keys = keys;
  }

  /** The gateway processes sharing endpoint caps changed (replicas came or went). */
  setRank(rank: ReplicaRank): void {
    this.#rank = rank;
  }

  get rank(): ReplicaRank {
    return this.#rank;
  }

  /** Live sessions on this process. */
  liveCount(): number {
    let n = 0;
    for (const group of this.#bound.values()) n += group.size;
    return n;
  }

  close(): void {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  /** A new session for this function and version, on the least-loaded endpoint under the cap. */
  open(fn: RoutableFunction, version: RoutableVersion, owner: ConnectionSessions): Session | GrpcError {
    if (version.endpoints.length === 0) {
      return grpcError(Status.UNAVAILABLE, `function ${fn.functionId} version ${version.versionId} has no ready endpoint`);
    }
    const cap = fn.maxSessionsPerEndpoint;
    const rank = this.#rank;
    const endpoint = this.load.pickFewest(version.endpoints, cap === 0 ? undefined : (key) => capShare(cap, key, rank));
    if (!endpoint) {
      return grpcError(
        Status.RESOURCE_EXHAUSTED,
        `every endpoint of function ${fn.functionId} version ${version.versionId} already holds ${allowed(cap, rank)}`,
      );
    }
    const record = this.#record(newSid(), fn.functionId, version.versionId, endpoint.key);
    return this.#bind(record, endpoint, owner, undefined);
  }

  /** The claims of a session id sealed by one of our keys; undefined for a forged, foreign or garbled one. */
  unseal(token: string): SessionClaims | undefined {
    return this.#keys.open(token);
  }

  /**
   * Binds a connection to the session a valid id names: one whose token has not expired, or
   * that this process knows is live or ended less than the linger ago; on an endpoint of that
   * version that is still ready, and under the per-endpoint cap.
   */
  resume(claims: SessionClaims, token: string, fn: RoutableFunction, owner: ConnectionSessions): Session | GrpcError {
    let record = this.#records.get(claims.sid);
    const now = Date.now();
    const knownHere = record !== undefined && (record.live > 0 || performance.now() - record.endedAt < this.#opts.lingerMs);
    if (!knownHere && claims.expiresAt <= now) return noSession;
    const endpoint = fn.versions.get(claims.versionId)?.byKey.get(claims.endpointKey);
    if (!endpoint) return noSession;
    const cap = fn.maxSessionsPerEndpoint;
    if (cap !== 0 && this.load.count(endpoint.key) >= capShare(cap, endpoint.key, this.#rank)) {
      return grpcError(Status.RESOURCE_EXHAUSTED, `the endpoint of this session already holds ${allowed(cap, this.#rank)}`);
    }
    record ??= this.#record(claims.sid, claims.functionId, claims.versionId, claims.endpointKey);
    // A token with most of its life left is handed back as it is: the client keeps one id.
    return this.#bind(record, endpoint, owner, claims.issuedAt + this.#resealMs > now ? { token, sealedAt: claims.issuedAt } : undefined);
  }

  /** Moves the session's expiry on if its token is due (one clock read per RPC otherwise). */
  refresh(session: Session): void {
    const now = Date.now();
    if (now >= session.resealAt) this.#seal(session, now);
  }

  /** Sessions bound to at least one connection now (for /debug/sessions). */
  *liveRecords(): IterableIterator<Readonly<SessionRecord>> {
    for (const record of this.#records.values()) if (record.live > 0) yield record;
  }

  /** A session's binding ended (its connection closed, or its endpoint went away). */
  end(session: Session): void {
    const key = groupKey(session.functionId, session.versionId, session.endpoint.key);
    const group = this.#bound.get(key);
    if (!group?.delete(session)) return; // already ended
    if (group.size === 0) this.#bound.delete(key);
    session.upstream.close();
    this.load.release(session.endpoint.key);
    const record = this.#records.get(session.id);
    if (!record || --record.live > 0) return;
    record.endedAt = performance.now();
    this.#lingering.set(record.sid, record);
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.min(1000, this.#opts.lingerMs)).unref();
  }

  /**
   * After a registry change: every live session whose endpoint is no longer a ready endpoint
   * of its version ends, and its connection is told (so the client can be sent elsewhere).
   */
  retireUnready(lookup: FunctionLookup): void {
    const gone: [Session, ConnectionSessions][] = [];
    for (const group of this.#bound.values()) {
      const [first] = group.keys();
      if (!first) continue;
      if (lookup(first.functionId)?.versions.get(first.versionId)?.byKey.has(first.endpoint.key)) continue;
      gone.push(...group);
    }
    for (const [session, owner] of gone) owner.endpointGone(session);
  }

  #record(sid: string, functionId: string, versionId: string, endpointKey: string): SessionRecord {
    const record: SessionRecord = { sid, functionId, versionId, endpointKey, live: 0, endedAt: 0 };
    this.#records.set(sid, record);
    return record;
  }

  #bind(record: SessionRecord, endpoint: Endpoint, owner: ConnectionSessions, sealed: { token: string; sealedAt: number } | undefined): Session {
    record.live++;
    this.#lingering.delete(record.sid);
    this.load.acquire(endpoint.key);
    const session: Session = {
      id: record.sid,
      token: '',
      setCookie: [],
      resealAt: 0,
      functionId: record.functionId,
      versionId: record.versionId,
      endpoint,
      upstream: new UpstreamConnection(endpoint, this.#opts.upstream),
    };
    if (sealed) {
      session.token = sealed.token;
      session.setCookie = [sessionCookie(sealed.token)];
      session.resealAt = sealed.sealedAt + this.#resealMs;
    } else {
      this.#seal(session, Date.now());
    }
    const key = groupKey(record.functionId, record.versionId, endpoint.key);
    let group = this.#bound.get(key);
    if (!group) this.#bound.set(key, (group = new Map()));
    group.set(session, owner);
    return session;
  }

  #seal(session: Session, now: number): void {
    session.token = this.#keys.seal({
      sid: session.id,
      functionId: session.functionId,
      versionId: session.versionId,
      endpointKey: session.endpoint.key,
      issuedAt: now,
      expiresAt: now + this.#lifetimeMs,
    });
    session.setCookie = [sessionCookie(session.token)];
    session.resealAt = now + this.#resealMs;
  }

  #sweep(): void {
    const cutoff = performance.now() - this.#opts.lingerMs;
    for (const record of this.#lingering.values()) {
      if (record.endedAt > cutoff) break;
      this.#lingering.delete(record.sid);
      if (record.live === 0) this.#records.delete(record.sid);
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
  readonly #onEndpointGone: () => void;
  /** "functionId\0versionId" -> session */
  readonly #byVersion = new Map<string, Session>();
  /** functionId -> version that calls naming no version use on this connection */
  readonly #defaults = new Map<string, string>();

  constructor(manager: SessionManager, onEndpointGone: () => void) {
    this.#manager = manager;
    this.#onEndpointGone = onEndpointGone;
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
    if (session) {
      this.#manager.refresh(session);
    } else {
      const version = fn.versions.get(wanted);
      if (!version) return grpcError(Status.NOT_FOUND, `function ${fn.functionId} has no version ${wanted}`);
      const opened = this.#manager.open(fn, version, this);
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

  /** The manager found this session's endpoint no longer ready: it ends, and the connection is told. */
  endpointGone(session: Session): void {
    const key = versionKey(session.functionId, session.versionId);
    if (this.#byVersion.get(key) === session) this.#byVersion.delete(key);
    // Open streams run on over the old upstream until they end.
    this.#manager.end(session);
    this.#onEndpointGone();
  }

  /** This connection's session for the version, if its endpoint is still ready; a stale one ends. */
  #pinned(fn: RoutableFunction, versionId: string): Session | undefined {
    const session = this.#byVersion.get(versionKey(fn.functionId, versionId));
    if (!session) return undefined;
    if (fn.versions.get(versionId)?.byKey.has(session.endpoint.key)) return session;
    this.endpointGone(session);
    return undefined;
  }

  #resume(fn: RoutableFunction, versionId: string | undefined, token: string): Session | GrpcError {
    const claims = this.#manager.unseal(token);
    if (!claims || claims.functionId !== fn.functionId || (versionId !== undefined && versionId !== claims.versionId)) {
      return noSession;
    }
    const current = this.#pinned(fn, claims.versionId);
    let session: Session | GrpcError;
    if (current?.id === claims.sid) {
      session = current;
      this.#manager.refresh(current);
    } else {
      session = this.#manager.resume(claims, token, fn, this);
      if (isGrpcError(session)) return session;
      // Resuming replaces whatever session this connection had for that version.
      if (current) this.#manager.end(current);
      this.#byVersion.set(versionKey(fn.functionId, claims.versionId), session);
    }
    if (versionId === undefined) this.#defaults.set(fn.functionId, claims.versionId);
    return session;
  }
}

/** What a full endpoint holds, for RESOURCE_EXHAUSTED: with a shared cap, this process's share. */
function allowed(cap: number, rank: ReplicaRank): string {
  return rank.count > 1 ? `this gateway's share of its ${cap} sessions (${rank.count} gateway processes share the cap)` : `${cap} sessions`;
}

function versionKey(functionId: string, versionId: string): string {
  return functionId + '\0' + versionId;
}

function groupKey(functionId: string, versionId: string, endpointKey: string): string {
  return functionId + '\0' + versionId + '\0' + endpointKey;
}
