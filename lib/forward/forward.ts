// One client stream <-> one upstream stream: headers, body (with backpressure both ways),
// trailers, cancel and deadline. The hot path: handlers are shared module-level functions
// that find their call through a symbol on the stream, so an RPC allocates one call object
// and no closures.
import http2, {
  type Http2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import { grpcError, respondTrailersOnly, Status, statusFields, type GrpcError, type StatusCode } from '../grpc/status.ts';
import { MAX_TIMER_MS } from '../grpc/timeout.ts';
import { contained, failConnection } from '../runtime/contain.ts';
import { forwarded } from '../runtime/young-garbage.ts';
import type { Session } from '../sessions/session.ts';
import type { ForwardedRpc, Telemetry } from '../telemetry/events.ts';
import { sessionHeaders, toClientHeaders, toClientTrailers, toFunctionHeaders } from './headers.ts';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;

const AWAITING_RESPONSE = 0;
const STREAMING = 1;
const FINISHED = 2;
type CallState = typeof AWAITING_RESPONSE | typeof STREAMING | typeof FINISHED;

// Options objects shared by every call: respond() only reads them.
const RESPOND_END: http2.ServerStreamResponseOptions = Object.freeze({ endStream: true });
const RESPOND_STREAMING: http2.ServerStreamResponseOptions = Object.freeze({ waitForTrailers: true });

const kCall = Symbol('fngate.call');
interface CarriesCall {
  [kCall]: ForwardedCall;
}

class ForwardedCall implements ForwardedRpc {
  readonly client: ServerHttp2Stream;
  readonly upstream: ClientHttp2Stream;
  /** The connection the upstream stream runs on, to tell its loss from a function's reset. */
  readonly upstreamSession: Http2Session | undefined;
  readonly session: Session;
  readonly path: string;
  readonly subject: string;
  readonly telemetry: Telemetry;
  readonly trace: unknown;
  readonly startedAt: number;
  state: CallState = AWAITING_RESPONSE;
  /** Trailers to send when the client stream asks for them. */
  trailers: OutgoingHttpHeaders | undefined;
  /** Set when the upstream connection (not the function) failed. */
  upstreamError: string | undefined;
  deadline: NodeJS.Timeout | undefined;
  status: number | undefined;
  firstByteAt: number | undefined;
  endedAt = 0;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    client: ServerHttp2Stream,
    upstream: ClientHttp2Stream,
    session: Session,
    path: string,
    subject: string,
    telemetry: Telemetry,
    trace: unknown,
    startedAt: number,
  ) {
    this.client = client;
    this.upstream = upstream;
    this.upstreamSession = upstream.session;
    this.session = session;
    this.path = path;
    this.subject = subject;
    this.telemetry = telemetry;
    this.trace = trace;
    this.startedAt = startedAt;
  }
}

function callOf(stream: ServerHttp2Stream | ClientHttp2Stream): ForwardedCall {
  return (stream as unknown as CarriesCall)[kCall];
}

/**
 * Forwards one RPC over the session's upstream connection. `timeoutMs` is the parsed
 * grpc-timeout (undefined: none); the header itself is passed on unchanged.
 */
export function forwardCall(
  client: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  rawHeaders: readonly string[],
  session: Session,
  subject: string,
  timeoutMs: number | undefined,
  telemetry: Telemetry,
): void {
  const startedAt = performance.now();
  const upstreamHeaders = toFunctionHeaders(rawHeaders, subject);
  const trace = telemetry.rpcStarting(headers, upstreamHeaders, session);
  const upstream = session.upstream.request(upstreamHeaders);
  const call = new ForwardedCall(client, upstream, session, headers[':path'] ?? '', subject, telemetry, trace, startedAt);
  (client as unknown as CarriesCall)[kCall] = call;
  (upstream as unknown as CarriesCall)[kCall] = call;

  client.on('data', handlers.clientData);
  client.on('end', handlers.clientEnd);
  client.on('wantTrailers', handlers.wantTrailers);
  client.on('close', handlers.clientClose);
  // The client stream's 'error' listener is the gateway's; errors end in 'close' either way.

  upstream.on('response', handlers.upstreamResponse);
  upstream.on('data', handlers.upstreamData);
  upstream.on('trailers', handlers.upstreamTrailers);
  upstream.on('end', handlers.upstreamEnd);
  upstream.on('error', handlers.upstreamError);
  upstream.on('close', handlers.upstreamClose);

  if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) {
    call.deadline = setTimeout(handlers.deadline, timeoutMs, call);
  }
}

