// The Telemetry sink the data plane reports to: metrics always, traces when OTEL_* configures
// an exporter (and a sampler that is not always_off), the access log when --access-log is on.
// Per RPC this does a few Map lookups and additions; spans and log lines only when enabled.
import { diag, DiagLogLevel } from '@opentelemetry/api';
import { Status } from '../grpc/status.ts';
import { openAccessLog, type AccessLog } from './access-log.ts';
import type { CloseReason, ForwardedRpc, RejectedRpc, RequestHeaders, SessionInfo, Telemetry } from './events.ts';
import type { Logger } from './log.ts';
import { GatewayMetrics, type H2CounterSets, type SessionGauges } from './metrics.ts';
import { createMetricExporter, gatewayResource, readOtelSettings } from './otel-config.ts';
import { createRpcTracer, RpcTrace, type RpcTracer } from './tracing.ts';

const SHUTDOWN_LIMIT_MS = 5000;

export interface TelemetryOptions {
  readonly log: Logger;
  /** Where OTEL_* settings are read (process.env). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** --access-log: off | stdout | stderr | an absolute file path. */
  readonly accessLog: string;
  /** --access-log-sample: share of successful RPCs logged (errors always are). */
  readonly accessLogSample: number;
  /** Session gauges (SessionManager), read at collection. */
  readonly sessions: SessionGauges;
  /** What lib/h2's protections cut, toward clients and toward functions, read at collection. */
  readonly h2?: H2CounterSets;
}

export class GatewayTelemetry implements Telemetry {
  readonly metrics: GatewayMetrics;
  readonly #tracer: RpcTracer | undefined;
  readonly #accessLog: AccessLog | undefined;
  readonly #log: Logger;

  constructor(metrics: GatewayMetrics, tracer: RpcTracer | undefined, accessLog: AccessLog | undefined, log: Logger) {
    this.metrics = metrics;
    this.#log = log;
    this.#tracer = tracer;
    this.#accessLog = accessLog;
  }

  connectionOpened(): void {
    this.metrics.clientConnections++;
    this.metrics.accepted++;
  }

  connectionClosed(): void {
    this.metrics.clientConnections--;
  }

  connectionClosedBy(reason: CloseReason): void {
    this.metrics.closedByGateway.add(reason);
  }

  rpcStarting(clientHeaders: RequestHeaders, upstreamHeaders: string[], session: SessionInfo): RpcTrace | undefined {
    this.metrics.stats.function(session.functionId, session.versionId).activeStreams++;
    const tracer = this.#tracer;
    return tracer === undefined ? undefined : tracer.start(clientHeaders, upstreamHeaders, session);
  }

  rpcForwarded(rpc: ForwardedRpc): void {
    const { session } = rpc;
    const { stats } = this.metrics;
    const fn = stats.function(session.functionId, session.versionId);
    fn.activeStreams--;
    fn.bytesIn += rpc.bytesIn;
    fn.bytesOut += rpc.bytesOut;
    const series = stats.rpc(session.functionId, session.versionId, rpc.path, rpc.status);
    series.duration.record((rpc.endedAt - rpc.startedAt) / 1000);
    if (rpc.firstByteAt !== undefined) series.firstByte.record((rpc.firstByteAt - rpc.startedAt) / 1000);
    if (rpc.upstreamError !== undefined) {
      this.metrics.upstreamConnectFailures.add(`${session.endpoint.key}\0${errorType(rpc.upstreamError)}`);
    }
    const trace = rpc.trace instanceof RpcTrace ? rpc.trace : undefined;
    if (trace !== undefined) this.#tracer?.end(trace, rpc);
    this.#accessLog?.forwarded(rpc, trace);
  }

  rpcRejected(rpc: RejectedRpc): void {
    const endedAt = performance.now();
    if (rpc.http) {
      this.metrics.nonGrpcRequests.add(String(rpc.status));
    } else {
      // Only an authenticated caller's function id and method become attributes: anything else
      // is whatever a client made up, and would make a new series per request.
      const trusted = rpc.subject !== undefined;
      const knownFunction = trusted && rpc.status !== Status.NOT_FOUND && rpc.status !== Status.INVALID_ARGUMENT;
      const series = this.metrics.stats.rpc(knownFunction ? (rpc.functionId ?? '') : '', '', trusted ? (rpc.path ?? '') : '', rpc.status);
      series.duration.record((endedAt - rpc.startedAt) / 1000);
      if (rpc.reason !== undefined) this.metrics.authFailures.add(rpc.reason);
      else if (rpc.status === Status.PERMISSION_DENIED) this.metrics.authFailures.add('permission_denied');
    }
    this.#accessLog?.rejected(rpc, endedAt);
  }

