// The gateway's metrics in the OpenTelemetry SDK: one MeterProvider with a Prometheus reader
// (rendered by admin /metrics) and, when OTEL_* says so, a periodic OTLP push reader.
//
// Per-RPC numbers are kept by RpcStats (rpc-stats.ts) and handed to the SDK only when a reader
// collects: counters and gauges through observable instruments (the SDK does temporality),
// the two histograms through a MetricProducer (the SDK has no observable histogram). Rarer
// events (connections, auth failures) are plain numbers read the same way.
import { ValueType, type Attributes, type HrTime, type ObservableResult } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import type { PrometheusSerializer as Serializer } from '@opentelemetry/exporter-prometheus';
import type { Resource } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  InstrumentType,
  MeterProvider,
  MetricReader,
  PeriodicExportingMetricReader,
  type CollectionResult,
  type DataPoint,
  type Histogram as HistogramValue,
  type MetricData,
  type MetricProducer,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { METRIC_RPC_SERVER_CALL_DURATION } from '@opentelemetry/semantic-conventions';
import type { H2Counters } from '../h2/limits.ts';
import { MAX_STREAMING_SOCKETS, READ_BUFFER_SIZE, SHARED_READ_SIZE } from '../h2/read-buffers.ts';
import { ATTR, DURATION_BOUNDARIES, LabelledCounter, RpcStats, type Histogram, type RpcSeries } from './rpc-stats.ts';

// The package's serializer file, not its index: the index's exporter (an HTTP server of its own,
// which the admin server makes unneeded) imports node:http as an ES module, and that loads
// Node's bundled undici (~15 MiB of RSS; see admin-server.ts). The version is pinned by the
// lockfile, and the metrics tests render through it.
const { PrometheusSerializer } = (await import(
  new URL('./PrometheusSerializer.mjs', import.meta.resolve('@opentelemetry/exporter-prometheus')).href
)) as { PrometheusSerializer: typeof Serializer };

/** The reader admin /metrics collects from: pull only, nothing to flush or stop. */
class PullMetricReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export const SCOPE = { name: 'fngate' } as const;

/** OpenTelemetry names and units; Prometheus names follow from them (see prometheusName). */
export const METRIC = {
  rpcDuration: METRIC_RPC_SERVER_CALL_DURATION, // rpc_server_call_duration_seconds
  firstByte: 'fngate.rpc.time_to_first_byte', // fngate_rpc_time_to_first_byte_seconds
  activeStreams: 'fngate.rpc.active_streams', // fngate_rpc_active_streams
  received: 'fngate.rpc.received', // fngate_rpc_received_bytes_total
  sent: 'fngate.rpc.sent', // fngate_rpc_sent_bytes_total
  clientConnections: 'fngate.client_connections', // fngate_client_connections
  accepted: 'fngate.client_connections.accepted', // fngate_client_connections_accepted_total
  closedByGateway: 'fngate.connections_closed_by_gateway', // fngate_connections_closed_by_gateway_total
  endpointSessions: 'fngate.endpoint_sessions', // fngate_endpoint_sessions
  capSharers: 'fngate.session_cap_sharers', // fngate_session_cap_sharers
  authFailures: 'fngate.auth.failures', // fngate_auth_failures_total
  upstreamConnectFailures: 'fngate.upstream.connect_failures', // fngate_upstream_connect_failures_total
  nonGrpcRequests: 'fngate.non_grpc_requests', // fngate_non_grpc_requests_total
  draining: 'fngate.draining', // fngate_draining
  registryStaleness: 'fngate.registry.staleness', // fngate_registry_staleness_seconds
  accessLogDropped: 'fngate.access_log.dropped', // fngate_access_log_dropped_total
  internalErrors: 'fngate.internal_errors', // fngate_internal_errors_total
  http2Protections: 'fngate.http2.protections', // fngate_http2_protections_total
  http2Errors: 'fngate.http2.errors', // fngate_http2_errors_total
  readBuffers: 'fngate.http2.read_buffers', // fngate_http2_read_buffers
  readBufferLimit: 'fngate.http2.read_buffer_limit', // fngate_http2_read_buffer_limit_total
  sessions: 'fngate.sessions', // fngate_sessions
  waitingSessions: 'fngate.sessions.waiting', // fngate_sessions_waiting
  sessionWait: 'fngate.session.wait', // fngate_session_wait_seconds
  sessionWaitsEnded: 'fngate.session.waits', // fngate_session_waits_total
} as const;

