// One session: a client connection's pin of one (function, version) to one endpoint, with
// the session's own upstream HTTP/2 connection.
import type { Endpoint } from '../registry/types.ts';
import type { UpstreamConnection } from '../upstreams/upstream-connection.ts';

/** Response metadata carrying the session id, and the cookie that carries it too. */
export const SESSION_HEADER = 'nvcf-reqid';
export const SESSION_COOKIE = 'nvcf-request-id';

/** The Set-Cookie value for a session (made once per session, sent on every response). */
export function sessionCookie(id: string): string {
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly`;
}

export interface Session {
  readonly id: string;
  /** [sessionCookie(id)]: shared by every response of the session, never mutated. */
  readonly setCookie: readonly string[];
  readonly functionId: string;
  readonly versionId: string;
  readonly endpoint: Endpoint;
  readonly upstream: UpstreamConnection;
}

/** What survives a session's end for `--session-linger`, so a new connection may resume it. */
export interface SessionRecord {
  readonly id: string;
  readonly functionId: string;
  readonly versionId: string;
  readonly endpointKey: string;
  /** Live sessions bound to this id (a resumed id may be live on more than one connection). */
  live: number;
  /** When the last live binding ended (ms, monotonic); meaningful while live === 0. */
  endedAt: number;
}