/**
 * An exception out of a call's handler: the client's connection goes (GOAWAY INTERNAL_ERROR),
 * which cancels this call's upstream stream through the client stream's close; the process
 * and every other connection go on.
 */
function failCall(call: ForwardedCall, where: string, err: unknown): void {
  if (!call.upstream.closed && !call.upstream.destroyed) call.upstream.close(NGHTTP2_CANCEL);
  failConnection(call.client.session, where, err, (w, e) => call.telemetry.internalError(w, e));
}

const onStreamError = (where: string) => (stream: ServerHttp2Stream | ClientHttp2Stream, err: unknown): void => {
  failCall(callOf(stream), where, err);
};

// --- client -> function ---------------------------------------------------------------
// Backpressure at Node's writable high-water mark (64 KiB). A deeper queue is no faster and
// keeps chunks (slices of 64 KiB socket-read buffers) alive across scavenges, so they are
// promoted and cost full GCs. 'drain' is listened for only once paused: most calls never are.

function onClientData(this: ServerHttp2Stream, chunk: Buffer): void {
  const call = callOf(this);
  call.bytesIn += chunk.length;
  forwarded(chunk.length);
  const { upstream } = call;
  // The call already ended upstream (reset, connection lost): the rest of the body has nowhere to go.
  if (upstream.closed || upstream.destroyed) return;
  if (!upstream.write(chunk)) {
    this.pause();
    upstream.once('drain', handlers.upstreamDrain);
  }
}

function onUpstreamDrain(this: ClientHttp2Stream): void {
  callOf(this).client.resume();
}

function onClientEnd(this: ServerHttp2Stream): void {
  const { upstream } = callOf(this);
  if (!upstream.closed && !upstream.destroyed) upstream.end();
}

function onClientClose(this: ServerHttp2Stream): void {
  const call = callOf(this);
  clearDeadline(call);
  // The client cancelled (RST_STREAM) or its connection went away: cancel the function's
  // stream too, with CANCEL, never destroy() (which would send INTERNAL_ERROR).
  if (!call.upstream.closed && !call.upstream.destroyed) call.upstream.close(NGHTTP2_CANCEL);
  if (call.state !== FINISHED) {
    call.state = FINISHED;
    report(call);
  }
}

// --- function -> client ---------------------------------------------------------------

function onUpstreamResponse(this: ClientHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
  const call = callOf(this);
  if (call.state !== AWAITING_RESPONSE || !clientWritable(call)) return;
  call.firstByteAt = performance.now();
  const out = toClientHeaders(rawHeaders, call.session);
  if (flags & NGHTTP2_FLAG_END_STREAM) {
    // Trailers-only: the status is in this one block, which the client gets as it is.
    call.status = Number(headers['grpc-status'] ?? Status.UNKNOWN);
    finish(call);
    call.client.respond(out, RESPOND_END);
    return;
  }
  call.state = STREAMING;
  call.client.respond(out, RESPOND_STREAMING);
}

function onUpstreamData(this: ClientHttp2Stream, chunk: Buffer): void {
  const call = callOf(this);
  if (call.state !== STREAMING || !clientWritable(call)) return;
  call.bytesOut += chunk.length;
  forwarded(chunk.length);
  const { client } = call;
  if (!client.write(chunk)) {
    this.pause();
    client.once('drain', handlers.clientDrain);
  }
}

function onClientDrain(this: ServerHttp2Stream): void {
  callOf(this).upstream.resume();
}

function onUpstreamTrailers(this: ClientHttp2Stream, trailers: IncomingHttpHeaders): void {
  const call = callOf(this);
  if (call.state !== STREAMING) return;
  call.trailers = toClientTrailers(trailers);
  call.status = Number(trailers['grpc-status'] ?? Status.UNKNOWN);
}

function onUpstreamEnd(this: ClientHttp2Stream): void {
  const call = callOf(this);
  if (call.state !== STREAMING) return;
  if (!call.trailers) {
    endWithStatus(call, grpcError(Status.INTERNAL, 'function ended the response without grpc-status trailers'));
    return;
  }
  finish(call);
  if (clientWritable(call)) call.client.end();
}

function onWantTrailers(this: ServerHttp2Stream): void {
  const call = callOf(this);
  if (!this.closed && !this.destroyed) this.sendTrailers(call.trailers ?? statusFields(grpcError(Status.INTERNAL, 'no trailers')));
}