/** Buckets of the session wait (a cold start: a Deployment from 0 replicas, a GPU model loading). */
const WAIT_BOUNDARIES = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];

export interface MetricsOptions {
  readonly resource: Resource;
  /** An OTLP (or console) exporter to push to every `intervalMs`. */
  readonly push?: { readonly exporter: PushMetricExporter; readonly intervalMs: number; readonly timeoutMs: number } | undefined;
  /** Read at collection. */
  readonly sessions: SessionGauges;
  /** lib/h2's protection counters, read at collection. */
  readonly h2?: H2CounterSets | undefined;
}

/** lib/h2 counters of the client side and the upstream side. */
export interface H2CounterSets {
  readonly client: H2Counters;
  readonly upstream: H2Counters;
  /** lib/h2's read buffers, process-wide (readBufferStats). */
  readonly readBuffers?: () => { readonly streamingSockets: number; readonly overLimit: number };
}

/** Counter fields that are protections (the rest are errors by kind). */
const PROTECTIONS = [
  ['rapidReset', 'rapid_reset'],
  ['provokedResets', 'provoked_reset'],
  ['continuationFlood', 'continuation_flood'],
  ['headerListTooLarge', 'header_list_too_large'],
  ['controlFlood', 'control_frame_flood'],
  ['emptyFrameFlood', 'empty_frame_flood'],
  ['outgoingQueueFull', 'outgoing_queue_full'],
  ['prefaceTimeout', 'preface_timeout'],
  ['settingsTimeout', 'settings_timeout'],
  ['refusedStreams', 'refused_stream'],
] as const satisfies ReadonlyArray<readonly [keyof H2Counters, string]>;

/** What the sessions layer reports, read when metrics are collected. */
export interface SessionGauges {
  /** Live sessions this process holds, per endpoint key. */
  byEndpoint(): ReadonlyMap<string, number>;
  /** Gateway processes sharing the endpoints' session caps, this one included. */
  processes(): number;
  /** Open and waiting sessions per function version on this process. */
  byVersion(): Iterable<{ readonly functionId: string; readonly versionId: string; readonly open: number; readonly waiting: number }>;
}

export class GatewayMetrics {
  readonly stats = new RpcStats();
  clientConnections = 0;
  accepted = 0;
  readonly closedByGateway = new LabelledCounter(10, (reason) => Object.freeze({ reason }));
  /** Keyed by RejectedRpc.reason. */
  readonly authFailures = new LabelledCounter(100, (reason) => Object.freeze({ reason }));
  /** Keyed by `endpoint\0error`. */
  readonly upstreamConnectFailures = new LabelledCounter(1000, (key) => {
    const [endpoint = '', error = ''] = key.split('\0');
    return Object.freeze({ endpoint, [ATTR.errorType]: error });
  });
  readonly nonGrpcRequests = new LabelledCounter(100, (status) => Object.freeze({ 'http.response.status_code': Number(status) }));
  accessLogDropped = 0;
  /** Exceptions contained to their connection (each closed that connection, not the process). */
  internalErrors = 0;
  draining = false;
  /** Seconds since the registry last matched its source, read at each scrape; 0 for the file source. */
  registryStaleness: () => number = () => 0;

