// The last line of defence between one connection and the process. node:http2 calls the
// gateway's handlers from its own event loop turns; an exception out of one of them would
// otherwise reach the top of the stack and end the process, with every other client's calls.
// A handler wrapped here that throws closes its own client connection (GOAWAY INTERNAL_ERROR)
// and reports the error; the process goes on. docs/reliability.md says why that is safe.
import http2, { type Http2Session } from 'node:http2';

/** Told of every contained exception (the gateway logs it with its stack and counts it). */
export type InternalErrorSink = (where: string, err: unknown) => void;

/**
 * `handler` with a try/catch around it that hands the exception to `onError(this, err)`.
 * Made once per handler at module load, never per call: the hot path pays one extra call,
 * which V8 inlines, and no allocation. Handlers take at most three arguments.
 */
export function contained<T, A, B, C>(
  handler: (this: T, a: A, b: B, c: C) => void,
  onError: (self: T, err: unknown) => void,
): (this: T, a: A, b?: B, c?: C) => void {
  return function containedHandler(this: T, a: A, b?: B, c?: C): void {
    try {
      handler.call(this, a, b as B, c as C);
    } catch (err) {
      try {
        onError(this, err);
      } catch {
        // Reporting failed too; nothing more can be done for this connection from here.
      }
    }
  };
}

/**
 * Closes a client (or upstream) HTTP/2 connection after an internal error: GOAWAY(INTERNAL_ERROR)
 * and every stream on it ends. Reported first, so the log line comes before any close event.
 */
export function failConnection(session: Http2Session | undefined, where: string, err: unknown, report: InternalErrorSink): void {
  report(where, err);
  // With an error and a code, destroy() sends GOAWAY with that code (without an error it
  // would send NO_ERROR); the error goes to the connection's 'error' listener.
  if (session !== undefined && !session.destroyed) {
    session.destroy(new Error(`fngate: internal error in ${where}`), http2.constants.NGHTTP2_INTERNAL_ERROR);
  }
}
