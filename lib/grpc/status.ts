// The gRPC status vocabulary, and every response the gateway originates itself: trailers-only
// errors and the few plain HTTP answers (415) for requests that are not gRPC at all.
import { ErrorCode } from '../h2/constants.ts';
import { DISCARD, type H2Stream } from '../h2/stream.ts';

export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type StatusCode = (typeof Status)[keyof typeof Status];

/** A gateway-originated failure, carried from the step that found it to the responder. */
export interface GrpcError {
  readonly code: StatusCode;
  readonly message: string;
  /** Machine-readable cause, for metrics (auth failures by reason). */
  readonly reason?: string;
}

/** Tells a gateway error from the success value of a step (none of which has a `code`). */
export function isGrpcError<T extends object>(value: T | GrpcError): value is GrpcError {
  return 'code' in value;
}

export function grpcError(code: StatusCode, message: string, reason?: string): GrpcError {
  return reason === undefined ? { code, message } : { code, message, reason };
}

/**
 * Percent-encodes a grpc-message as the gRPC HTTP/2 spec asks: UTF-8 bytes outside
 * printable ASCII, and '%' itself, become %XX.
 */
export function encodeGrpcMessage(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? '%' + byte.toString(16).toUpperCase().padStart(2, '0') : String.fromCharCode(byte);
  }
  return out;
}

/** Trailer fields (grpc-status, grpc-message) of a status, as a flat [name, value, ...] list. */
export function statusFields(error: GrpcError): string[] {
  return error.message ? ['grpc-status', String(error.code), 'grpc-message', encodeGrpcMessage(error.message)] : ['grpc-status', String(error.code)];
}

/** A trailers-only gRPC response: HTTP 200, application/grpc, status in the one HEADERS frame. */
export function respondTrailersOnly(stream: H2Stream, error: GrpcError, extra: readonly string[] = NONE): void {
  if (stream.headersSent || stream.closed) return;
  stream.writeHeaders([':status', '200', 'content-type', 'application/grpc', ...extra, ...statusFields(error)], true);
  // The client's request body, if any, is not wanted: RST_STREAM(NO_ERROR) after the answer
  // tells it to stop sending (RFC 9113 8.1), and frees the stream at once.
  stream.handler = DISCARD;
  if (stream.remoteOpen) stream.reset(ErrorCode.NO_ERROR);
}

/** A plain HTTP answer for a request that is not gRPC. */
export function respondHttp(stream: H2Stream, status: number, text: string, extra: readonly string[] = NONE): void {
  if (stream.headersSent || stream.closed) return;
  stream.handler = DISCARD; // the request body is read and dropped
  stream.writeHeaders([':status', String(status), ...extra, 'content-type', 'text/plain; charset=utf-8'], false);
  stream.writeData(Buffer.from(text + '\n'), true);
}

const NONE: readonly string[] = [];
