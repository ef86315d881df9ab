// The gateway's request pipeline and connection set. A new stream goes one way:
// checks -> auth -> route -> session -> forward; each step either hands on or answers with a
// gateway-originated gRPC status. Nothing here awaits I/O except a JWT not yet verified.
import type { Socket } from 'node:net';
import type { Authenticator, Principal } from '../auth/authenticator.ts';
import { fieldValue, WAIT_HEADER } from '../forward/headers.ts';
import { forwardCall } from '../forward/forward.ts';
import { ErrorCode } from '../h2/constants.ts';
import type { H2Counters, H2Limits } from '../h2/limits.ts';
import type { SocketReads } from '../h2/read-buffers.ts';
import { ServerConnection } from '../h2/server-connection.ts';
import type { H2Stream } from '../h2/stream.ts';
import { grpcError, isGrpcError, respondHttp, respondTrailersOnly, Status, type GrpcError } from '../grpc/status.ts';
import { parseGrpcTimeout } from '../grpc/timeout.ts';
import type { Registry } from '../registry/registry.ts';
import { readInvocation } from '../route/invocation.ts';
import { routeInvocation } from '../route/route.ts';
import { PendingSession } from '../sessions/pending-session.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import type { Session } from '../sessions/session.ts';
import type { Logger } from '../telemetry/log.ts';
import type { RequestHeaders, Telemetry } from '../telemetry/events.ts';
import { ClientConnection, type ConnectionLimits } from './connection.ts';
import { GatewayHealth, isHealthPath } from './health.ts';
import { HeldBody } from './held-body.ts';
import { HeldCall, type HeldCallOutlet } from './held-call.ts';
import { requestHeaders } from './request-headers.ts';
import { SlotMap } from '../runtime/slot-map.ts';

export interface GatewayOptions {
  readonly registry: Registry;
  readonly authenticator: Authenticator;
  readonly sessions: SessionManager;
  /** Client connection idle timeout and maximum age (0 = none). */
  readonly limits: ConnectionLimits;
  /** HTTP/2 limits of client connections, and where their protections count. */
  readonly h2: H2Limits;
  readonly h2Counters: H2Counters;
  /** Fields a request may carry (pseudo-headers included); more: RST_STREAM(ENHANCE_YOUR_CALM). */
  readonly maxHeaderFields: number;
  readonly log: Logger;
  readonly telemetry: Telemetry;
}

const draining = grpcError(Status.UNAVAILABLE, 'gateway is draining (shutting down)');
const badTimeout = grpcError(Status.INVALID_ARGUMENT, 'malformed grpc-timeout metadata');
const unverifiable = grpcError(Status.UNAUTHENTICATED, 'token could not be verified', 'verify_failed');

export class Gateway {
  readonly health = new GatewayHealth();
  readonly #opts: GatewayOptions;
  /** Open client connections (a SlotMap, not a Set: see slot-map.ts). */
  readonly #connections = new SlotMap<ClientConnection, true>();
  #draining = false;
  #drained: (() => void) | undefined;

  constructor(opts: GatewayOptions) {
    this.#opts = opts;
  }

