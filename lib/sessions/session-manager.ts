// Process-wide session state: endpoint load, sealing session ids, what this process knows
// of the ids it handed out, and which connections to tell when a pinned endpoint goes away.
// Each client connection's ConnectionSessions asks it for sessions; it knows a connection only
// as the SessionOwner it tells of waits that ended and endpoints that went away.
import { formatDuration } from '../config/duration.ts';
import { grpcError, Status, type GrpcError } from '../grpc/status.ts';
import type { Endpoint, RoutableFunction, RoutableVersion } from '../registry/types.ts';
import { realClock, type Clock, type Timer } from '../runtime/clock.ts';
import { SlotMap } from '../runtime/slot-map.ts';
import { capShare, SOLE_REPLICA, type ReplicaRank } from './cap-share.ts';
import { EndpointLoad } from './endpoint-load.ts';
import { PendingSession, type SessionWaiter, type WaitOutcome } from './pending-session.ts';
import { noSession, sessionCookie, versionKey, type OpenUpstream, type Session, type SessionRecord } from './session.ts';
import { newSid, type SessionClaims, type SessionKeyRing } from './session-token.ts';
import { VersionLoad } from './version-load.ts';

export interface SessionManagerOptions {
  readonly lingerMs: number;
  /** Makes a session's own upstream connection to its endpoint (the sessions layer does no I/O itself). */
  readonly openUpstream: OpenUpstream;
  /** Seals and opens session ids; shared by every replica for resume anywhere. */
  readonly keys: SessionKeyRing;
  /** The registry as routing sees it now: waiting sessions are bound against it. */
  readonly lookup?: FunctionLookup | undefined;
  /** A held session stopped waiting (bound or not), for metrics. */
  readonly onWaitEnded?: ((functionId: string, versionId: string, outcome: WaitOutcome, waitedMs: number) => void) | undefined;
  /** Linger, hold timeouts and token timestamps; default the real clock. */
  readonly clock?: Clock | undefined;
}

/** Looks a function up as routing sees it now (the registry). */
export type FunctionLookup = (functionId: string) => RoutableFunction | undefined;

/** The connection a session (or a waiting session) belongs to, as the manager tells it what happened. */
export interface SessionOwner {
  /** A waiting session stopped waiting: bound to `session`, or not (undefined). */
  settled(pending: PendingSession, session: Session | undefined): void;
  /** The session's endpoint is no longer ready: the session is to end, and the client be told. */
  endpointGone(session: Session): void;
}

const drainingWhileWaiting = grpcError(Status.UNAVAILABLE, 'gateway is draining (shutting down); the session was still waiting for an endpoint');
const noLookup: FunctionLookup = () => undefined;

export class SessionManager {
  readonly load = new EndpointLoad();
  /** Open and waiting sessions per version: what the autoscaler is told. */
  readonly versions = new VersionLoad();
  /** "function\0version" -> sessions waiting for room, first come first served. */
  readonly #queues = new Map<string, PendingSession[]>();
  /** Which connection each waiting session belongs to. */
  readonly #pendingOwners = new Map<PendingSession, SessionOwner>();
  /** sid -> what this process knows of it: live here, or ended less than the linger ago. */
  readonly #records = new Map<string, SessionRecord>();
  /**
   * Records in the order they ended (linger is constant, so expiry is FIFO), each with the time
   * it ended then: one resumed and ended again since has a later entry. Arrays whose swept
   * slots are emptied, not a Map (see slot-map.ts): under churn they hold ~linger x sessions/s.
   */
  readonly #ended: Array<SessionRecord | undefined> = [];
  readonly #endedAt: number[] = [];
  #endedHead = 0;
  /** "function\0version\0endpoint" -> live sessions pinned there, with the connection holding each. */
  readonly #bound = new Map<string, SlotMap<Session, SessionOwner>>();
  readonly #opts: SessionManagerOptions;
  readonly #clock: Clock;
  #keys: SessionKeyRing;
  /** Which share of each endpoint's maxSessionsPerEndpoint this process may fill. */
  #rank: ReplicaRank = SOLE_REPLICA;
  /** A token is resealed (its expiry moved on) by the first RPC this long after sealing... */
  readonly #resealMs: number;
  /** ...and stays valid this long, so the newest token a client holds is good for at least the linger. */
  readonly #lifetimeMs: number;
  #sweeper: Timer | undefined;

