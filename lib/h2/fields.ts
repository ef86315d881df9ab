// The field rules of RFC 9113 8.2 and 8.3 that make a request, a response or trailers
// malformed (a stream error, PROTOCOL_ERROR), checked on the decoded flat [name, value, ...]
// list in one pass.

/** Fields that belong to HTTP/1.1 connections and make an HTTP/2 message malformed (8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
const REQUEST_PSEUDO = new Set([':method', ':scheme', ':authority', ':path']);

/** What a valid request's fields told us on the way. */
export interface RequestInfo {
  /** content-length, or -1 without one. */
  contentLength: number;
}

/** Why a field list is malformed, or undefined if it is not. */
export type Malformed = string | undefined;

/** A field name with upper case, controls, space, DEL or non-ASCII is malformed (8.2.1). */
function badName(name: string): boolean {
  if (name.length === 0) return true;
  for (let i = name.charCodeAt(0) === 0x3a ? 1 : 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || (c >= 0x41 && c <= 0x5a) || c >= 0x7f || c === 0x3a) return true;
  }
  return false;
}

/** A value with NUL, CR or LF, or with white space at either end, is malformed (8.2.1). */
function badValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return false;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(n - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return true;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return true;
  }
  return false;
}

/** Checks a regular (non-pseudo) field; returns why it is malformed. */
function checkRegular(name: string, value: string): Malformed {
  if (badName(name)) return `invalid field name "${name}"`;
  if (badValue(value)) return `invalid value of field ${name}`;
  if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
  if (name === 'te' && value !== 'trailers') return 'te other than "trailers"';
  return undefined;
}

/** Validates a request's fields (8.3.1); fills `info` from them. */
export function checkRequest(fields: readonly string[], info: RequestInfo): Malformed {
  let method: string | undefined;
  let scheme = false;
  let path = false;
  let authority = false;
  let regular = false;
  info.contentLength = -1;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-header ${name} after a regular field`;
      if (!REQUEST_PSEUDO.has(name)) return `unknown pseudo-header ${name}`;
      if (badValue(value)) return `invalid value of ${name}`;
      if (name === ':method') {
        if (method !== undefined) return 'repeated :method';
        method = value;
      } else if (name === ':scheme') {
        if (scheme) return 'repeated :scheme';
        scheme = true;
      } else if (name === ':path') {
        if (path) return 'repeated :path';
        if (value === '') return 'empty :path';
        path = true;
      } else {
        if (authority) return 'repeated :authority';
        authority = true;
      }
      continue;
    }
    regular = true;
    const why = checkRegular(name, value);
    if (why !== undefined) return why;
    if (name === 'content-length') {
      const n = parseContentLength(value);
      if (n < 0 || (info.contentLength >= 0 && info.contentLength !== n)) return 'invalid content-length';
      info.contentLength = n;
    }
  }
  if (method === undefined) return 'missing :method';
  if (method === 'CONNECT') return scheme || path ? 'CONNECT with :scheme or :path' : authority ? undefined : 'CONNECT without :authority';
  if (!scheme) return 'missing :scheme';
  if (!path) return 'missing :path';
  return undefined;
}

/** Validates a response's fields (8.3.2): one :status of three digits, then regular fields. */
export function checkResponse(fields: readonly string[]): Malformed {
  let status = false;
  let regular = false;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    if (name === ':status') {
      if (regular) return ':status after a regular field';
      if (status) return 'repeated :status';
      if (!/^[1-9][0-9][0-9]$/.test(value)) return `invalid :status "${value}"`;
      status = true;
      continue;
    }
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header ${name} in a response`;
    regular = true;
    const why = checkRegular(name, value);
    if (why !== undefined) return why;
  }
  return status ? undefined : 'missing :status';
}

/** Validates trailers (8.1): regular fields only. */
export function checkTrailers(fields: readonly string[]): Malformed {
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header ${name} in trailers`;
    const why = checkRegular(name, fields[i + 1] as string);
    if (why !== undefined) return why;
  }
  return undefined;
}

/** A decimal content-length, or -1. */
function parseContentLength(value: string): number {
  if (value.length === 0 || value.length > 15) return -1;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}