  get draining(): boolean {
    return this.#draining;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** A client's HTTP/2 connection (h2c after its preface was seen, or TLS with ALPN h2). */
  accept(socket: Socket, reads?: SocketReads): void {
    const { telemetry } = this.#opts;
    let connection: ClientConnection | undefined;
    const h2 = new ServerConnection(socket, this.#opts.h2, this.#opts.h2Counters, {
      onStream: (stream, fields, endStream) => this.#onStream(connection as ClientConnection, stream, fields, endStream),
      onGoaway() {},
      onClose: () => connection?.closed(),
      onInternalError: (where, err) => telemetry.internalError(where, err),
      onStreamCountChanged: (open) => connection?.streamCountChanged(open),
    }, reads);
    connection = new ClientConnection(h2, this.#opts.sessions, this.#opts.limits, {
      onGatewayClose: (reason) => telemetry.connectionClosedBy(reason),
      onClosed: (c) => {
        this.#connections.delete(c);
        telemetry.connectionClosed();
        if (this.#draining && this.#connections.size === 0) this.#drained?.();
      },
    });
    this.#connections.set(connection, true);
    telemetry.connectionOpened();
    if (this.#draining) connection.shutDown('drain', false);
  }

  /**
   * SIGTERM: not-ready, GOAWAY to every client, open streams finish. Resolves when every
   * connection is gone or `timeoutMs` passed (then what is left is cut).
   */
  drain(timeoutMs: number): Promise<void> {
    if (!this.#draining) {
      this.#draining = true;
      this.health.stopServing();
      this.#opts.telemetry.setDraining(true);
      // Calls still waiting for a session would wait in vain: they end now, UNAVAILABLE.
      this.#opts.sessions.failWaiting();
      for (const connection of this.#connections.keys()) connection.shutDown('drain', true);
    }
    if (this.#connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const deadline = setTimeout(() => {
        for (const connection of this.#connections.keys()) connection.destroy();
        resolve();
      }, timeoutMs);
      this.#drained = () => {
        clearTimeout(deadline);
        resolve();
      };
    });
  }

  #onStream(connection: ClientConnection, stream: H2Stream, fields: string[], endStream: boolean): void {
    const startedAt = performance.now();
    if (fields.length / 2 > this.#opts.maxHeaderFields) {
      stream.reset(ErrorCode.ENHANCE_YOUR_CALM);
      return;
    }
    const headers = requestHeaders(fields);
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !isGrpcContentType(contentType)) {
      const message = `fngate: expected content-type application/grpc, got ${contentType ?? 'none'}`;
      this.#opts.telemetry.rpcRejected({
        path: stringOf(headers[':path']),
        status: 415,
        http: true,
        message,
        reason: undefined,
        subject: undefined,
        functionId: undefined,
        startedAt,
      });
      respondHttp(stream, 415, message, ['accept', 'application/grpc']);
      return;
    }
    const path = fieldValue(fields, ':path');
    // The gateway's own health answers even while draining: that is when NOT_SERVING matters.
    if (headers['function-id'] === undefined && isHealthPath(path)) {
      this.health.serve(stream, path as string, endStream);
      return;
    }
    if (this.#draining) {
      this.#reject(stream, headers, startedAt, draining, undefined);
      connection.closeGracefully();
      return;
    }
    const principal = this.#opts.authenticator.authenticate(stringOf(headers.authorization));
    if (principal instanceof Promise) {
      // The body may arrive while the token is verified: hold it unconsumed (its window bounds it).
      const held = new HeldBody(stream, endStream);
      principal
        .then(
          (p) => stream.connection.guarded('stream after token verification', () => this.#invoke(stream, headers, fields, false, connection, p, startedAt, held)),
          () => stream.connection.guarded('stream after token verification', () => this.#reject(stream, headers, startedAt, unverifiable, undefined)),
        );
      return;
    }
    this.#invoke(stream, headers, fields, endStream, connection, principal, startedAt, undefined);
  }

  #invoke(
    stream: H2Stream,
    headers: RequestHeaders,
    fields: string[],
    endStream: boolean,
    connection: ClientConnection,
    principal: Principal | GrpcError,
    startedAt: number,
    held: HeldBody | undefined,
  ): void {
    if (stream.closed) return;
    if (isGrpcError(principal)) return this.#reject(stream, headers, startedAt, principal, undefined);
    const invocation = readInvocation(headers);
    if (isGrpcError(invocation)) return this.#reject(stream, headers, startedAt, invocation, principal);
    const timeoutText = headers['grpc-timeout'];
    let timeoutMs: number | undefined;
    if (timeoutText !== undefined) {
      timeoutMs = typeof timeoutText === 'string' ? parseGrpcTimeout(timeoutText) : undefined;
      if (timeoutMs === undefined) return this.#reject(stream, headers, startedAt, badTimeout, principal);
    }
    const fn = routeInvocation(this.#opts.registry, principal, invocation);
    if (isGrpcError(fn)) return this.#reject(stream, headers, startedAt, fn, principal);
    const session = connection.sessions.acquire(fn, invocation.versionId, invocation.sessionId);
    if (isGrpcError(session)) return this.#reject(stream, headers, startedAt, session, principal);
    if (session instanceof PendingSession) {
      // No endpoint with room yet: the call stays open, unanswered, until the session is bound.
      const body = held ?? new HeldBody(stream, endStream);
      const outlet = new WaitOutlet(this, headers, fields, principal, startedAt);
      new HeldCall(stream, body, session, this.#opts.sessions, timeoutMs, outlet);
      return;
    }
    forwardCall(stream, headers, fields, endStream, session, principal.subject, timeoutMs, this.#opts.telemetry, -1);
    held?.replay(stream);
  }

  /** A call that waited for its session: forwarded with what is left of its deadline. */
  forwardHeld(call: HeldCall, headers: RequestHeaders, fields: string[], subject: string, session: Session, timeoutMs: number | undefined, waitedMs: number): void {
    if (call.stream.closed) return;
    // The function is told the time the client has left, not the time it first asked for.
    if (timeoutMs !== undefined) replaceField(fields, 'grpc-timeout', `${timeoutMs}m`);
    forwardCall(call.stream, headers, fields, false, session, subject, timeoutMs, this.#opts.telemetry, waitedMs);
    call.body.replay(call.stream);
  }

  rejectHeld(call: HeldCall, headers: RequestHeaders, startedAt: number, error: GrpcError, principal: Principal, waitedMs: number): void {
    this.#reject(call.stream, headers, startedAt, error, principal, [WAIT_HEADER, String(waitedMs)]);
  }

  #reject(stream: H2Stream, headers: RequestHeaders, startedAt: number, error: GrpcError, principal: Principal | undefined, extra?: readonly string[]): void {
    this.#opts.telemetry.rpcRejected({
      path: stringOf(headers[':path']),
      status: error.code,
      http: false,
      message: error.message,
      reason: error.reason,
      subject: principal?.subject,
      functionId: stringOf(headers['function-id']),
      startedAt,
    });
    respondTrailersOnly(stream, error, extra);
  }
}

