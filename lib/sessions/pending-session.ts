// A session that waits for room: its version had no ready endpoint, or every one was at
// maxSessionsPerEndpoint, and the Function holds new sessions (scaling.holdTimeout > 0). The
// RPCs of its connection that want it wait on it; it is bound once, first come first served.
import type { GrpcError } from '../grpc/status.ts';
import type { Clock, Timer } from '../runtime/clock.ts';
import type { Session } from './session.ts';

/** One RPC waiting on a pending session. */
export interface SessionWaiter {
  /** The session was bound after `waitedMs`: forward now. */
  bound(session: Session, waitedMs: number): void;
  /** The wait ended without a session (hold timeout, drain, function removed). */
  failed(error: GrpcError, waitedMs: number): void;
}

/** How a wait ended, for metrics: bound, or why not. */
export type WaitOutcome = 'bound' | 'deadline' | 'cancelled' | 'timeout' | 'queue_full' | 'drain' | 'removed';

export class PendingSession {
  readonly functionId: string;
  readonly versionId: string;
  readonly #clock: Clock;
  /** clock.now() when it started waiting. */
  readonly since: number;
  readonly waiters = new Set<SessionWaiter>();
  /** The holdTimeout timer. */
  timer: Timer | undefined;

  constructor(functionId: string, versionId: string, clock: Clock) {
    this.functionId = functionId;
    this.versionId = versionId;
    this.#clock = clock;
    this.since = clock.now();
  }

  waitedMs(): number {
    return Math.round(this.#clock.now() - this.since);
  }
}
