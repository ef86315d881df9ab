// Header rewriting between the client and the function. Everything passes unchanged but
// connection-specific fields, the client's credential (replaced by fngate-subject) and any
// fngate-subject the client made up.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { SESSION_HEADER, type Session } from '../sessions/session.ts';

export const SUBJECT_HEADER = 'fngate-subject';

const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);
const notToFunction = new Set([...hopByHop, 'authorization', SUBJECT_HEADER]);

/** A copy of `incoming` without the fields named in `drop` (pseudo-headers included as they are). */
function copyWithout(incoming: IncomingHttpHeaders, drop: ReadonlySet<string>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (!drop.has(name)) out[name] = incoming[name];
  }
  return out;
}

export function toFunctionHeaders(incoming: IncomingHttpHeaders, subject: string): OutgoingHttpHeaders {
  const out = copyWithout(incoming, notToFunction);
  out[SUBJECT_HEADER] = subject;
  return out;
}

/**
 * The function's response headers (or trailers-only block) as the client gets them: the
 * session id added as metadata and as a cookie.
 */
export function toClientHeaders(incoming: IncomingHttpHeaders, session: Session): OutgoingHttpHeaders {
  const out = copyWithout(incoming, hopByHop);
  out[SESSION_HEADER] = session.token;
  const cookies = incoming['set-cookie'];
  out['set-cookie'] = cookies ? [...cookies, ...session.setCookie] : (session.setCookie as string[]);
  return out;
}

/** Trailers from the function: only connection-specific fields are dropped. */
export function toClientTrailers(incoming: IncomingHttpHeaders): OutgoingHttpHeaders {
  return copyWithout(incoming, hopByHop);
}

/** The session id as metadata plus its cookie, for responses the gateway makes itself. */
export function sessionHeaders(session: Session): OutgoingHttpHeaders {
  return { [SESSION_HEADER]: session.token, 'set-cookie': session.setCookie as string[] };
}
