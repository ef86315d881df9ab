// Request metadata -> what is being invoked: function id, optional version, optional session id.
import type { RequestHeaders } from '../telemetry/events.ts';
import { grpcError, Status, type GrpcError } from '../grpc/status.ts';
import { ID_PATTERN, ID_RULE } from '../config/names.ts';

/** The metadata naming the session to resume (every response carries it), and the cookie that may carry it instead. */
export const SESSION_HEADER = 'nvcf-reqid';
export const SESSION_COOKIE = 'nvcf-request-id';

export interface Invocation {
  readonly functionId: string;
  /** undefined = the Function's activeVersion. */
  readonly versionId: string | undefined;
  /** Session to resume: `nvcf-reqid` metadata, else cookie `nvcf-request-id`. */
  readonly sessionId: string | undefined;
}

/**
 * The longest session id the gateway issues or looks up. Ids are sealed tokens that carry the
 * function id, version id and endpoint (with 128-character ids and a 253-character host name,
 * under 800 characters); anything longer is not one of ours and is not worth opening.
 */
export const MAX_SESSION_ID = 2048;

const noFunctionId = grpcError(Status.INVALID_ARGUMENT, 'missing function-id metadata');

export function readInvocation(headers: RequestHeaders): Invocation | GrpcError {
  const functionId = single(headers['function-id']);
  if (functionId === undefined || functionId === '') return noFunctionId;
  if (!ID_PATTERN.test(functionId)) return grpcError(Status.INVALID_ARGUMENT, `function-id ${ID_RULE}`);
  const versionHeader = headers['function-version-id'];
  const versionId = single(versionHeader);
  if (versionHeader !== undefined && (versionId === undefined || !ID_PATTERN.test(versionId))) {
    return grpcError(Status.INVALID_ARGUMENT, `function-version-id ${ID_RULE}`);
  }
  const sessionId = single(headers[SESSION_HEADER]) ?? cookieValue(headers.cookie, SESSION_COOKIE);
  if (sessionId !== undefined && (sessionId === '' || sessionId.length > MAX_SESSION_ID)) {
    return grpcError(Status.NOT_FOUND, 'no existing session found');
  }
  return { functionId, versionId, sessionId };
}

/** A repeated header is ambiguous: treated as malformed (undefined). */
function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function cookieValue(cookie: string | string[] | undefined, name: string): string | undefined {
  if (cookie === undefined) return undefined;
  const text = typeof cookie === 'string' ? cookie : cookie.join('; ');
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