  readonly #provider: MeterProvider;
  readonly #prometheus: PullMetricReader;
  // No prefix, no timestamps, no resource labels, target_info kept, no otel_scope_* labels
  // (one scope: they would only lengthen every series).
  readonly #serializer = new PrometheusSerializer(undefined, false, undefined, false, true);
  readonly #endpointAttributes = new Map<string, Attributes>();
  /** "function\0version" -> attributes, for versions that had sessions (reported at 0 after). */
  readonly #versionAttributes = new Map<string, Attributes>();
  /** "function\0version\0outcome" -> held sessions that stopped waiting that way. */
  readonly sessionWaitsEnded = new LabelledCounter(10_000, (key) => {
    const [fn = '', version = '', outcome = ''] = key.split('\0');
    return Object.freeze({ [ATTR.functionId]: fn, [ATTR.versionId]: version, outcome });
  });
  #waitHistogram: { record(value: number, attributes: Attributes): void } | undefined;

  constructor(opts: MetricsOptions) {
    this.#prometheus = new PullMetricReader({
      metricProducers: [new HistogramProducer(this.stats, opts.resource, AggregationTemporality.CUMULATIVE)],
    });
    const readers: MetricReader[] = [this.#prometheus];
    if (opts.push) {
      const { exporter, intervalMs, timeoutMs } = opts.push;
      const temporality = exporter.selectAggregationTemporality?.(InstrumentType.HISTOGRAM) ?? AggregationTemporality.CUMULATIVE;
      readers.push(
        new PeriodicExportingMetricReader({
          exporter,
          exportIntervalMillis: intervalMs,
          exportTimeoutMillis: Math.min(timeoutMs, intervalMs),
          metricProducers: [new HistogramProducer(this.stats, opts.resource, temporality)],
        }),
      );
    }
    this.#provider = new MeterProvider({ resource: opts.resource, readers });
    this.#instruments(opts.sessions);
    if (opts.h2) this.#http2(opts.h2);
  }

  #http2(h2: H2CounterSets): void {
    const meter = this.#provider.getMeter(SCOPE.name);
    const int = { valueType: ValueType.INT };
    const sides = [['client', h2.client], ['upstream', h2.upstream]] as const;
    const attributes = new Map<string, Attributes>();
    const attrs = (key: string, make: () => Attributes): Attributes => {
      let a = attributes.get(key);
      if (a === undefined) attributes.set(key, (a = Object.freeze(make())));
      return a;
    };
    meter
      .createObservableCounter(METRIC.http2Protections, {
        ...int,
        unit: '{event}',
        description: 'HTTP/2 protections that cut a stream or a connection, by protection and side (client: toward clients; upstream: toward functions).',
      })
      .addCallback((r) => {
        for (const [side, counters] of sides) {
          for (const [field, protection] of PROTECTIONS) r.observe(counters[field], attrs(`${side}/${protection}`, () => ({ protection, side })));
        }
      });
    meter
      .createObservableCounter(METRIC.http2Errors, { ...int, unit: '{error}', description: 'HTTP/2 errors by kind (connection: GOAWAY; stream: RST_STREAM) and side.' })
      .addCallback((r) => {
        for (const [side, counters] of sides) {
          r.observe(counters.connectionErrors, attrs(`${side}/connection`, () => ({ kind: 'connection', side })));
          r.observe(counters.streamErrors, attrs(`${side}/stream`, () => ({ kind: 'stream', side })));
        }
      });
    const readBuffers = h2.readBuffers;
    if (readBuffers === undefined) return;
    meter
      .createObservableGauge(METRIC.readBuffers, { ...int, unit: '{socket}', description: `Sockets reading into a ${READ_BUFFER_SIZE >> 10} KiB buffer of their own (streaming, or their last read was large); at most ${MAX_STREAMING_SOCKETS}.` })
      .addCallback((r) => r.observe(readBuffers().streamingSockets));
    meter
      .createObservableCounter(METRIC.readBufferLimit, {
        ...int,
        unit: '{read}',
        description: `Reads that went to the shared ${SHARED_READ_SIZE >> 10} KiB buffer (copying what they keep) because ${MAX_STREAMING_SOCKETS} sockets already held buffers of their own.`,
      })
      .addCallback((r) => r.observe(readBuffers().overLimit));
  }

  #instruments(sessions: SessionGauges): void {
    const meter = this.#provider.getMeter(SCOPE.name);
    const stats = this.stats;
    const int = { valueType: ValueType.INT };
    meter
      .createObservableUpDownCounter(METRIC.activeStreams, { ...int, unit: '{stream}', description: 'Forwarded RPC streams open now, by function and version.' })
      .addCallback((r) => {
        for (const s of stats.functionSeries()) if (s.forwarded) r.observe(s.activeStreams, s.attributes);
      });
    meter
      .createObservableCounter(METRIC.received, { ...int, unit: 'By', description: 'gRPC message bytes (DATA) received from clients and forwarded to functions.' })
      .addCallback((r) => {
        for (const s of stats.functionSeries()) if (s.forwarded) r.observe(s.bytesIn, s.attributes);
      });
    meter
      .createObservableCounter(METRIC.sent, { ...int, unit: 'By', description: 'gRPC message bytes (DATA) sent to clients from functions.' })
      .addCallback((r) => {
        for (const s of stats.functionSeries()) if (s.forwarded) r.observe(s.bytesOut, s.attributes);
      });
    meter
      .createObservableUpDownCounter(METRIC.clientConnections, { ...int, unit: '{connection}', description: 'Open client connections.' })
      .addCallback((r) => r.observe(this.clientConnections));
    meter
      .createObservableCounter(METRIC.accepted, { ...int, unit: '{connection}', description: 'Client connections accepted.' })
      .addCallback((r) => r.observe(this.accepted));
    const labelled = (name: string, description: string, counter: LabelledCounter, unit: string): void => {
      meter.createObservableCounter(name, { ...int, unit, description }).addCallback((r) => observeAll(r, counter));
    };
    labelled(METRIC.closedByGateway, 'Client connections the gateway closed, by reason (idle, drain, endpoint_gone, max_age).', this.closedByGateway, '{connection}');
    labelled(METRIC.authFailures, 'Requests refused for their credential (UNAUTHENTICATED, PERMISSION_DENIED), by reason.', this.authFailures, '{request}');
    labelled(
      METRIC.upstreamConnectFailures,
      'Forwarded RPCs whose connection to the function endpoint failed, by endpoint and cause (error.type).',
      this.upstreamConnectFailures,
      '{request}',
    );
    labelled(METRIC.nonGrpcRequests, 'Requests that were not gRPC (answered with an HTTP error), by HTTP status.', this.nonGrpcRequests, '{request}');
    meter
      .createObservableCounter(METRIC.accessLogDropped, { ...int, unit: '{line}', description: 'Access log lines dropped because the log destination fell behind.' })
      .addCallback((r) => r.observe(this.accessLogDropped));
    meter
      .createObservableCounter(METRIC.internalErrors, {
        ...int,
        unit: '{error}',
        description: 'Exceptions inside one connection\'s handlers; each closed that connection (GOAWAY INTERNAL_ERROR) and the gateway served on.',
      })
      .addCallback((r) => r.observe(this.internalErrors));
    meter
      .createObservableGauge(METRIC.endpointSessions, { ...int, unit: '{session}', description: 'Live sessions pinned to each endpoint by this process.' })
      .addCallback((r) => {
        // The snapshot drops an endpoint whose last session ended, and the SDK would repeat
        // its last value: every endpoint seen before is reported, at 0 when absent.
        const snapshot = sessions.byEndpoint();
        for (const [endpoint, n] of snapshot) r.observe(n, this.#endpoint(endpoint));
        for (const [endpoint, attributes] of this.#endpointAttributes) if (!snapshot.has(endpoint)) r.observe(0, attributes);
      });
    meter
      .createObservableGauge(METRIC.sessions, { ...int, unit: '{session}', description: 'Sessions bound to an endpoint on this process, by function and version.' })
      .addCallback((r) => this.#observeVersions(r, sessions, 'open'));
    meter
      .createObservableGauge(METRIC.waitingSessions, {
        ...int,
        unit: '{session}',
        description: 'Sessions waiting on this process for an endpoint with room (scaling.holdTimeout), by function and version.',
      })
      .addCallback((r) => this.#observeVersions(r, sessions, 'waiting'));
    labelled(
      METRIC.sessionWaitsEnded,
      'Held sessions that stopped waiting, by function, version and outcome (bound, deadline, cancelled, timeout, queue_full, drain, removed).',
      this.sessionWaitsEnded,
      '{session}',
    );
    this.#waitHistogram = meter.createHistogram(METRIC.sessionWait, {
      unit: 's',
      description: 'How long held sessions waited for an endpoint with room (the cold start clients feel), by function, version and outcome.',
      advice: { explicitBucketBoundaries: WAIT_BOUNDARIES },
    });
    meter
      .createObservableGauge(METRIC.capSharers, {
        ...int,
        unit: '{process}',
        description: "Gateway processes sharing each endpoint's maxSessionsPerEndpoint (this one included); each enforces its share.",
      })
      .addCallback((r) => r.observe(sessions.processes()));
    meter
      .createObservableGauge(METRIC.draining, { ...int, description: '1 while the gateway drains (not ready, GOAWAY sent), else 0.' })
      .addCallback((r) => r.observe(this.draining ? 1 : 0));
    meter
      .createObservableGauge(METRIC.registryStaleness, {
        unit: 's',
        description: 'Seconds since the registry of Functions last matched its source (0 while in sync).',
      })
      .addCallback((r) => r.observe(this.registryStaleness()));
  }

  /** A held session stopped waiting. */
  sessionWaitEnded(functionId: string, versionId: string, outcome: string, waitedMs: number): void {
    const key = `${functionId}\0${versionId}\0${outcome}`;
    this.sessionWaitsEnded.add(key);
    this.#waitHistogram?.record(waitedMs / 1000, this.sessionWaitsEnded.attributesOf(key));
  }

  #observeVersions(r: ObservableResult, sessions: SessionGauges, which: 'open' | 'waiting'): void {
    // As with endpoints: a version seen before is reported at 0 once its sessions are gone.
    const seen = new Set<string>();
    for (const v of sessions.byVersion()) {
      const key = `${v.functionId}\0${v.versionId}`;
      seen.add(key);
      let attributes = this.#versionAttributes.get(key);
      if (attributes === undefined) {
        attributes = Object.freeze({ [ATTR.functionId]: v.functionId, [ATTR.versionId]: v.versionId });
        if (this.#versionAttributes.size < 10_000) this.#versionAttributes.set(key, attributes);
      }
      r.observe(v[which], attributes);
    }
    for (const [key, attributes] of this.#versionAttributes) if (!seen.has(key)) r.observe(0, attributes);
  }

  #endpoint(endpoint: string): Attributes {
    let attributes = this.#endpointAttributes.get(endpoint);
    if (attributes === undefined) {
      attributes = Object.freeze({ endpoint });
      if (this.#endpointAttributes.size < 10_000) this.#endpointAttributes.set(endpoint, attributes);
    }
    return attributes;
  }

  /** Every metric in the Prometheus text format (0.0.4), named as the OpenTelemetry spec maps them. */
  async render(): Promise<{ text: string; errors: unknown[] }> {
    const { resourceMetrics, errors } = await this.#prometheus.collect();
    return { text: this.#serializer.serialize(withPrometheusUnits(resourceMetrics)), errors };
  }

  /** Pushes now (the OTLP reader, if any). */
  forceFlush(): Promise<void> {
    return this.#provider.forceFlush({ timeoutMillis: 5000 });
  }

  /** Pushes what is left (OTLP) and stops the readers. */
  shutdown(): Promise<void> {
    return this.#provider.shutdown({ timeoutMillis: 5000 });
  }
}

function observeAll(r: ObservableResult, counter: LabelledCounter): void {
  for (const { attributes, value } of counter.entries()) r.observe(value, attributes);
}

const HISTOGRAMS = [
  {
    name: METRIC.rpcDuration,
    description: 'Duration of RPCs the gateway served, from the request to the end of the response (incl. calls it answered itself).',
    of: (s: RpcSeries): Histogram => s.duration,
  },
  {
    name: METRIC.firstByte,
    description: "Time from the request to the function's response headers, for forwarded RPCs that got a response.",
    of: (s: RpcSeries): Histogram => s.firstByte,
  },
] as const;

/** The two per-RPC histograms, as a MetricProducer of one reader (cumulative or delta). */
class HistogramProducer implements MetricProducer {
  readonly #stats: RpcStats;
  readonly #resource: Resource;
  readonly #temporality: AggregationTemporality;
  #since: HrTime = hrTime();
  /** Delta only: what the previous collection reported, per histogram. */
  readonly #reported = new Map<Histogram, { count: number; sum: number; counts: number[] }>();

  constructor(stats: RpcStats, resource: Resource, temporality: AggregationTemporality) {
    this.#stats = stats;
    this.#resource = resource;
    this.#temporality = temporality;
  }

  async collect(): Promise<CollectionResult> {
    const now = hrTime();
    const delta = this.#temporality === AggregationTemporality.DELTA;
    const metrics: MetricData[] = HISTOGRAMS.map(({ name, description, of }) => {
      const dataPoints: DataPoint<HistogramValue>[] = [];
      for (const series of this.#stats.rpcSeries()) {
        const h = of(series);
        if (h.count === 0) continue;
        const value = delta ? this.#delta(h) : cumulative(h);
        if (value !== undefined) dataPoints.push({ attributes: series.attributes, startTime: this.#since, endTime: now, value });
      }
      return {
        descriptor: { name, description, unit: 's', valueType: ValueType.DOUBLE },
        aggregationTemporality: this.#temporality,
        dataPointType: DataPointType.HISTOGRAM,
        dataPoints,
      };
    });
    if (delta) this.#since = now;
    return { resourceMetrics: { resource: this.#resource, scopeMetrics: [{ scope: SCOPE, metrics }] }, errors: [] };
  }

  #delta(h: Histogram): HistogramValue | undefined {
    const last = this.#reported.get(h);
    if (last !== undefined && last.count === h.count) return undefined;
    const counts = h.counts.map((n, i) => n - (last?.counts[i] ?? 0));
    this.#reported.set(h, { count: h.count, sum: h.sum, counts: [...h.counts] });
    // min and max are of the whole life, so not reported for an interval.
    return { buckets: { boundaries: [...DURATION_BOUNDARIES], counts }, count: h.count - (last?.count ?? 0), sum: h.sum - (last?.sum ?? 0) };
  }
}

function cumulative(h: Histogram): HistogramValue {
  return { buckets: { boundaries: [...DURATION_BOUNDARIES], counts: [...h.counts] }, count: h.count, sum: h.sum, min: h.min, max: h.max };
}

/**
 * The OpenTelemetry -> Prometheus naming rules the JS serializer leaves out: the unit as a
 * suffix (`_seconds`, `_bytes`; `{annotations}` dropped), and no `# UNIT` line, which the
 * 0.0.4 text format does not have. `_total` for counters is added by the serializer.
 */
function withPrometheusUnits(rm: ResourceMetrics): ResourceMetrics {
  return {
    resource: rm.resource,
    scopeMetrics: rm.scopeMetrics.map((sm) => ({
      scope: sm.scope,
      metrics: sm.metrics.map((m): MetricData => ({ ...m, descriptor: { ...m.descriptor, name: prometheusName(m.descriptor.name, m.descriptor.unit), unit: '' } })),
    })),
  };
}

const UNIT_SUFFIX: Readonly<Record<string, string>> = { s: 'seconds', ms: 'milliseconds', By: 'bytes', KiBy: 'kibibytes', MiBy: 'mebibytes' };

export function prometheusName(name: string, unit: string): string {
  const suffix = UNIT_SUFFIX[unit];
  return suffix === undefined || name.endsWith(`.${suffix}`) || name.endsWith(`_${suffix}`) ? name : `${name}.${suffix}`;
}
