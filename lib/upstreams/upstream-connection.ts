// A session's own HTTP/2 connection to its pinned endpoint. Connected lazily on the first
// request (Node queues requests made while connecting) and re-dialled if it dies, so the
// session keeps its endpoint across a backend connection failure.
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Endpoint } from '../registry/types.ts';
import { shareBindAccessors } from './shared-bind-accessors.ts';

// request() binds every call with AsyncResource#bind; see shared-bind-accessors.ts.
shareBindAccessors();

export interface UpstreamTuning {
  /** Per-stream receive window we advertise to the function. */
  readonly streamWindow: number;
  /** Connection-level receive window. */
  readonly connectionWindow: number;
  /** nghttp2's budget for buffered frames on one connection, in MB. */
  readonly maxSessionMemoryMb: number;
}

export const defaultUpstreamTuning: UpstreamTuning = {
  streamWindow: 1 << 20,
  connectionWindow: 8 << 20,
  maxSessionMemoryMb: 64,
};

/** Shared by every request: request() copies it before use. */
const REQUEST_OPTIONS: http2.ClientSessionRequestOptions = Object.freeze({ endStream: false });

export class UpstreamConnection {
  readonly endpoint: Endpoint;
  readonly #tuning: UpstreamTuning;
  #session: ClientHttp2Session | undefined;
  #closed = false;

  constructor(endpoint: Endpoint, tuning: UpstreamTuning) {
    this.endpoint = endpoint;
    this.#tuning = tuning;
  }

  /** Opens a stream to the endpoint; errors surface on the stream, never as a throw. */
  /** `headers`: node:http2's flat [name, value, ...] list. */
  request(headers: readonly string[]): ClientHttp2Stream {
    const session = this.#live();
    try {
      return session.request(headers, REQUEST_OPTIONS);
    } catch {
      // The connection turned unusable between our check and the request (a GOAWAY being
      // processed): dial a new one. A fresh session accepts requests while connecting.
      this.#forget(session);
      return this.#live().request(headers, REQUEST_OPTIONS);
    }
  }

  /** Graceful: streams already open run to their end, then the connection closes. */
  close(): void {
    this.#closed = true;
    const session = this.#session;
    this.#session = undefined;
    if (session && !session.closed) session.close();
  }

  #live(): ClientHttp2Session {
    const current = this.#session;
    if (current && !current.closed && !current.destroyed) return current;
    const session = http2.connect(`http://${this.endpoint.key}`, {
      settings: { enablePush: false, initialWindowSize: this.#tuning.streamWindow },
      maxSessionMemory: this.#tuning.maxSessionMemoryMb,
    });
    const window = this.#tuning.connectionWindow;
    session.once('connect', () => {
      if (!session.destroyed) session.setLocalWindowSize(window);
    });
    // Connection errors are reported to each stream; the session itself only needs to be
    // forgotten so the next request dials again.
    session.on('error', noop);
    session.once('goaway', () => this.#forget(session));
    session.once('close', () => this.#forget(session));
    this.#session = session;
    if (this.#closed) session.close();
    return session;
  }

  #forget(session: ClientHttp2Session): void {
    if (this.#session === session) this.#session = undefined;
    // After the function's GOAWAY, new streams must go to a new connection.
    if (!session.closed) session.close();
  }
}

function noop(): void {}
