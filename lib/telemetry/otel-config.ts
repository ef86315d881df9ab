// The standard OTEL_* environment variables, read once at start-up. The OTLP exporters read
// their own endpoint, headers, timeout, compression and TLS variables; this decides whether a
// signal is exported at all, over which protocol, with which sampler, batching and interval.
// A value this build cannot honour stops start-up naming the variable, like a bad flag.
import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { Sampler, SpanExporter } from '@opentelemetry/sdk-trace';
import { defaultResource, detectResources, resourceAttributesEnvDetector, resourceFromAttributes, serviceInstanceIdDetector, serviceNameEnvDetector, type Resource } from '@opentelemetry/resources';

export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';
export type TraceExporterKind = 'otlp' | 'console';
export type SamplerName = 'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio';

export interface TraceSettings {
  readonly exporters: readonly TraceExporterKind[];
  readonly protocol: OtlpProtocol;
  readonly sampler: SamplerName;
  /** OTEL_TRACES_SAMPLER_ARG for the ratio samplers. */
  readonly ratio: number;
  /** A call without a sampled parent is never sampled (parentbased_always_off, parentbased ratio 0). */
  readonly rootNeverSampled: boolean;
  readonly scheduleDelayMs: number;
  readonly exportTimeoutMs: number;
  readonly maxQueueSize: number;
  readonly maxExportBatchSize: number;
}

