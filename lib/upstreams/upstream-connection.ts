// A session's own HTTP/2 connection to its pinned endpoint, on lib/h2's client side. Dialled
// on the first request (the preface, SETTINGS and that request leave in the first write, before
// the TCP handshake has even finished) and dialled again after the endpoint's GOAWAY or a lost
// connection, so the session keeps its endpoint across them.
import net from 'node:net';
import { ClientConnection } from '../h2/client-connection.ts';
import type { ConnectionHooks } from '../h2/connection.ts';
import { DEFAULT_LIMITS, type H2Counters, type H2Limits } from '../h2/limits.ts';
import { SocketReads } from '../h2/read-buffers.ts';
import type { H2Stream, StreamHandler } from '../h2/stream.ts';
import type { Endpoint } from '../registry/types.ts';

export interface UpstreamTuning {
  /** lib/h2 limits of upstream connections (receive windows, frame size, protections). */
  readonly limits: H2Limits;
  /** Where the protections of every upstream connection count. */
  readonly counters: H2Counters;
  /** Told of an exception in a stream's handler (the upstream connection was then closed). */
  readonly onInternalError: (where: string, err: unknown) => void;
}

export class UpstreamConnection {
  readonly endpoint: Endpoint;
  readonly #tuning: UpstreamTuning;
  #connection: ClientConnection | undefined;
  #closed = false;

  constructor(endpoint: Endpoint, tuning: UpstreamTuning) {
    this.endpoint = endpoint;
    this.#tuning = tuning;
  }

  /** Opens a request stream; failures surface as the stream's close, never as a throw. */
  request(fields: readonly string[], handler: StreamHandler, context: unknown): H2Stream {
    let connection = this.#live();
    let stream = connection.request(fields, false, handler, context);
    if (stream === undefined) {
      // The connection stopped taking streams (a GOAWAY, its stream ids used up): dial again.
      this.#forget(connection);
      connection = this.#live();
      stream = connection.request(fields, false, handler, context) as H2Stream;
    }
    return stream;
  }

  /** Graceful: streams already open run to their end, then the connection closes. */
  close(): void {
    this.#closed = true;
    const connection = this.#connection;
    this.#connection = undefined;
    connection?.close();
  }

  #live(): ClientConnection {
    const current = this.#connection;
    if (current !== undefined && current.available) return current;
    const { host, port } = this.endpoint;
    // The function's responses are read into reused buffers: a stream's DATA goes on to the
    // client as views of them, and a quiet connection holds none.
    const reads = new SocketReads();
    const socket = net.connect({ host, port, noDelay: true, onread: reads.options });
    const hooks: ConnectionHooks = {
      onStream() {},
      onGoaway: () => this.#forget(connection),
      onClose: () => {
        if (this.#connection === connection) this.#connection = undefined;
      },
      onInternalError: this.#tuning.onInternalError,
      onStreamCountChanged() {},
    };
    const connection = new ClientConnection(socket, this.#tuning.limits, this.#tuning.counters, hooks, reads);
    this.#connection = connection;
    if (this.#closed) connection.close();
    return connection;
  }

  #forget(connection: ClientConnection): void {
    if (this.#connection === connection) this.#connection = undefined;
    // After the function's GOAWAY, new streams go to a new connection; this one winds down.
    connection.close();
  }
}

/** Receive windows toward functions: 1 MiB per stream, 8 MiB per connection. */
export const DEFAULT_UPSTREAM_LIMITS: H2Limits = Object.freeze({ ...DEFAULT_LIMITS, streamWindow: 1 << 20, connectionWindow: 8 << 20 });