function onUpstreamError(this: ClientHttp2Stream, err: NodeJS.ErrnoException): void {
  // A stream reset by the function arrives as ERR_HTTP2_STREAM_ERROR and is mapped from its
  // RST code on 'close'; anything else means the connection to the endpoint failed.
  // A connection failure reaches the stream wrapped (ERR_HTTP2_STREAM_CANCEL); name the cause.
  if (err.code !== 'ERR_HTTP2_STREAM_ERROR') {
    const cause = err.cause as NodeJS.ErrnoException | undefined;
    callOf(this).upstreamError = cause?.code ?? cause?.message ?? err.code ?? err.message;
  }
}

function onUpstreamClose(this: ClientHttp2Stream): void {
  const call = callOf(this);
  if (call.state === FINISHED) return;
  // A stream closed because its connection went away (FIN, RST, GOAWAY) is not the function
  // resetting it, whatever rstCode Node filled in.
  if (call.upstreamError !== undefined || this.rstCode === undefined || call.upstreamSession?.destroyed) {
    const reason = call.upstreamError ?? 'connection closed';
    endWithStatus(call, grpcError(Status.UNAVAILABLE, `connection to function endpoint ${call.session.endpoint.key} failed: ${reason}`));
    return;
  }
  const code = this.rstCode;
  endWithStatus(call, grpcError(statusForRstCode(code), `function endpoint reset the stream (HTTP/2 error code ${code})`));
}

// --- ending ---------------------------------------------------------------------------

function onDeadline(call: ForwardedCall): void {
  call.deadline = undefined;
  endWithStatus(call, grpcError(Status.DEADLINE_EXCEEDED, 'deadline exceeded (grpc-timeout) while waiting for the function'));
  if (!call.upstream.closed && !call.upstream.destroyed) call.upstream.close(NGHTTP2_CANCEL);
}

/** Ends the client's call with a gateway-originated status, whatever stage it is at. */
function endWithStatus(call: ForwardedCall, error: GrpcError): void {
  const { state } = call;
  if (state === FINISHED) return;
  call.status = error.code;
  finish(call);
  if (!clientWritable(call)) return;
  if (state === AWAITING_RESPONSE) {
    respondTrailersOnly(call.client, error, sessionHeaders(call.session));
  } else {
    call.trailers = statusFields(error);
    call.client.end();
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

function clientWritable(call: ForwardedCall): boolean {
  const { client } = call;
  return !client.closed && !client.destroyed;
}

// Every handler, each wrapped once so that an exception out of it closes its client connection
// rather than the process (lib/runtime/contain.ts).
const handlers = {
  clientData: contained(onClientData, onStreamError('client DATA')),
  clientEnd: contained(onClientEnd, onStreamError('client end of stream')),
  clientClose: contained(onClientClose, onStreamError('client stream close')),
  clientDrain: contained(onClientDrain, onStreamError('client stream drain')),
  wantTrailers: contained(onWantTrailers, onStreamError('client trailers')),
  upstreamResponse: contained(onUpstreamResponse, onStreamError('upstream response HEADERS')),
  upstreamData: contained(onUpstreamData, onStreamError('upstream DATA')),
  upstreamTrailers: contained(onUpstreamTrailers, onStreamError('upstream trailers')),
  upstreamEnd: contained(onUpstreamEnd, onStreamError('upstream end of stream')),
  upstreamError: contained(onUpstreamError, onStreamError('upstream stream error')),
  upstreamClose: contained(onUpstreamClose, onStreamError('upstream stream close')),
  upstreamDrain: contained(onUpstreamDrain, onStreamError('upstream stream drain')),
  deadline(call: ForwardedCall): void {
    try {
      onDeadline(call);
    } catch (err) {
      failCall(call, 'grpc-timeout deadline', err);
    }
  },
};

/** gRPC's mapping of HTTP/2 RST_STREAM codes to status codes (PROTOCOL-HTTP2.md). */
export function statusForRstCode(code: number): StatusCode {
  switch (code) {
    case http2.constants.NGHTTP2_REFUSED_STREAM:
      return Status.UNAVAILABLE;
    case NGHTTP2_CANCEL:
      return Status.CANCELLED;
    case http2.constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return Status.RESOURCE_EXHAUSTED;
    case http2.constants.NGHTTP2_INADEQUATE_SECURITY:
      return Status.PERMISSION_DENIED;
    case NGHTTP2_NO_ERROR:
    default:
      return Status.INTERNAL;
  }
}
