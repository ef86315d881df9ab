// One client HTTP/2 connection: its open-stream count (activity is streams, not frames, so
// keepalive PINGs never keep it alive), the idle timer built on that count, its sessions, its
// maximum age, and its graceful shutdown.
import type { ServerConnection } from '../h2/server-connection.ts';
import { connectionClosed } from '../runtime/young-garbage.ts';
import { ConnectionSessions, type SessionBinder } from '../sessions/connection-sessions.ts';
import type { CloseReason } from '../telemetry/events.ts';
import type { Slotted } from '../runtime/slot-map.ts';

/** GOAWAY with the largest stream id: "shutting down soon", new streams still accepted (RFC 9113 6.8). */
const SHUTDOWN_NOTICE_LAST_STREAM = 2 ** 31 - 1;
/**
 * After the idle GOAWAY a client hangs up at once; one that keeps the socket (say, in the middle
 * of a frame it sends a byte at a time, which keeps a graceful close waiting) is cut after this.
 */
const IDLE_CLOSE_GRACE_MS = 2000;
/**
 * Between the shutdown notice and the final GOAWAY: a stream the client sent before the notice
 * reached it still arrives under the final GOAWAY's last stream id, so nothing is refused.
 */
const NOTICE_GRACE_MS = 1000;
/** --max-connection-age varies by this share either way, so connections made together do not all go at once. */
const AGE_JITTER = 0.1;

/** Why the gateway winds a connection down while it may still carry streams. */
export type ShutdownReason = Exclude<CloseReason, 'idle'>;

export interface ConnectionLimits {
  readonly idleMs: number;
  /** 0 = no maximum age. */
  readonly maxAgeMs: number;
}

export interface ConnectionEvents {
  /** The connection was closed by the gateway for this reason (GOAWAY sent). */
  onGatewayClose(reason: CloseReason): void;
  /** The connection is gone, for whatever reason. */
  onClosed(connection: ClientConnection): void;
}

export class ClientConnection implements Slotted {
  readonly h2: ServerConnection;
  /** Position in the gateway's set of connections. */
  slot = -1;
  readonly sessions: ConnectionSessions;
  readonly #events: ConnectionEvents;
  #idle: NodeJS.Timeout;
  #maxAge: NodeJS.Timeout | undefined;
  #closing: CloseReason | undefined;
  #gone = false;

  constructor(h2: ServerConnection, sessions: SessionBinder, limits: ConnectionLimits, events: ConnectionEvents) {
    this.h2 = h2;
    // A pinned endpoint going away sends the client elsewhere: unmodified clients redial on GOAWAY.
    this.sessions = new ConnectionSessions(sessions, () => this.shutDown('endpoint_gone', true));
    this.#events = events;
    this.#idle = setTimeout(onIdle, limits.idleMs, this);
    if (limits.maxAgeMs > 0) {
      const jitter = 1 - AGE_JITTER + 2 * AGE_JITTER * Math.random();
      this.#maxAge = setTimeout(onMaxAge, Math.round(limits.maxAgeMs * jitter), this).unref();
    }
  }

  /** lib/h2 reports the connection gone (every stream ended, the socket closed). */
  closed(): void {
    if (this.#gone) return;
    this.#gone = true;
    clearTimeout(this.#idle);
    clearTimeout(this.#maxAge);
    this.sessions.closeAll();
    this.#events.onClosed(this);
    connectionClosed();
  }

  /** The number of open streams changed: the idle timer starts over when it reaches 0. */
  streamCountChanged(open: number): void {
    if (open === 0 && this.#closing === undefined && !this.#gone) this.#idle.refresh();
  }

  /**
   * Wind down without cutting anything: tell the client to stop opening streams now (shutdown
   * notice), then send the final GOAWAY; open streams run to their end either way, and
   * clients open new ones on a new connection. A connection that arrives during a drain gets
   * no notice (some clients would just redial), so its first call is answered UNAVAILABLE
   * instead, then it is closed.
   */
  shutDown(reason: ShutdownReason, notice: boolean): void {
    if (this.#closing !== undefined || this.h2.closed) return;
    this.#closing = reason;
    clearTimeout(this.#maxAge);
    this.#events.onGatewayClose(reason);
    if (notice) this.h2.goaway(SHUTDOWN_NOTICE_LAST_STREAM);
    setTimeout(closeGracefully, NOTICE_GRACE_MS, this).unref();
  }

  /** Final GOAWAY now: streams already open (and answers already queued) still complete. */
  closeGracefully(): void {
    this.h2.close();
  }

  /** Idle: GOAWAY(NO_ERROR) and close; nothing is open, so nothing is cut. */
  idleClose(): void {
    if (this.#closing !== undefined || this.h2.closed) return;
    this.#closing = 'idle';
    this.#events.onGatewayClose('idle');
    this.h2.close();
    setTimeout(onIdleCloseGrace, IDLE_CLOSE_GRACE_MS, this).unref();
  }

  /** The idle GOAWAY went out a while ago and the socket is still there: cut it unless a stream runs. */
  idleCloseGraceOver(): void {
    if (this.#gone) return;
    if (this.h2.openStreams === 0) this.h2.destroy();
    // A stream that crossed the GOAWAY is served to its end; look again later.
    else setTimeout(onIdleCloseGrace, IDLE_CLOSE_GRACE_MS, this).unref();
  }

  /** The drain deadline passed: cut whatever is still open. */
  destroy(): void {
    this.h2.destroy();
  }

  /** Whether the idle timer found the connection still idle (no stream open). */
  isIdle(): boolean {
    return this.h2.openStreams === 0;
  }
}

function onIdle(connection: ClientConnection): void {
  // A stream opened since the timer was armed: it re-arms when the last stream closes.
  if (connection.isIdle()) connection.idleClose();
}

function onMaxAge(connection: ClientConnection): void {
  connection.shutDown('max_age', true);
}

function onIdleCloseGrace(connection: ClientConnection): void {
  connection.idleCloseGraceOver();
}

function closeGracefully(connection: ClientConnection): void {
  connection.closeGracefully();
}