export interface MetricPushSettings {
  readonly exporter: 'otlp' | 'console';
  readonly protocol: OtlpProtocol;
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

export interface OtelSettings {
  /** undefined: no span is ever started (rpcStarting costs nothing). */
  readonly traces: TraceSettings | undefined;
  /** undefined: metrics are only scraped from admin /metrics. */
  readonly metrics: MetricPushSettings | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

const protocols = ['grpc', 'http/protobuf', 'http/json'] as const;
const samplers = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;

/** An empty variable counts as unset, as in the rest of fngate's configuration. */
function get(env: Env, key: string): string | undefined {
  const value = env[key]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function fail(key: string, reason: string): Error {
  return new Error(`${key}: ${reason}`);
}

function oneOf<T extends string>(env: Env, key: string, values: readonly T[], def: T): T {
  const text = get(env, key);
  if (text === undefined) return def;
  const found = values.find((v) => v === text.toLowerCase());
  if (found === undefined) throw fail(key, `expected one of ${values.join(', ')}, got "${text}"`);
  return found;
}

function count(env: Env, key: string, def: number, min: number): number {
  const text = get(env, key);
  if (text === undefined) return def;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min)) throw fail(key, `expected a whole number of at least ${min}, got "${text}"`);
  return n;
}

/** OTEL_{SIGNAL}_EXPORTER as a list; `allowed` are the values this build exports with. */
function exporterList(env: Env, key: string, allowed: readonly string[], ignored: readonly string[]): string[] | undefined {
  const text = get(env, key);
  if (text === undefined) return undefined;
  const out: string[] = [];
  for (const raw of text.split(',')) {
    const value = raw.trim().toLowerCase();
    if (value === '' || value === 'none' || ignored.includes(value)) continue;
    if (!allowed.includes(value)) throw fail(key, `"${value}" is not supported; use ${[...allowed, ...ignored, 'none'].join(', ')}`);
    if (!out.includes(value)) out.push(value);
  }
  return out;
}

function protocol(env: Env, signal: 'TRACES' | 'METRICS'): OtlpProtocol {
  const specific = `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`;
  const key = get(env, specific) === undefined ? 'OTEL_EXPORTER_OTLP_PROTOCOL' : specific;
  return oneOf(env, key, protocols, 'http/protobuf');
}

/**
 * A signal is exported when OTEL_{SIGNAL}_EXPORTER names an exporter, or (left unset) when an
 * OTLP endpoint is configured for it: fngate never sends to the spec's default
 * localhost:4318 unless asked to.
 */
function endpointConfigured(env: Env, signal: 'TRACES' | 'METRICS'): boolean {
  return get(env, 'OTEL_EXPORTER_OTLP_ENDPOINT') !== undefined || get(env, `OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`) !== undefined;
}

export function readOtelSettings(env: Env): OtelSettings {
  const disabled = oneOf(env, 'OTEL_SDK_DISABLED', ['true', 'false'], 'false') === 'true';
  const traceList = exporterList(env, 'OTEL_TRACES_EXPORTER', ['otlp', 'console'], []);
  const traceExporters = (traceList ?? (endpointConfigured(env, 'TRACES') ? ['otlp'] : [])) as TraceExporterKind[];
  const sampler = oneOf(env, 'OTEL_TRACES_SAMPLER', samplers, 'parentbased_always_on');
  let ratio = 1;
  const ratioText = get(env, 'OTEL_TRACES_SAMPLER_ARG');
  if (ratioText !== undefined && sampler.endsWith('traceidratio')) {
    ratio = /^(\d+(\.\d*)?|\.\d+)$/.test(ratioText) ? Number(ratioText) : NaN;
    if (!(ratio >= 0 && ratio <= 1)) throw fail('OTEL_TRACES_SAMPLER_ARG', `expected a ratio from 0 to 1, got "${ratioText}"`);
  }
  // Samplers that never sample anything turn tracing off altogether (no span is started).
  const neverSamples = sampler === 'always_off' || (sampler === 'traceidratio' && ratio === 0);
  const traces: TraceSettings | undefined =
    disabled || traceExporters.length === 0 || neverSamples
      ? undefined
      : {
          exporters: traceExporters,
          protocol: protocol(env, 'TRACES'),
          sampler,
          ratio,
          rootNeverSampled: sampler === 'parentbased_always_off' || (sampler === 'parentbased_traceidratio' && ratio === 0),
          scheduleDelayMs: count(env, 'OTEL_BSP_SCHEDULE_DELAY', 5000, 1),
          exportTimeoutMs: count(env, 'OTEL_BSP_EXPORT_TIMEOUT', 30_000, 1),
          maxQueueSize: count(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 2048, 1),
          maxExportBatchSize: count(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 512, 1),
        };
  if (traces && traces.maxExportBatchSize > traces.maxQueueSize) {
    throw fail('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', `must not exceed OTEL_BSP_MAX_QUEUE_SIZE (${traces.maxQueueSize})`);
  }

  // "prometheus" is admin /metrics, which is always served.
  const metricList = exporterList(env, 'OTEL_METRICS_EXPORTER', ['otlp', 'console'], ['prometheus']);
  const metricExporters = metricList ?? (endpointConfigured(env, 'METRICS') ? ['otlp'] : []);
  if (metricExporters.length > 1) throw fail('OTEL_METRICS_EXPORTER', 'name one push exporter (otlp or console)');
  const pushed = metricExporters[0] as 'otlp' | 'console' | undefined;
  const metrics: MetricPushSettings | undefined =
    disabled || pushed === undefined
      ? undefined
      : {
          exporter: pushed,
          protocol: protocol(env, 'METRICS'),
          intervalMs: count(env, 'OTEL_METRIC_EXPORT_INTERVAL', 60_000, 1),
          timeoutMs: count(env, 'OTEL_METRIC_EXPORT_TIMEOUT', 30_000, 1),
        };
  return { traces, metrics };
}

/** service.name "fngate" unless OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say otherwise, plus a service.instance.id. */
export function gatewayResource(): Resource {
  return defaultResource()
    .merge(resourceFromAttributes({ 'service.name': 'fngate' }))
    .merge(detectResources({ detectors: [serviceInstanceIdDetector, resourceAttributesEnvDetector, serviceNameEnvDetector] }));
}

// The exporters are loaded only when configured: most gateways never pay for them.

export async function createSpanExporter(kind: TraceExporterKind, protocol: OtlpProtocol): Promise<SpanExporter> {
  if (kind === 'console') return new (await import('@opentelemetry/sdk-trace')).ConsoleSpanExporter();
  switch (protocol) {
    case 'grpc':
      return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter();
    case 'http/protobuf':
      return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
    case 'http/json':
      return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
  }
}

export async function createMetricExporter(settings: MetricPushSettings): Promise<PushMetricExporter> {
  if (settings.exporter === 'console') return new (await import('@opentelemetry/sdk-metrics')).ConsoleMetricExporter();
  switch (settings.protocol) {
    case 'grpc':
      return new (await import('@opentelemetry/exporter-metrics-otlp-grpc')).OTLPMetricExporter();
    case 'http/protobuf':
      return new (await import('@opentelemetry/exporter-metrics-otlp-proto')).OTLPMetricExporter();
    case 'http/json':
      return new (await import('@opentelemetry/exporter-metrics-otlp-http')).OTLPMetricExporter();
  }
}

export async function createSampler(settings: TraceSettings): Promise<Sampler> {
  const { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler } = await import('@opentelemetry/sdk-trace');
  switch (settings.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(settings.ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.ratio) });
  }
}
