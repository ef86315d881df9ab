// Spans for forwarded calls, made by hand (nothing instruments the gateway's own HTTP/2): a SERVER span
// per RPC, child of the client's W3C traceparent, and a CLIENT span per upstream stream, whose
// context replaces the client's traceparent toward the function. Only built when OTEL_* asks
// for traces (telemetry.ts); otherwise nothing here runs.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type TextMapGetter, type TextMapSetter, type Tracer } from '@opentelemetry/api';
import { millisToHrTime, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import { Status } from '../grpc/status.ts';
import type { ForwardedRpc, RequestHeaders, SessionInfo } from './events.ts';
import { createSampler, createSpanExporter, type TraceSettings } from './otel-config.ts';
import { ATTR, methodOf, STATUS_NAMES, statusIndex } from './rpc-stats.ts';

/** What rpcStarting returns for a traced call; comes back as ForwardedRpc.trace. */
export class RpcTrace {
  readonly server: Span;
  readonly client: Span;
  /** Wall-clock ms at performance.now() 0, taken once per call so both spans share one clock. */
  readonly epochOffset: number;
  constructor(server: Span, client: Span, epochOffset: number) {
    this.server = server;
    this.client = client;
    this.epochOffset = epochOffset;
  }
  get traceId(): string {
    return this.server.spanContext().traceId;
  }
  get spanId(): string {
    return this.server.spanContext().spanId;
  }
}

const getter: TextMapGetter<RequestHeaders> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};
// The function's headers are a flat [name, value, ...] list: a traceparent or
// tracestate the client sent is replaced, not sent twice.
const setter: TextMapSetter<string[]> = {
  set: (carrier, key, value) => {
    for (let i = 0; i < carrier.length; i += 2) {
      if (carrier[i] === key) {
        carrier[i + 1] = value;
        return;
      }
    }
    carrier.push(key, value);
  },
};

/** gRPC codes a SERVER span reports as an error (semantic conventions for gRPC); a CLIENT span: any but OK. */
const SERVER_ERRORS: ReadonlySet<number> = new Set([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.UNIMPLEMENTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

interface TracerProviderLike {
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

export class RpcTracer {
  readonly #tracer: Tracer;
  readonly #provider: TracerProviderLike;
  readonly #rootNeverSampled: boolean;
  readonly #propagator = new W3CTraceContextPropagator();

  constructor(tracer: Tracer, provider: TracerProviderLike, rootNeverSampled: boolean) {
    this.#tracer = tracer;
    this.#provider = provider;
    this.#rootNeverSampled = rootNeverSampled;
  }

  /**
   * Starts the SERVER and CLIENT spans and points the function's traceparent at the CLIENT
   * span. An unsampled call returns undefined: a client's traceparent then goes on unchanged,
   * and a call without one carries the unsampled decision on.
   */
  start(clientHeaders: RequestHeaders, upstreamHeaders: string[], session: SessionInfo): RpcTrace | undefined {
    // Sampling only what a caller sampled: a call without a traceparent costs nothing.
    if (this.#rootNeverSampled && clientHeaders.traceparent === undefined) return undefined;
    const parent = this.#propagator.extract(ROOT_CONTEXT, clientHeaders, getter);
    const path = clientHeaders[':path'];
    const method = methodOf(typeof path === 'string' ? path : '');
    const attributes = {
      [ATTR.rpcSystemName]: 'grpc',
      [ATTR.rpcMethod]: method,
      [ATTR.functionId]: session.functionId,
      [ATTR.versionId]: session.versionId,
      [ATTR.sessionId]: session.id,
      [ATTR.endpoint]: session.endpoint.key,
    };
    // Span times from one reading of both clocks: the SDK would anchor each span to Date.now()
    // on its own (1 ms steps), and the CLIENT span could then seem to end after its parent.
    const now = performance.now();
    const epochOffset = Date.now() - now;
    const startTime = millisToHrTime(epochOffset + now);
    const server = this.#tracer.startSpan(method, { kind: SpanKind.SERVER, attributes, startTime }, parent);
    if (!server.isRecording()) {
      if (trace.getSpanContext(parent) === undefined) this.#propagator.inject(trace.setSpan(ROOT_CONTEXT, server), upstreamHeaders, setter);
      return undefined;
    }
    const { host, port } = splitHostPort(session.endpoint.key);
    const client = this.#tracer.startSpan(
      method,
      { kind: SpanKind.CLIENT, attributes: { ...attributes, [ATTR.serverAddress]: host, [ATTR.serverPort]: port }, startTime },
      trace.setSpan(parent, server),
    );
    this.#propagator.inject(trace.setSpan(ROOT_CONTEXT, client), upstreamHeaders, setter);
    return new RpcTrace(server, client, epochOffset);
  }

  end(t: RpcTrace, rpc: ForwardedRpc): void {
    const index = statusIndex(rpc.status);
    const name = STATUS_NAMES[index] ?? 'UNKNOWN';
    const { server, client } = t;
    server.setAttribute(ATTR.rpcStatusCode, name);
    client.setAttribute(ATTR.rpcStatusCode, name);
    if (SERVER_ERRORS.has(index)) {
      server.setAttribute(ATTR.errorType, name);
      server.setStatus({ code: SpanStatusCode.ERROR });
    }
    if (index !== Status.OK) {
      client.setAttribute(ATTR.errorType, rpc.upstreamError ?? name);
      client.setStatus({ code: SpanStatusCode.ERROR, message: rpc.upstreamError ?? '' });
    }
    const endTime = millisToHrTime(t.epochOffset + rpc.endedAt);
    client.end(endTime);
    server.end(endTime);
  }

  async shutdown(): Promise<void> {
    await this.#provider.forceFlush().catch(() => {});
    await this.#provider.shutdown();
  }
}

export async function createRpcTracer(settings: TraceSettings, resource: Resource): Promise<RpcTracer> {
  const { BatchSpanProcessor, TracerProvider } = await import('@opentelemetry/sdk-trace');
  const exporters = await Promise.all(settings.exporters.map((kind) => createSpanExporter(kind, settings.protocol)));
  const provider = new TracerProvider({
    resource,
    sampler: await createSampler(settings),
    spanProcessors: exporters.map(
      (exporter) =>
        new BatchSpanProcessor({
          exporter,
          scheduledDelayMillis: settings.scheduleDelayMs,
          exportTimeoutMillis: settings.exportTimeoutMs,
          maxQueueSize: settings.maxQueueSize,
          maxExportBatchSize: settings.maxExportBatchSize,
        }),
    ),
  });
  return new RpcTracer(provider.getTracer('fngate'), provider, settings.rootNeverSampled);
}

/** "host:port" or "[v6]:port" -> parts (server.address, server.port). */
function splitHostPort(key: string): { host: string; port: number } {
  const colon = key.lastIndexOf(':');
  const host = colon < 0 ? key : key.slice(0, colon);
  return { host: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port: colon < 0 ? 0 : Number(key.slice(colon + 1)) };
}
