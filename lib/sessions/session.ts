// One session: a client connection's pin of one (function, version) to one endpoint, with
// the session's own upstream HTTP/2 connection.
import { grpcError, Status } from '../grpc/status.ts';
import type { H2Stream, StreamHandler } from '../h2/stream.ts';
import type { Endpoint } from '../registry/types.ts';
import { SESSION_COOKIE } from '../route/invocation.ts';

/** A session id that names no session this gateway can resume: the same answer for every reason. */
export const noSession = grpcError(Status.NOT_FOUND, 'no existing session found');

/** Sessions are kept per (function, version): "functionId\0versionId". */
export function versionKey(functionId: string, versionId: string): string {
  return functionId + '\0' + versionId;
}

/** The Set-Cookie value for a session id (made when the id is sealed, sent on every response). */
export function sessionCookie(token: string): string {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly`;
}

/**
 * A session's own connection to its endpoint, as the sessions layer sees it: forward opens
 * each call's stream on it, and the session closes it when it ends. Serve's factory makes an
 * UpstreamConnection, which dials on the first request, so binding a session does no I/O.
 */
export interface SessionUpstream {
  /** Opens a request stream; failures surface as the stream's close, never as a throw. */
  request(fields: readonly string[], handler: StreamHandler, context: unknown): H2Stream;
  /** Graceful: streams already open run to their end. */
  close(): void;
}

/** Makes a new session's upstream connection to its endpoint (handed to the SessionManager). */
export type OpenUpstream = (endpoint: Endpoint) => SessionUpstream;

export interface Session {
  /** The session's short name (sid) for logs, traces and /debug/sessions. */
  readonly id: string;
  /** The sealed id the client gets as nvcf-reqid and presents to resume; resealed as it ages. */
  token: string;
  /** [sessionCookie(token)]: shared by every response until the next reseal, never mutated. */
  setCookie: readonly string[];
  /** Epoch ms after which the next RPC reseals the token (its expiry moves forward). */
  resealAt: number;
  readonly functionId: string;
  readonly versionId: string;
  readonly endpoint: Endpoint;
  readonly upstream: SessionUpstream;
  /** Position among the live sessions of its endpoint (the SessionManager's). */
  slot: number;
}

/**
 * What this process knows of a session id beyond its token: how many of its connections hold
 * it, and when the last let go. A token whose expiry passed still resumes here while the
 * session is live or ended less than --session-linger ago (a long stream gets no fresh token).
 */
export interface SessionRecord {
  readonly sid: string;
  readonly functionId: string;
  readonly versionId: string;
  readonly endpointKey: string;
  /** Live sessions bound to this id (a resumed id may be live on more than one connection). */
  live: number;
  /** When the last live binding ended (ms, monotonic); meaningful while live === 0. */
  endedAt: number;
}
