// The sessions of one client connection: which session each (function, version) it called is
// pinned to, and which of its sessions still wait for room. It asks the process-wide
// SessionManager for sessions through the narrow SessionBinder, and is told back only as a
// SessionOwner: neither holds the other's whole surface.
import { grpcError, isGrpcError, Status, type GrpcError } from '../grpc/status.ts';
import type { RoutableFunction, RoutableVersion } from '../registry/types.ts';
import { PendingSession } from './pending-session.ts';
import type { SessionOwner } from './session-manager.ts';
import { noSession, versionKey, type Session } from './session.ts';
import type { SessionClaims } from './session-token.ts';

/** What a connection asks of the process-wide session state (the SessionManager). */
export interface SessionBinder {
  /** A new session on the least-loaded endpoint with room, a PendingSession to wait on, or why not. */
  open(fn: RoutableFunction, version: RoutableVersion, owner: SessionOwner): Session | GrpcError | PendingSession;
  /** The claims of a session id sealed by one of our keys; undefined for any other. */
  unseal(token: string): SessionClaims | undefined;
  /** The session an unsealed id names, bound to this connection, or why not. */
  resume(claims: SessionClaims, token: string, fn: RoutableFunction, owner: SessionOwner): Session | GrpcError;
  /** Moves the session's expiry on if its token is due. */
  refresh(session: Session): void;
  /** The connection lets go of the session. */
  end(session: Session): void;
  /** The connection of a waiting session closed. */
  abandon(pending: PendingSession): void;
}

/**
 * The sessions of one client connection, one per (function, version) actually used. Calls
 * that name no version follow a per-function pointer to the version their session was pinned
 * with, so promotion (a new activeVersion) only affects sessions opened after it.
 */
export class ConnectionSessions implements SessionOwner {
  readonly #binder: SessionBinder;
  readonly #onEndpointGone: () => void;
  /** "functionId\0versionId" -> session */
  readonly #byVersion = new Map<string, Session>();
  /** functionId -> version that calls naming no version use on this connection */
  readonly #defaults = new Map<string, string>();
  /** "functionId\0versionId" -> this connection's session still waiting for room */
  readonly #waiting = new Map<string, PendingSession>();

  /** `onEndpointGone` runs when a session's endpoint stops being ready (the client is to be sent elsewhere). */
  constructor(binder: SessionBinder, onEndpointGone: () => void) {
    this.#binder = binder;
    this.#onEndpointGone = onEndpointGone;
  }

  /**
   * The session this RPC runs on: the pinned one if its endpoint is still ready, else a new one;
   * or the connection's session still waiting for room, to wait on.
   */
  acquire(fn: RoutableFunction, versionId: string | undefined, resumeId: string | undefined): Session | GrpcError | PendingSession {
    if (resumeId !== undefined) return this.#resume(fn, versionId, resumeId);
    let wanted = versionId ?? this.#defaults.get(fn.functionId) ?? fn.activeVersion;
    let session = this.#pinned(fn, wanted);
    if (!session && versionId === undefined && wanted !== fn.activeVersion) {
      // The session the pointer named has ended: a new session takes the active version.
      wanted = fn.activeVersion;
      session = this.#pinned(fn, wanted);
    }
    if (session) {
      this.#binder.refresh(session);
    } else {
      const version = fn.versions.get(wanted);
      if (!version) return grpcError(Status.NOT_FOUND, `function ${fn.functionId} has no version ${wanted}`);
      const key = versionKey(fn.functionId, wanted);
      // Later RPCs of the connection wait on the session already waiting.
      const opened = this.#waiting.get(key) ?? this.#binder.open(fn, version, this);
      if (isGrpcError(opened)) return opened;
      if (versionId === undefined) this.#defaults.set(fn.functionId, wanted);
      if (opened instanceof PendingSession) {
        this.#waiting.set(key, opened);
        return opened;
      }
      this.#byVersion.set(key, opened);
      session = opened;
    }
    if (versionId === undefined) this.#defaults.set(fn.functionId, wanted);
    return session;
  }

  /** A waiting session of this connection stopped waiting: bound to `session`, or not (undefined). */
  settled(pending: PendingSession, session: Session | undefined): void {
    const key = versionKey(pending.functionId, pending.versionId);
    if (this.#waiting.get(key) === pending) this.#waiting.delete(key);
    if (session) this.#byVersion.set(key, session);
  }

  /** The client connection closed: every session of it ends, and those waiting stop waiting. */
  closeAll(): void {
    for (const pending of [...this.#waiting.values()]) this.#binder.abandon(pending);
    this.#waiting.clear();
    for (const session of this.#byVersion.values()) this.#binder.end(session);
    this.#byVersion.clear();
    this.#defaults.clear();
  }

  /** This session's endpoint is no longer ready: it ends, and the connection is told. */
  endpointGone(session: Session): void {
    const key = versionKey(session.functionId, session.versionId);
    if (this.#byVersion.get(key) === session) this.#byVersion.delete(key);
    // Open streams run on over the old upstream until they end.
    this.#binder.end(session);
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
    const claims = this.#binder.unseal(token);
    if (!claims || claims.functionId !== fn.functionId || (versionId !== undefined && versionId !== claims.versionId)) {
      return noSession;
    }
    const current = this.#pinned(fn, claims.versionId);
    let session: Session | GrpcError;
    if (current?.id === claims.sid) {
      session = current;
      this.#binder.refresh(current);
    } else {
      session = this.#binder.resume(claims, token, fn, this);
      if (isGrpcError(session)) return session;
      // Resuming replaces whatever session this connection had for that version.
      if (current) this.#binder.end(current);
      this.#byVersion.set(versionKey(fn.functionId, claims.versionId), session);
    }
    if (versionId === undefined) this.#defaults.set(fn.functionId, claims.versionId);
    return session;
  }
}
