// One client stream <-> one upstream stream, on lib/h2: headers, body, trailers, cancel and
// deadline. The hot path: the two stream handlers are shared module-level objects that find
// their call through stream.context, so an RPC allocates one call object and no closures.
//
// Flow control runs end to end: a DATA frame from one side is written to the other as the
// view it arrived in; the sending side's window is reopened (consume) only once the receiving
// side's stream has taken the bytes into its window, so the gateway holds at most a stream
// window per direction per call, whatever the message size.
import { CONNECTION_LOST } from '../h2/connection.ts';
import { ErrorCode } from '../h2/constants.ts';
import { DISCARD, type H2Stream, type StreamHandler } from '../h2/stream.ts';
import { grpcError, respondTrailersOnly, Status, statusFields, type GrpcError, type StatusCode } from '../grpc/status.ts';
import { MAX_TIMER_MS } from '../grpc/timeout.ts';
import type { Session } from '../sessions/session.ts';
import type { ForwardedRpc, RequestHeaders, Telemetry } from '../telemetry/events.ts';
import { fieldValue, sessionHeaders, toClientHeaders, toClientTrailers, toFunctionHeaders } from './headers.ts';

const AWAITING_RESPONSE = 0;
const STREAMING = 1;
const FINISHED = 2;
type CallState = typeof AWAITING_RESPONSE | typeof STREAMING | typeof FINISHED;

class ForwardedCall implements ForwardedRpc {
  readonly client: H2Stream;
  upstream: H2Stream | undefined;
  readonly session: Session;
  readonly path: string;
  readonly subject: string;
  readonly telemetry: Telemetry;
  readonly trace: unknown;
  readonly startedAt: number;
  state: CallState = AWAITING_RESPONSE;
  /** Set when the upstream connection (not the function) failed. */
  upstreamError: string | undefined;
  deadline: NodeJS.Timeout | undefined;
  /** When the gateway's own grpc-timeout deadline falls (performance.now() ms). */
  deadlineAt = Infinity;
  status: number | undefined;
  firstByteAt: number | undefined;
  endedAt = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Octets written to one side and not yet consumed from the other (waiting for window). */
  pendingIn = 0;
  pendingOut = 0;
  /** How long the call waited for its session to be bound; -1: it did not wait. */
  waitedMs = -1;

  constructor(client: H2Stream, session: Session, path: string, subject: string, telemetry: Telemetry, trace: unknown, startedAt: number) {
    this.client = client;
    this.session = session;
    this.path = path;
    this.subject = subject;
    this.telemetry = telemetry;
    this.trace = trace;
    this.startedAt = startedAt;
  }
}

const callOf = (stream: H2Stream): ForwardedCall => stream.context as ForwardedCall;

/**
 * Forwards one RPC over the session's upstream connection. `timeoutMs` is the parsed
 * grpc-timeout (undefined: none); the header itself is passed on unchanged. `endStream`: the
 * request HEADERS ended the client's side already. `waitedMs`: how long the call waited for its
 * session (-1: not at all), told to the client in the response headers.
 */
export function forwardCall(
  client: H2Stream,
  headers: RequestHeaders,
  fields: readonly string[],
  endStream: boolean,
  session: Session,
  subject: string,
  timeoutMs: number | undefined,
  telemetry: Telemetry,
  waitedMs: number,
): void {
  const startedAt = performance.now();
  const upstreamHeaders = toFunctionHeaders(fields, subject);
  const trace = telemetry.rpcStarting(headers, upstreamHeaders, session);
  const call = new ForwardedCall(client, session, fieldValue(fields, ':path') ?? '', subject, telemetry, trace, startedAt);
  call.waitedMs = waitedMs;
  client.context = call;
  client.handler = FROM_CLIENT;
  const upstream = session.upstream.request(upstreamHeaders, FROM_FUNCTION, call);
  call.upstream = upstream;
  if (endStream) upstream.end();
  if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) {
    call.deadlineAt = startedAt + timeoutMs;
    call.deadline = setTimeout(onDeadline, timeoutMs, call);
  }
}

/**
 * The function passes on the same grpc-timeout and may report DEADLINE_EXCEEDED a moment before
 * the gateway's own timer fires (two timers, two processes). Within that moment it is the same
 * deadline, and the client is told what the gateway would have said.
 */
const DEADLINE_SLACK_MS = 5;

function ownDeadlineDue(call: ForwardedCall, fields: readonly string[]): boolean {
  if (call.deadline === undefined || call.deadlineAt - performance.now() > DEADLINE_SLACK_MS) return false;
  return fieldValue(fields, 'grpc-status') === String(Status.DEADLINE_EXCEEDED);
}

// --- client -> function ---------------------------------------------------------------

const FROM_CLIENT: StreamHandler = {
  onData(client, data, endStream) {
    const call = callOf(client);
    const upstream = call.upstream as H2Stream;
    call.bytesIn += data.length;
    // The call already ended upstream (reset, connection lost): the rest of the body has nowhere to go.
    if (upstream.closed || !upstream.localOpen) return client.consume(data.length);
    if (upstream.writeData(data, endStream)) client.consume(data.length);
    else call.pendingIn += data.length;
  },
  onHeaders(client) {
    // Request trailers: gRPC sends none; the client's side is over, and so is the function's.
    const upstream = callOf(client).upstream as H2Stream;
    if (!upstream.closed && upstream.localOpen) upstream.end();
  },
  onWritable(client) {
    // The client's stream took what the function sent: let the function send more.
    const call = callOf(client);
    const n = call.pendingOut;
    call.pendingOut = 0;
    call.upstream?.consume(n);
  },
  onClose(client, code) {
    const call = callOf(client);
    clearDeadline(call);
    // The client cancelled (RST_STREAM) or its connection went away: cancel the function's
    // stream too, with CANCEL.
    const upstream = call.upstream as H2Stream;
    if (code !== null && !upstream.closed) upstream.reset(ErrorCode.CANCEL);
    if (call.state !== FINISHED) {
      call.state = FINISHED;
      report(call);
    }
  },
};

