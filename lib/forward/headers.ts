// Header rewriting between the client and the function. Everything passes unchanged but
// connection-specific fields, the client's credential (replaced by fngate-subject) and any
// fngate-subject the client made up.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);
const notToFunction = new Set([...hopByHop, 'authorization', 'fngate-subject']);

export const SUBJECT_HEADER = 'fngate-subject';
export const SESSION_HEADER = 'nvcf-reqid';
export const SESSION_COOKIE = 'nvcf-request-id';

export function toFunctionHeaders(incoming: IncomingHttpHeaders, subject: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (!notToFunction.has(name)) out[name] = incoming[name];
  }
  out[SUBJECT_HEADER] = subject;
  return out;
}

/**
 * The function's response headers (or trailers-only block) as the client gets them: the
 * session id added as metadata and as a cookie.
 */
export function toClientHeaders(incoming: IncomingHttpHeaders, sessionId: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (!hopByHop.has(name)) out[name] = incoming[name];
  }
  Object.assign(out, sessionHeaders(sessionId, incoming['set-cookie']));
  return out;
}

/** Trailers from the function: only connection-specific fields are dropped. */
export function toClientTrailers(incoming: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (!hopByHop.has(name)) out[name] = incoming[name];
  }
  return out;
}

/** The session id as initial metadata plus a Set-Cookie (kept beside the function's own cookies). */
export function sessionHeaders(sessionId: string, functionCookies?: string[]): OutgoingHttpHeaders {
  const cookie = `${SESSION_COOKIE}=${sessionId}; Path=/; HttpOnly`;
  return {
    [SESSION_HEADER]: sessionId,
    'set-cookie': functionCookies ? [...functionCookies, cookie] : [cookie],
  };
}