/** Where a held call goes when its wait ends: back into the gateway's pipeline. */
class WaitOutlet implements HeldCallOutlet {
  readonly #gateway: Gateway;
  readonly #headers: RequestHeaders;
  readonly #fields: string[];
  readonly #principal: Principal;
  readonly #startedAt: number;

  constructor(gateway: Gateway, headers: RequestHeaders, fields: string[], principal: Principal, startedAt: number) {
    this.#gateway = gateway;
    this.#headers = headers;
    this.#fields = fields;
    this.#principal = principal;
    this.#startedAt = startedAt;
  }

  forward(call: HeldCall, session: Session, timeoutMs: number | undefined, waitedMs: number): void {
    this.#gateway.forwardHeld(call, this.#headers, this.#fields, this.#principal.subject, session, timeoutMs, waitedMs);
  }

  reject(call: HeldCall, error: GrpcError, waitedMs: number): void {
    this.#gateway.rejectHeld(call, this.#headers, this.#startedAt, error, this.#principal, waitedMs);
  }
}

function replaceField(fields: string[], name: string, value: string): void {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) fields[i + 1] = value;
}


function stringOf(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** application/grpc, optionally +format or ;params (gRPC-over-HTTP/2 spec). Not grpc-web. */
export function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined || !value.startsWith('application/grpc')) return false;
  const next = value.charCodeAt(16);
  return Number.isNaN(next) || next === 0x2b /* + */ || next === 0x3b /* ; */;
}
