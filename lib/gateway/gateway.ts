// The gateway's request pipeline and connection set. A new stream goes one way:
// checks -> auth -> route -> session -> forward; each step either hands on or answers with a
// gateway-originated gRPC status. Nothing here awaits I/O except a JWT not yet verified.
import http2, { type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Authenticator, Principal } from '../auth/authenticator.ts';
import { forwardCall } from '../forward/forward.ts';
import { grpcError, isGrpcError, respondHttp, respondTrailersOnly, Status, type GrpcError } from '../grpc/status.ts';
import { parseGrpcTimeout } from '../grpc/timeout.ts';
import type { Registry } from '../registry/registry.ts';
import { readInvocation } from '../route/invocation.ts';
import { routeInvocation } from '../route/route.ts';
import { failConnection, type InternalErrorSink } from '../runtime/contain.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import type { Logger } from '../telemetry/log.ts';
import type { Telemetry } from '../telemetry/events.ts';
import { ClientConnection, type ConnectionLimits } from './connection.ts';
import { GatewayHealth, isHealthPath } from './health.ts';

export interface GatewayOptions {
  readonly registry: Registry;
  readonly authenticator: Authenticator;
  readonly sessions: SessionManager;
  /** Client connection idle timeout and maximum age (0 = none). */
  readonly limits: ConnectionLimits;
  readonly log: Logger;
  readonly telemetry: Telemetry;
}

const draining = grpcError(Status.UNAVAILABLE, 'gateway is draining (shutting down)');
const badTimeout = grpcError(Status.INVALID_ARGUMENT, 'malformed grpc-timeout metadata');
const unverifiable = grpcError(Status.UNAUTHENTICATED, 'token could not be verified', 'verify_failed');

export class Gateway {
  readonly health: GatewayHealth;
  readonly #opts: GatewayOptions;
  readonly #report: InternalErrorSink;
  readonly #connections = new Set<ClientConnection>();
  #draining = false;
  #drained: (() => void) | undefined;

  constructor(opts: GatewayOptions) {
    this.#opts = opts;
    this.#report = (where, err) => opts.telemetry.internalError(where, err);
    this.health = new GatewayHealth(this.#report);
  }

  get draining(): boolean {
    return this.#draining;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Attach to an HTTP/2 server (h2c or TLS). */
  attach(server: http2.Http2Server | http2.Http2SecureServer): void {
    // An exception out of either closes that one connection (GOAWAY INTERNAL_ERROR), never the process.
    server.on('session', (session: ServerHttp2Session) => {
      try {
        this.#onSession(session);
      } catch (err) {
        failConnection(session, 'new connection', err, this.#report);
      }
    });
    server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      try {
        this.#onStream(stream, headers, rawHeaders);
      } catch (err) {
        this.#fail(stream, 'new stream', err);
      }
    });
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
      for (const connection of this.#connections) connection.shutDown('drain', true);
    }
    if (this.#connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const deadline = setTimeout(() => {
        for (const connection of this.#connections) connection.destroy();
        resolve();
      }, timeoutMs);
      this.#drained = () => {
        clearTimeout(deadline);
        resolve();
      };
    });
  }

  #onSession(session: ServerHttp2Session): void {
    if (session.destroyed) return; // nothing to track: its 'close' has been and gone
    const { telemetry } = this.#opts;
    session.on('error', (err) => this.#opts.log.debug('client connection error', { error: err.message }));
    const connection = new ClientConnection(session, this.#opts.sessions, this.#opts.limits, {
      onGatewayClose: (reason) => telemetry.connectionClosedBy(reason),
      onClosed: (c) => {
        this.#connections.delete(c);
        telemetry.connectionClosed();
        if (this.#draining && this.#connections.size === 0) this.#drained?.();
      },
    });
    this.#connections.add(connection);
    telemetry.connectionOpened();
    if (this.#draining) connection.shutDown('drain', false);
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    // First, before any return: an 'error' emitted later with no listener would end the process.
    stream.on('error', ignoreStreamError);
    // node:http2 queues 'stream' for the next tick; a connection error later in the same read
    // (say, an oversized frame right behind these HEADERS) has by then destroyed the connection
    // and its streams. Such a stream has no session and nothing to answer.
    const session = stream.session;
    if (session === undefined || stream.destroyed) return;
    const connection = ClientConnection.of(session);
    if (!connection) {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    connection.streamOpened(stream);
    const startedAt = performance.now();

    const contentType = headers['content-type'];
    if (!isGrpcContentType(contentType)) {
      const message = `fngate: expected content-type application/grpc, got ${contentType ?? 'none'}`;
      this.#opts.telemetry.rpcRejected({
        path: headers[':path'],
        status: 415,
        http: true,
        message,
        reason: undefined,
        subject: undefined,
        functionId: undefined,
        startedAt,
      });
      respondHttp(stream, 415, message, { accept: 'application/grpc' });
      return;
    }
    const path = headers[':path'];
    // The gateway's own health answers even while draining: that is when NOT_SERVING matters.
    if (headers['function-id'] === undefined && isHealthPath(path)) {
      this.health.serve(stream, path as string);
      return;
    }
    if (this.#draining) {
      this.#reject(stream, headers, startedAt, draining, undefined);
      connection.closeGracefully();
      return;
    }
    const principal = this.#opts.authenticator.authenticate(headers.authorization);
    if (principal instanceof Promise) {
      principal
        .then(
          (p) => this.#invoke(stream, headers, rawHeaders, connection, p, startedAt),
          () => this.#reject(stream, headers, startedAt, unverifiable, undefined),
        )
        .catch((err: unknown) => this.#fail(stream, 'stream after token verification', err));
      return;
    }
    this.#invoke(stream, headers, rawHeaders, connection, principal, startedAt);
  }

  #invoke(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    rawHeaders: string[],
    connection: ClientConnection,
    principal: Principal | GrpcError,
    startedAt: number,
  ): void {
    if (stream.closed || stream.destroyed) return;
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
    forwardCall(stream, headers, rawHeaders, session, principal.subject, timeoutMs, this.#opts.telemetry);
  }

  /** An exception while handling `stream`: its connection goes, the process stays. */
  #fail(stream: ServerHttp2Stream, where: string, err: unknown): void {
    failConnection(stream.session, where, err, this.#report);
    if (!stream.destroyed) stream.destroy();
  }

  #reject(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    startedAt: number,
    error: GrpcError,
    principal: Principal | undefined,
  ): void {
    const functionId = headers['function-id'];
    this.#opts.telemetry.rpcRejected({
      path: headers[':path'],
      status: error.code,
      http: false,
      message: error.message,
      reason: error.reason,
      subject: principal?.subject,
      functionId: typeof functionId === 'string' ? functionId : undefined,
      startedAt,
    });
    respondTrailersOnly(stream, error);
  }
}

/** application/grpc, optionally +format or ;params (gRPC-over-HTTP/2 spec). Not grpc-web. */
export function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined || !value.startsWith('application/grpc')) return false;
  const next = value.charCodeAt(16);
  return Number.isNaN(next) || next === 0x2b /* + */ || next === 0x3b /* ; */;
}

function ignoreStreamError(): void {
  // Reported through 'close'; a listener must exist or an 'error' would crash the process.
}
