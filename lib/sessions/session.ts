// One session: a client connection's pin of one (function, version) to one endpoint, with
// the session's own upstream HTTP/2 connection.
import type { Endpoint } from '../registry/types.ts';
import type { UpstreamConnection } from '../upstreams/upstream-connection.ts';

export interface Session {
  readonly id: string;
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