// --- function -> client ---------------------------------------------------------------

const FROM_FUNCTION: StreamHandler = {
  onHeaders(upstream, fields, endStream) {
    const call = callOf(upstream);
    if (call.state === AWAITING_RESPONSE) {
      if (call.client.closed) return;
      call.firstByteAt = performance.now();
      const out = toClientHeaders(fields, call.session, call.waitedMs);
      if (endStream) {
        if (ownDeadlineDue(call, fields)) return onDeadline(call);
        // Trailers-only: the status is in this one block, which the client gets as it is.
        call.status = Number(fieldValue(fields, 'grpc-status') ?? Status.UNKNOWN);
        finish(call);
        call.client.writeHeaders(out, true);
        return;
      }
      call.state = STREAMING;
      call.client.writeHeaders(out, false);
      return;
    }
    if (call.state !== STREAMING) return;
    if (ownDeadlineDue(call, fields)) return onDeadline(call);
    call.status = Number(fieldValue(fields, 'grpc-status') ?? Status.UNKNOWN);
    finish(call);
    call.client.writeTrailers(toClientTrailers(fields));
  },
  onData(upstream, data, endStream) {
    const call = callOf(upstream);
    if (call.state !== STREAMING || call.client.closed) return upstream.consume(data.length);
    call.bytesOut += data.length;
    if (call.client.writeData(data)) upstream.consume(data.length);
    else call.pendingOut += data.length;
    if (endStream) {
      // DATA with END_STREAM and no trailers: a gRPC response must end with grpc-status.
      endWithStatus(call, grpcError(Status.INTERNAL, 'function ended the response without grpc-status trailers'));
    }
  },
  onWritable(upstream) {
    // The function's stream took what the client sent: let the client send more.
    const call = callOf(upstream);
    const n = call.pendingIn;
    call.pendingIn = 0;
    call.client.consume(n);
  },
  onClose(upstream, code) {
    const call = callOf(upstream);
    if (call.state === FINISHED || code === null) return;
    if (code === CONNECTION_LOST || code === ErrorCode.REFUSED_STREAM) {
      call.upstreamError = upstream.connection.failure ?? (code === ErrorCode.REFUSED_STREAM ? 'stream refused' : 'connection closed');
      endWithStatus(call, grpcError(Status.UNAVAILABLE, `connection to function endpoint ${call.session.endpoint.key} failed: ${call.upstreamError}`));
      return;
    }
    endWithStatus(call, grpcError(statusForRstCode(code), `function endpoint reset the stream (HTTP/2 error code ${code})`));
  },
};

// --- ending ---------------------------------------------------------------------------

function onDeadline(call: ForwardedCall): void {
  call.client.connection.guarded('grpc-timeout deadline', () => {
    clearTimeout(call.deadline);
    call.deadline = undefined;
    endWithStatus(call, grpcError(Status.DEADLINE_EXCEEDED, 'deadline exceeded (grpc-timeout) while waiting for the function'));
    const upstream = call.upstream;
    if (upstream !== undefined && !upstream.closed) upstream.reset(ErrorCode.CANCEL);
  });
}

/** Ends the client's call with a gateway-originated status, whatever stage it is at. */
function endWithStatus(call: ForwardedCall, error: GrpcError): void {
  const { state, client } = call;
  if (state === FINISHED) return;
  call.status = error.code;
  finish(call);
  if (client.closed) return;
  if (state === AWAITING_RESPONSE) {
    respondTrailersOnly(client, error, sessionHeaders(call.session, call.waitedMs));
  } else {
    client.writeTrailers(statusFields(error));
    // What the client still sends is not wanted any more.
    if (client.remoteOpen) client.handler = DISCARD;
  }
}

function finish(call: ForwardedCall): void {
  call.state = FINISHED;
  clearDeadline(call);
  report(call);
}

function report(call: ForwardedCall): void {
  call.endedAt = performance.now();
  call.telemetry.rpcForwarded(call);
}

function clearDeadline(call: ForwardedCall): void {
  if (call.deadline) {
    clearTimeout(call.deadline);
    call.deadline = undefined;
  }
}

/** gRPC's mapping of HTTP/2 RST_STREAM codes to status codes (PROTOCOL-HTTP2.md). */
export function statusForRstCode(code: number): StatusCode {
  switch (code) {
    case ErrorCode.REFUSED_STREAM:
      return Status.UNAVAILABLE;
    case ErrorCode.CANCEL:
      return Status.CANCELLED;
    case ErrorCode.ENHANCE_YOUR_CALM:
      return Status.RESOURCE_EXHAUSTED;
    case ErrorCode.INADEQUATE_SECURITY:
      return Status.PERMISSION_DENIED;
    default:
      return Status.INTERNAL;
  }
}
