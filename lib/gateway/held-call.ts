// An RPC waiting for its session to be bound (the Function holds new sessions while it has no
// endpoint with room). It stays open and unanswered; it leaves the wait with its own deadline or
// cancel, or when the session is bound (then it is forwarded, once) or fails to be.
import { grpcError, Status, type GrpcError } from '../grpc/status.ts';
import { MAX_TIMER_MS } from '../grpc/timeout.ts';
import type { H2Stream } from '../h2/stream.ts';
import type { PendingSession, SessionWaiter } from '../sessions/pending-session.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import type { Session } from '../sessions/session.ts';
import type { HeldBody } from './held-body.ts';

/** What the gateway does with a held call once its wait ends. */
export interface HeldCallOutlet {
  /** Forward on `session`; `timeoutMs` is what is left of the call's deadline. */
  forward(call: HeldCall, session: Session, timeoutMs: number | undefined, waitedMs: number): void;
  /** Answer with a gateway status. */
  reject(call: HeldCall, error: GrpcError, waitedMs: number): void;
}

export class HeldCall implements SessionWaiter {
  readonly stream: H2Stream;
  readonly body: HeldBody;
  readonly #pending: PendingSession;
  readonly #sessions: SessionManager;
  readonly #outlet: HeldCallOutlet;
  /** performance.now() when the RPC's deadline falls; Infinity without grpc-timeout. */
  readonly #deadlineAt: number;
  #deadline: NodeJS.Timeout | undefined;
  #done = false;

  constructor(stream: H2Stream, body: HeldBody, pending: PendingSession, sessions: SessionManager, timeoutMs: number | undefined, outlet: HeldCallOutlet) {
    this.stream = stream;
    this.body = body;
    this.#pending = pending;
    this.#sessions = sessions;
    this.#outlet = outlet;
    this.#deadlineAt = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
    if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) this.#deadline = setTimeout(onDeadline, timeoutMs, this);
    body.onClosed = () => this.#leave('cancelled');
    sessions.wait(pending, this);
  }

  bound(session: Session, waitedMs: number): void {
    if (!this.#finish()) return;
    this.stream.connection.guarded('forwarding a call that waited for its session', () => {
      const left = this.#deadlineAt === Infinity ? undefined : Math.max(0, Math.floor(this.#deadlineAt - performance.now()));
      this.#outlet.forward(this, session, left, waitedMs);
    });
  }

  failed(error: GrpcError, waitedMs: number): void {
    if (!this.#finish()) return;
    this.stream.connection.guarded('ending a call whose session could not be bound', () => this.#outlet.reject(this, error, waitedMs));
  }

  /** The RPC's own deadline ran out while it waited. */
  deadlineReached(): void {
    const waitedMs = this.#pending.waitedMs();
    if (!this.#leave('deadline')) return;
    const { functionId, versionId } = this.#pending;
    const error = grpcError(Status.DEADLINE_EXCEEDED, `deadline exceeded (grpc-timeout) while waiting for function ${functionId} version ${versionId} to have an endpoint`);
    this.stream.connection.guarded('grpc-timeout deadline while waiting', () => this.#outlet.reject(this, error, waitedMs));
  }

  #leave(outcome: 'cancelled' | 'deadline'): boolean {
    if (!this.#finish()) return false;
    this.#sessions.leave(this.#pending, this, outcome);
    return true;
  }

  /** Marks the wait over; false if it already was. */
  #finish(): boolean {
    if (this.#done) return false;
    this.#done = true;
    clearTimeout(this.#deadline);
    this.body.onClosed = undefined;
    return true;
  }
}

function onDeadline(call: HeldCall): void {
  call.deadlineReached();
}
