// Telemetry parts without a gateway: the OTEL_* settings, the hot-path aggregation (bucket
// edges, the series cap), delta temporality for a push exporter that asks for it, and the
// OpenTelemetry -> Prometheus names.
import t from 'tap';
import { AggregationTemporality, DataPointType, InMemoryMetricExporter, type HistogramMetricData } from '@opentelemetry/sdk-metrics';
import { GatewayMetrics, prometheusName } from '../../lib/telemetry/metrics.ts';
import { gatewayResource, readOtelSettings } from '../../lib/telemetry/otel-config.ts';
import { DURATION_BOUNDARIES, Histogram, MAX_RPC_SERIES, RpcStats, statusIndex } from '../../lib/telemetry/rpc-stats.ts';

t.test('OTEL_* settings', async (t) => {
  t.same(readOtelSettings({}), { traces: undefined, metrics: undefined }, 'nothing configured: no export at all');
  const endpoint = readOtelSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' });
  t.match(endpoint.traces, { exporters: ['otlp'], protocol: 'http/protobuf', sampler: 'parentbased_always_on', scheduleDelayMs: 5000 }, 'an endpoint turns traces on');
  t.match(endpoint.metrics, { exporter: 'otlp', protocol: 'http/protobuf', intervalMs: 60_000 }, '... and the metrics push');
  const tracesOnly = readOtelSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' });
  t.equal(tracesOnly.traces?.protocol, 'grpc', 'the per-signal protocol wins');
  t.equal(tracesOnly.metrics, undefined, 'a traces endpoint does not push metrics');
  t.equal(readOtelSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_TRACES_EXPORTER: 'none' }).traces, undefined, 'none');
  t.equal(readOtelSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_SDK_DISABLED: 'true' }).traces, undefined, 'OTEL_SDK_DISABLED');
  t.equal(readOtelSettings({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'always_off' }).traces, undefined, 'always_off: tracing off');
  t.equal(readOtelSettings({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }).traces, undefined, 'ratio 0: tracing off');
  t.match(
    readOtelSettings({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }).traces,
    { rootNeverSampled: true, ratio: 0 },
    'parent-based ratio 0: only sampled parents are traced',
  );
  t.match(readOtelSettings({ OTEL_TRACES_EXPORTER: 'console,otlp' }).traces, { exporters: ['console', 'otlp'] });
  t.equal(readOtelSettings({ OTEL_METRICS_EXPORTER: 'prometheus' }).metrics, undefined, 'prometheus = admin /metrics, no push');
  t.match(readOtelSettings({ OTEL_METRICS_EXPORTER: 'otlp', OTEL_METRIC_EXPORT_INTERVAL: '1000' }).metrics, { exporter: 'otlp', intervalMs: 1000 });
  t.equal(readOtelSettings({ OTEL_TRACES_EXPORTER: '' }).traces, undefined, 'empty = unset');
  for (const [env, message] of [
    [{ OTEL_TRACES_SAMPLER: 'sometimes' }, /^OTEL_TRACES_SAMPLER: expected one of/],
    [{ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1.5' }, /^OTEL_TRACES_SAMPLER_ARG: expected a ratio/],
    [{ OTEL_TRACES_EXPORTER: 'jaeger' }, /^OTEL_TRACES_EXPORTER: "jaeger" is not supported/],
    [{ OTEL_METRICS_EXPORTER: 'otlp,console' }, /^OTEL_METRICS_EXPORTER: name one push exporter/],
    [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'udp' }, /^OTEL_EXPORTER_OTLP_PROTOCOL: expected one of grpc, http\/protobuf, http\/json/],
    [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_BSP_SCHEDULE_DELAY: 'soon' }, /^OTEL_BSP_SCHEDULE_DELAY: expected a whole number/],
  ] as const) {
    t.throws(() => readOtelSettings(env), message, JSON.stringify(env));
  }
});

t.test('resource: service.name fngate unless the environment names another', async (t) => {
  const saved = process.env['OTEL_SERVICE_NAME'];
  delete process.env['OTEL_SERVICE_NAME'];
  t.equal(gatewayResource().attributes['service.name'], 'fngate');
  process.env['OTEL_SERVICE_NAME'] = 'edge-gateway';
  t.equal(gatewayResource().attributes['service.name'], 'edge-gateway');
  if (saved === undefined) delete process.env['OTEL_SERVICE_NAME'];
  else process.env['OTEL_SERVICE_NAME'] = saved;
  t.type(gatewayResource().attributes['service.instance.id'], 'string');
});

t.test('histogram buckets: upper bounds inclusive, 0.1 ms .. 1 h', async (t) => {
  t.equal(DURATION_BOUNDARIES[0], 0.0001);
  t.equal(DURATION_BOUNDARIES.at(-1), 3600);
  const h = new Histogram();
  for (const v of [0, 0.0001, 0.00010001, 0.5, 3600, 3600.5]) h.record(v);
  t.equal(h.counts[0], 2, '0 and exactly 0.1 ms in the first bucket');
  t.equal(h.counts[1], 1, 'just above 0.1 ms in the second');
  t.equal(h.counts[DURATION_BOUNDARIES.indexOf(0.5)], 1, 'a bound is its own bucket');
  t.equal(h.counts[DURATION_BOUNDARIES.length - 1], 1, 'exactly 1 h');
  t.equal(h.counts[DURATION_BOUNDARIES.length], 1, 'beyond 1 h: the +Inf bucket');
  t.equal(h.count, 6);
  t.equal(h.min, 0);
  t.equal(h.max, 3600.5);
});

