// What the data plane reports, and to whom: the pipeline calls a Telemetry sink at a few fixed
// points and never reads anything back except an opaque per-call trace handle. Telemetry
// depends on nothing upstream of it; the gateway and forwarder depend on this interface only.

/**
 * A request's header fields by name, as the pipeline reads them: a field sent once is its
 * value; repeats follow HTTP's rules (cookie joined with "; ", set-cookie a list, single-value
 * fields keep the first, others joined with ", ").
 */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/**
 * Why the gateway closed a client connection: no stream for --idle-timeout; shutting down;
 * a pinned endpoint stopped being ready; older than --max-connection-age.
 */
export type CloseReason = 'idle' | 'drain' | 'endpoint_gone' | 'max_age';

export interface SessionInfo {
  readonly id: string;
  readonly functionId: string;
  readonly versionId: string;
  readonly endpoint: { readonly key: string };
}

/** A call the gateway forwarded to a function, as it ended. Times are performance.now() ms. */
export interface ForwardedRpc {
  readonly session: SessionInfo;
  /** `/package.Service/Method` */
  readonly path: string;
  readonly subject: string;
  /** grpc-status the client got; undefined if the client cancelled or went away first. */
  readonly status: number | undefined;
  readonly startedAt: number;
  /** When the function's response headers arrived (time to first response byte). */
  readonly firstByteAt: number | undefined;
  readonly endedAt: number;
  /** Message bytes client -> function and function -> client (gRPC frames, as DATA). */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Why the connection to the endpoint failed, when it did (ECONNREFUSED, ...). */
  readonly upstreamError: string | undefined;
  /** Whatever rpcStarting returned for this call. */
  readonly trace: unknown;
}

/** A request the gateway answered itself (gRPC error, or HTTP 415 for non-gRPC). */
export interface RejectedRpc {
  readonly path: string | undefined;
  /** gRPC status code, or the HTTP status when `http` is true. */
  readonly status: number;
  readonly http: boolean;
  readonly message: string;
  /** Machine-readable cause for auth failures (missing_token, unknown_key, jwt_expired, ...). */
  readonly reason: string | undefined;
  readonly subject: string | undefined;
  readonly functionId: string | undefined;
  readonly startedAt: number;
}

export interface Telemetry {
  connectionOpened(): void;
  connectionClosed(): void;
  connectionClosedBy(reason: CloseReason): void;
  /**
   * A call is about to be forwarded. May add trace context to `upstreamHeaders` (W3C
   * traceparent toward the function); the value returned comes back as ForwardedRpc.trace.
   */
  rpcStarting(clientHeaders: RequestHeaders, upstreamHeaders: string[], session: SessionInfo): unknown;
  rpcForwarded(rpc: ForwardedRpc): void;
  rpcRejected(rpc: RejectedRpc): void;
  setDraining(draining: boolean): void;
  /**
   * An exception escaped one connection's handler (`where` names it): that connection was
   * closed with GOAWAY(INTERNAL_ERROR) and the process goes on. Logged with the stack, counted.
   */
  internalError(where: string, err: unknown): void;
}
