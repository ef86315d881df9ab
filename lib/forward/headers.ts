// Header rewriting between the client and the function. Everything passes unchanged but
// connection-specific fields, the client's credential (replaced by fngate-subject) and any
// fngate-subject the client made up.
//
// Headers and trailers travel as lib/h2's flat lists ([name, value, ...], as decoded and as
// encoded): faithful to gRPC metadata, whose repeated keys stay separate fields. Of a field
// HTTP allows only once, a repeat is dropped and the first kept.
import { SESSION_HEADER } from '../route/invocation.ts';
import type { Session } from '../sessions/session.ts';

export const SUBJECT_HEADER = 'fngate-subject';
/** Response metadata of a call that waited for its session to be bound: milliseconds waited. */
export const WAIT_HEADER = 'fngate-wait-ms';

/** [name, value, name, value, ...], names in lower case as HTTP/2 carries them. */
export type HeaderList = string[];

const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);
const notToFunction = new Set([...hopByHop, 'authorization', SUBJECT_HEADER]);
// The function's own session header, if it sent one, is replaced by the gateway's.
const notToClient = new Set([...hopByHop, SESSION_HEADER, WAIT_HEADER]);

/** The fields HTTP allows at most once in a message: of repeats, the first is kept. */
export const SINGLE_VALUE_FIELDS: ReadonlySet<string> = new Set([
  ':status', ':method', ':authority', ':scheme', ':path', ':protocol',
  'access-control-allow-credentials', 'access-control-max-age', 'access-control-request-method',
  'age', 'authorization', 'content-encoding', 'content-language', 'content-length',
  'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'dnt', 'etag',
  'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization',
  'range', 'referer', 'retry-after', 'tk', 'upgrade-insecure-requests', 'user-agent',
  'x-content-type-options',
]);

/** Whether a field before position `end` of `list` (all of it by default) is named `name`. */
function hasName(list: readonly string[], name: string, end = list.length): boolean {
  for (let i = 0; i < end; i += 2) if (list[i] === name) return true;
  return false;
}

/** Whether `raw` holds a field named in `drop` or a repeat of a single-value field. */
function needsFiltering(raw: readonly string[], drop: ReadonlySet<string>): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (drop.has(name) || (SINGLE_VALUE_FIELDS.has(name) && hasName(raw, name, i))) return true;
  }
  return false;
}

/** A copy of `raw` without the fields named in `drop` nor repeats of single-value fields. */
function listWithout(raw: readonly string[], drop: ReadonlySet<string>): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (drop.has(name) || (SINGLE_VALUE_FIELDS.has(name) && hasName(out, name))) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

/** The client's request headers (raw) as the function gets them. */
export function toFunctionHeaders(raw: readonly string[], subject: string): HeaderList {
  const out = listWithout(raw, notToFunction);
  out.push(SUBJECT_HEADER, subject);
  return out;
}

/**
 * The function's response headers (or trailers-only block, raw) as the client gets them: the
 * session id added as metadata and as a cookie, and how long the call waited (`waitedMs` >= 0).
 */
export function toClientHeaders(raw: readonly string[], session: Session, waitedMs: number): HeaderList {
  const out = listWithout(raw, notToClient);
  addSessionFields(out, session, waitedMs);
  return out;
}

/**
 * Trailers from the function (raw): only connection-specific fields are dropped. They seldom
 * hold one, and then the list goes on as it was decoded, not copied (nothing writes to it).
 */
export function toClientTrailers(raw: readonly string[]): readonly string[] {
  return needsFiltering(raw, hopByHop) ? listWithout(raw, hopByHop) : raw;
}

/** The session id as metadata plus its cookie, for responses the gateway makes itself. */
export function sessionHeaders(session: Session, waitedMs: number): HeaderList {
  const out: HeaderList = [];
  addSessionFields(out, session, waitedMs);
  return out;
}

function addSessionFields(out: HeaderList, session: Session, waitedMs: number): void {
  out.push(SESSION_HEADER, session.token);
  for (const cookie of session.setCookie) out.push('set-cookie', cookie);
  if (waitedMs >= 0) out.push(WAIT_HEADER, String(waitedMs));
}

/** Value of the first `name` field of a flat list, or undefined. */
export function fieldValue(list: readonly string[], name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}