  constructor(opts: SessionManagerOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? realClock;
    this.#keys = opts.keys;
    this.#resealMs = Math.min(Math.max(opts.lingerMs, 1000), 60_000);
    this.#lifetimeMs = opts.lingerMs + this.#resealMs;
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
    this.#clock.clearTimeout(this.#sweeper);
    this.#sweeper = undefined;
  }

  /**
   * A new session for this function and version, on the least-loaded endpoint under the cap.
   * With no room and a holdTimeout, a PendingSession to wait on (behind any already waiting).
   */
  open(fn: RoutableFunction, version: RoutableVersion, owner: SessionOwner): Session | GrpcError | PendingSession {
    const queue = this.#queues.get(versionKey(fn.functionId, version.versionId));
    // First come, first served: nobody overtakes a session already waiting.
    const endpoint = queue === undefined ? this.#pick(fn, version) : undefined;
    if (endpoint) {
      const record = this.#record(newSid(), fn.functionId, version.versionId, endpoint.key);
      return this.#bind(record, endpoint, owner, undefined);
    }
    if (fn.scaling.holdTimeoutMs > 0) return this.#enqueue(fn, version, owner, queue);
    if (version.endpoints.length === 0) {
      return grpcError(Status.UNAVAILABLE, `function ${fn.functionId} version ${version.versionId} has no ready endpoint`);
    }
    return grpcError(
      Status.RESOURCE_EXHAUSTED,
      `every endpoint of function ${fn.functionId} version ${version.versionId} already holds ${allowed(fn.maxSessionsPerEndpoint, this.#rank)}`,
    );
  }