t.test('statuses: a cancel is CANCELLED, nonsense is UNKNOWN', async (t) => {
  t.equal(statusIndex(undefined), 1);
  t.equal(statusIndex(0), 0);
  t.equal(statusIndex(16), 16);
  t.equal(statusIndex(17), 2);
  t.equal(statusIndex(NaN), 2);
  t.equal(statusIndex(-1), 2);
});

t.test('series: cached per combination, capped', async (t) => {
  const stats = new RpcStats();
  const a = stats.rpc('fn', 'v1', '/pkg.S/M', 0);
  t.equal(stats.rpc('fn', 'v1', '/pkg.S/M', 0), a, 'the same object for the same combination');
  t.same(a.attributes, { 'rpc.system.name': 'grpc', 'rpc.method': 'pkg.S/M', 'rpc.status_code': 'OK', 'fngate.function_id': 'fn', 'fngate.version_id': 'v1' });
  t.ok(Object.isFrozen(a.attributes));
  t.same(stats.rpc('', '', '', 16).attributes, { 'rpc.system.name': 'grpc', 'rpc.method': '_OTHER', 'rpc.status_code': 'UNAUTHENTICATED' }, 'unknown function: left out');
  t.equal(stats.rpc('fn', 'v1', '/pkg.S/M', undefined).attributes['rpc.status_code'], 'CANCELLED');
  for (let i = 0; i < MAX_RPC_SERIES + 10; i++) stats.rpc('fn', 'v1', `/made.Up/M${i}`, 12);
  const overflow = stats.rpc('fn', 'v1', '/made.Up/another', 12);
  t.same(overflow.attributes, { 'otel.metric.overflow': true }, 'past the cap: one overflow series');
  t.equal([...stats.rpcSeries()].length, MAX_RPC_SERIES + 1, 'no more series than the cap (+ overflow)');
  t.equal(stats.rpc('fn', 'v1', '/pkg.S/M', 0), a, 'existing series still found');
});

t.test('names: OpenTelemetry -> Prometheus', async (t) => {
  t.equal(prometheusName('rpc.server.call.duration', 's'), 'rpc.server.call.duration.seconds');
  t.equal(prometheusName('fngate.rpc.received', 'By'), 'fngate.rpc.received.bytes');
  t.equal(prometheusName('fngate.rpc.active_streams', '{stream}'), 'fngate.rpc.active_streams');
  t.equal(prometheusName('x.duration_seconds', 's'), 'x.duration_seconds', 'no double suffix');
});

t.test('a push exporter asking for delta gets deltas; /metrics stays cumulative', async (t) => {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.DELTA);
  const metrics = new GatewayMetrics({
    resource: gatewayResource(),
    push: { exporter, intervalMs: 3_600_000, timeoutMs: 1000 },
    sessions: { byEndpoint: () => new Map(), processes: () => 1, byVersion: () => [] },
  });
  t.teardown(() => metrics.shutdown());
  const series = metrics.stats.rpc('fn', 'v1', '/pkg.S/M', 0);
  series.duration.record(0.002);
  series.duration.record(0.003);
  metrics.stats.function('fn', 'v1').bytesIn += 10;
  await metrics.forceFlush();
  series.duration.record(0.004);
  metrics.stats.function('fn', 'v1').bytesIn += 5;
  await metrics.forceFlush();
  const exports = exporter.getMetrics();
  t.equal(exports.length, 2, 'two pushes');
  const point = (i: number, name: string): { count?: number; value?: unknown; temporality?: AggregationTemporality } => {
    const m = exports[i]?.scopeMetrics.flatMap((s) => s.metrics).find((x) => x.descriptor.name === name);
    if (m?.dataPointType === DataPointType.HISTOGRAM) return { count: (m as HistogramMetricData).dataPoints[0]?.value.count, temporality: m.aggregationTemporality };
    return { value: m?.dataPoints[0]?.value, temporality: m?.aggregationTemporality };
  };
  t.same(point(0, 'rpc.server.call.duration'), { count: 2, temporality: AggregationTemporality.DELTA });
  t.same(point(1, 'rpc.server.call.duration'), { count: 1, temporality: AggregationTemporality.DELTA }, 'the second push: only the new call');
  t.same(point(0, 'fngate.rpc.received'), { value: 10, temporality: AggregationTemporality.DELTA });
  t.same(point(1, 'fngate.rpc.received'), { value: 5, temporality: AggregationTemporality.DELTA });
  const { text } = await metrics.render();
  t.match(text, /^rpc_server_call_duration_seconds_count\{[^}]*\} 3$/m, '/metrics: cumulative 3');
  t.match(text, /^fngate_rpc_received_bytes_total\{[^}]*\} 15$/m, '/metrics: cumulative 15 bytes');
});