  setDraining(draining: boolean): void {
    this.metrics.draining = draining;
  }

  internalError(where: string, err: unknown): void {
    this.metrics.internalErrors++;
    const error = err instanceof Error ? err : new Error(String(err));
    this.#log.error('internal error: the connection was closed (GOAWAY INTERNAL_ERROR), the gateway serves on', {
      where,
      error: error.message,
      stack: error.stack,
    });
  }

  /** A held session stopped waiting for an endpoint (bound, or why not), after `waitedMs`. */
  sessionWaitEnded(functionId: string, versionId: string, outcome: string, waitedMs: number): void {
    this.metrics.sessionWaitEnded(functionId, versionId, outcome, waitedMs);
  }

  /** Where the seconds the registry lags its source come from (the file source's is always 0), read at each scrape. */
  setRegistryStaleness(seconds: () => number): void {
    this.metrics.registryStaleness = seconds;
  }

  /** Flushes spans, the last metrics push and the access log; an unreachable collector gets 5 s. */
  async shutdown(): Promise<void> {
    const accessLog = this.#accessLog?.close();
    const exports = Promise.allSettled([this.#tracer?.shutdown(), this.metrics.shutdown()]);
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, SHUTDOWN_LIMIT_MS).unref();
    });
    await Promise.race([exports, limit]);
    clearTimeout(timer);
    await accessLog;
  }
}

/** An error code (ECONNREFUSED, ERR_HTTP2_...) as error.type; free text is not a useful attribute. */
function errorType(upstreamError: string): string {
  return /^[A-Z][A-Z0-9_]{0,63}$/.test(upstreamError) ? upstreamError : '_OTHER';
}

export async function createTelemetry(opts: TelemetryOptions): Promise<GatewayTelemetry> {
  const settings = readOtelSettings(opts.env);
  routeDiagnostics(opts.log);
  const resource = gatewayResource();
  const push = settings.metrics && {
    exporter: await createMetricExporter(settings.metrics),
    intervalMs: settings.metrics.intervalMs,
    timeoutMs: settings.metrics.timeoutMs,
  };
  const metrics = new GatewayMetrics({ resource, push, sessions: opts.sessions, h2: opts.h2 });
  try {
    const tracer = settings.traces && (await createRpcTracer(settings.traces, resource));
    const accessLog = await openAccessLog(opts.accessLog, opts.accessLogSample, (lines) => {
      metrics.accessLogDropped += lines;
    });
    if (settings.traces) {
      opts.log.info('tracing on', { exporters: settings.traces.exporters, protocol: settings.traces.protocol, sampler: settings.traces.sampler });
    }
    if (settings.metrics) opts.log.info('pushing metrics', { exporter: settings.metrics.exporter, protocol: settings.metrics.protocol, intervalMs: settings.metrics.intervalMs });
    return new GatewayTelemetry(metrics, tracer, accessLog, opts.log);
  } catch (err) {
    await metrics.shutdown().catch(() => {});
    throw err;
  }
}

/** The SDK's own warnings and errors (a failed export, ...) as fngate log lines. */
function routeDiagnostics(log: Logger): void {
  const line = (emit: (msg: string, fields?: Record<string, unknown>) => void) => (message: string, ...args: unknown[]): void => {
    emit(`opentelemetry: ${errorMessage(message)}`, args.length === 0 ? undefined : { details: args.map((a) => (a instanceof Error ? a.message : String(a))) });
  };
  const ignore = (): void => {};
  diag.disable();
  diag.setLogger({ error: line(log.error), warn: line(log.warn), info: ignore, debug: ignore, verbose: ignore }, DiagLogLevel.WARN);
}

/** The SDK's error handler logs errors as JSON (message, stack, ...): the message is enough. */
function errorMessage(text: string): string {
  if (!text.startsWith('{')) return text;
  try {
    const parsed: unknown = JSON.parse(text);
    const message = typeof parsed === 'object' && parsed !== null ? (parsed as { message?: unknown }).message : undefined;
    return typeof message === 'string' ? message : text;
  } catch {
    return text;
  }
}