  /** The ready endpoint with the fewest sessions that has room under the cap, if any. */
  #pick(fn: RoutableFunction, version: RoutableVersion): Endpoint | undefined {
    const cap = fn.maxSessionsPerEndpoint;
    const rank = this.#rank;
    return this.load.pickFewest(version.endpoints, cap === 0 ? undefined : (key) => capShare(cap, key, rank));
  }

  #enqueue(fn: RoutableFunction, version: RoutableVersion, owner: SessionOwner, queue: PendingSession[] | undefined): PendingSession | GrpcError {
    const { functionId } = fn;
    const { versionId } = version;
    const { maxPendingSessions, holdTimeoutMs } = fn.scaling;
    if ((queue?.length ?? 0) >= maxPendingSessions) {
      this.#opts.onWaitEnded?.(functionId, versionId, 'queue_full', 0);
      return grpcError(
        Status.RESOURCE_EXHAUSTED,
        `${maxPendingSessions} sessions already wait for function ${functionId} version ${versionId} to have room (scaling.maxPendingSessions)`,
      );
    }
    const pending = new PendingSession(functionId, versionId, this.#clock);
    if (queue === undefined) this.#queues.set(versionKey(functionId, versionId), [pending]);
    else queue.push(pending);
    this.#pendingOwners.set(pending, owner);
    const reason = version.endpoints.length === 0 ? 'had no ready endpoint' : 'had no ready endpoint with room for a new session';
    const timeout = grpcError(Status.UNAVAILABLE, `function ${functionId} version ${versionId} ${reason} after ${formatDuration(holdTimeoutMs)}`);
    pending.timer = this.#clock.setTimeout(() => this.#fail(pending, timeout, 'timeout'), holdTimeoutMs);
    this.versions.add(functionId, versionId, 0, 1);
    return pending;
  }

  /** Adds an RPC to a waiting session. */
  wait(pending: PendingSession, waiter: SessionWaiter): void {
    pending.waiters.add(waiter);
  }

  /** An RPC stopped waiting (its deadline, its cancel); the session stops waiting with its last RPC. */
  leave(pending: PendingSession, waiter: SessionWaiter, outcome: WaitOutcome): void {
    if (!pending.waiters.delete(waiter) || pending.waiters.size > 0) return;
    this.#dequeue(pending, outcome);
  }

  /** The connection of a waiting session closed. */
  abandon(pending: PendingSession): void {
    if (this.#pendingOwners.has(pending)) this.#dequeue(pending, 'cancelled');
  }

  /**
   * Binds waiting sessions, oldest first, while their versions have endpoints with room: after
   * a registry change (endpoints came) and after a session ended (a capped endpoint freed up).
   */
  admitWaiting(lookup: FunctionLookup = this.#opts.lookup ?? noLookup): void {
    for (const queue of [...this.#queues.values()]) {
      const [head] = queue;
      if (head === undefined) continue;
      const fn = lookup(head.functionId);
      const version = fn?.versions.get(head.versionId);
      if (!fn || !version) {
        const gone = grpcError(Status.NOT_FOUND, `function ${head.functionId} version ${head.versionId} was removed while sessions waited for it`);
        for (const pending of [...queue]) this.#fail(pending, gone, 'removed');
        continue;
      }
      while (queue.length > 0) {
        const endpoint = this.#pick(fn, version);
        if (!endpoint) break;
        const pending = queue[0] as PendingSession;
        const owner = this.#pendingOwners.get(pending) as SessionOwner;
        const waitedMs = pending.waitedMs();
        this.#dequeue(pending, 'bound');
        const session = this.#bind(this.#record(newSid(), fn.functionId, version.versionId, endpoint.key), endpoint, owner, undefined);
        owner.settled(pending, session);
        for (const waiter of pending.waiters) waiter.bound(session, waitedMs);
      }
    }
  }

  /** Every waiting session fails now (the gateway drains). */
  failWaiting(): void {
    for (const queue of [...this.#queues.values()]) for (const pending of [...queue]) this.#fail(pending, drainingWhileWaiting, 'drain');
  }

  /** Sessions waiting on this process now. */
  waitingCount(): number {
    return this.#pendingOwners.size;
  }

  #fail(pending: PendingSession, error: GrpcError, outcome: WaitOutcome): void {
    const owner = this.#pendingOwners.get(pending);
    if (owner === undefined) return;
    const waitedMs = pending.waitedMs();
    this.#dequeue(pending, outcome);
    for (const waiter of pending.waiters) waiter.failed(error, waitedMs);
  }

  /** Takes a session out of its queue (it was bound, or stops waiting); reports how long it waited. */
  #dequeue(pending: PendingSession, outcome: WaitOutcome): void {
    const owner = this.#pendingOwners.get(pending);
    if (owner === undefined) return;
    this.#pendingOwners.delete(pending);
    this.#clock.clearTimeout(pending.timer);
    const key = versionKey(pending.functionId, pending.versionId);
    const queue = this.#queues.get(key);
    if (queue !== undefined) {
      const i = queue.indexOf(pending);
      if (i >= 0) queue.splice(i, 1);
      if (queue.length === 0) this.#queues.delete(key);
    }
    if (outcome !== 'bound') owner.settled(pending, undefined);
    this.versions.add(pending.functionId, pending.versionId, 0, -1);
    this.#opts.onWaitEnded?.(pending.functionId, pending.versionId, outcome, pending.waitedMs());
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
  resume(claims: SessionClaims, token: string, fn: RoutableFunction, owner: SessionOwner): Session | GrpcError {
    let record = this.#records.get(claims.sid);
    const now = this.#clock.wall();
    const knownHere = record !== undefined && (record.live > 0 || this.#clock.now() - record.endedAt < this.#opts.lingerMs);
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
    const now = this.#clock.wall();
    if (now >= session.resealAt) this.#seal(session, now);
  }

  /** Sessions bound to at least one connection now (for /debug/sessions). */
  *liveRecords(): IterableIterator<Readonly<SessionRecord>> {
    for (const record of this.#records.values()) if (record.live > 0) yield record;
  }

  /** A session's binding ended (its connection closed, or its endpoint went away). */
  end(session: Session): void {
    const { group, record } = session as BoundSession; // every Session is made by #bind
    if (!group.delete(session)) return; // already ended
    // A group leaves #bound only here, empty, so a session's group is the one #bound holds.
    if (group.size === 0) this.#bound.delete(groupKey(session.functionId, session.versionId, session.endpoint.key));
    session.upstream.close();
    this.load.release(session.endpoint.key);
    this.versions.add(session.functionId, session.versionId, -1, 0);
    // A capped endpoint has room again: the oldest session waiting for this version may take it.
    if (this.#queues.size > 0 && this.#queues.has(versionKey(session.functionId, session.versionId))) this.admitWaiting();
    if (--record.live > 0) return;
    record.endedAt = this.#clock.now();
    this.#ended.push(record);
    this.#endedAt.push(record.endedAt);
    this.#sweeper ??= this.#clock.setInterval(() => this.#sweep(), Math.min(1000, this.#opts.lingerMs)).unref();
  }

  /**
   * After a registry change: every live session whose endpoint is no longer a ready endpoint
   * of its version ends, and its connection is told (so the client can be sent elsewhere).
   */
  retireUnready(lookup: FunctionLookup): void {
    const gone: [Session, SessionOwner][] = [];
    for (const group of this.#bound.values()) {
      const first = group.first();
      if (!first) continue;
      if (lookup(first.functionId)?.versions.get(first.versionId)?.byKey.has(first.endpoint.key)) continue;
      gone.push(...group.entries());
    }
    for (const [session, owner] of gone) owner.endpointGone(session);
  }

  #record(sid: string, functionId: string, versionId: string, endpointKey: string): SessionRecord {
    const record: SessionRecord = { sid, functionId, versionId, endpointKey, live: 0, endedAt: 0 };
    this.#records.set(sid, record);
    return record;
  }

  #bind(record: SessionRecord, endpoint: Endpoint, owner: SessionOwner, sealed: { token: string; sealedAt: number } | undefined): Session {
    record.live++;
    this.load.acquire(endpoint.key);
    this.versions.add(record.functionId, record.versionId, 1, 0);
    const key = groupKey(record.functionId, record.versionId, endpoint.key);
    let group = this.#bound.get(key);
    if (!group) this.#bound.set(key, (group = new SlotMap()));
    const session: BoundSession = {
      id: record.sid,
      token: '',
      setCookie: [],
      resealAt: 0,
      functionId: record.functionId,
      versionId: record.versionId,
      endpoint,
      upstream: this.#opts.openUpstream(endpoint),
      slot: -1,
      record,
      group,
    };
    if (sealed) {
      session.token = sealed.token;
      session.setCookie = [sessionCookie(sealed.token)];
      session.resealAt = sealed.sealedAt + this.#resealMs;
    } else {
      this.#seal(session, this.#clock.wall());
    }
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
    const cutoff = this.#clock.now() - this.#opts.lingerMs;
    const ended = this.#ended;
    const endedAt = this.#endedAt;
    let head = this.#endedHead;
    for (; head < ended.length && (endedAt[head] as number) <= cutoff; head++) {
      const record = ended[head] as SessionRecord;
      ended[head] = undefined;
      // Not one live again, nor one that ended again since (its later entry stands).
      if (record.live === 0 && record.endedAt === endedAt[head] && this.#records.get(record.sid) === record) this.#records.delete(record.sid);
    }
    if (head === ended.length) {
      ended.length = 0;
      endedAt.length = 0;
      head = 0;
    } else if (head >= 1024 && head * 2 >= ended.length) {
      ended.splice(0, head);
      endedAt.splice(0, head);
      head = 0;
    }
    this.#endedHead = head;
    if (ended.length === 0 && this.#sweeper) {
      this.#clock.clearTimeout(this.#sweeper);
      this.#sweeper = undefined;
    }
  }
}

/** What a full endpoint holds, for RESOURCE_EXHAUSTED: with a shared cap, this process's share. */
function allowed(cap: number, rank: ReplicaRank): string {
  return rank.count > 1 ? `this gateway's share of its ${cap} sessions (${rank.count} gateway processes share the cap)` : `${cap} sessions`;
}

/** A session with what ending it needs, so that end() looks nothing up. */
interface BoundSession extends Session {
  readonly record: SessionRecord;
  /** The live sessions of its endpoint it is among (#bound's entry for them). */
  readonly group: SlotMap<Session, SessionOwner>;
}

function groupKey(functionId: string, versionId: string, endpointKey: string): string {
  return functionId + '\0' + versionId + '\0' + endpointKey;
}
