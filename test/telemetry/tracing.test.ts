// Traces end to end: a grpc-js client sends a W3C traceparent, the real gateway exports its
// spans by OTLP/HTTP (JSON) to a receiver run here, and the backend records the traceparent it
// got. The SERVER span is the client span's child, the CLIENT span the SERVER span's, and the
// function's parent is the CLIENT span, all in the client's trace. With tracing off the
// function gets the client's traceparent untouched.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient, type MetadataRecord } from '../helpers/echo-client.ts';
import { randomKey } from '../helpers/files.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/wait.ts';
import { echoFunction } from './echo-function.ts';
import { SpanKind, startOtlpReceiver, StatusCode, type ReceivedSpan } from './otlp-receiver.ts';

const KEY = randomKey();
const { echo, args: ARGS, sidOf } = await echoFunction(t, [{ name: 'tracer', key: KEY, functions: '*' }]);
const GOOD: MetadataRecord = { authorization: `Bearer ${KEY}`, 'function-id': 'fn-echo' };

const receiver = await startOtlpReceiver();
t.teardown(() => receiver.close());

const hex = (bytes: number): string => randomBytes(bytes).toString('hex');
const traceparent = (traceId: string, spanId: string, flags = '01'): string => `00-${traceId}-${spanId}-${flags}`;

/** Calls fn-echo once with `md` and returns the metadata the backend saw for it. */
async function callAndSee(
  gw: GatewayProcess,
  md: MetadataRecord,
  backend: EchoBackend = echo,
): Promise<{ status: number; session: string; seen: Map<string, string>; count: (name: string) => number }> {
  const client = echoClient(gw.h2c);
  try {
    const before = backend.callLog.length;
    const r = await client.unary({ ...GOOD, ...md });
    const record = backend.callLog[before];
    if (record === undefined) throw new Error(`the backend saw no call (status ${r.status} ${r.details})`);
    const seen = new Map<string, string>();
    const lines = record.metadata.split('\n');
    for (const line of lines) {
      const at = line.indexOf(': ');
      if (at > 0) seen.set(line.slice(0, at), line.slice(at + 2));
    }
    const count = (name: string): number => lines.filter((l) => l.startsWith(`${name}: `)).length;
    return { status: r.status, session: String(r.initial['nvcf-reqid'] ?? r.trailing['nvcf-reqid']), seen, count };
  } finally {
    client.close();
  }
}

const tracingEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
  OTEL_TRACES_EXPORTER: 'otlp',
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
  OTEL_METRICS_EXPORTER: 'prometheus',
  OTEL_BSP_SCHEDULE_DELAY: '50',
  OTEL_SERVICE_NAME: 'fngate-under-test',
  ...extra,
});

t.test('client -> gateway SERVER -> gateway CLIENT -> function, one trace', async (t) => {
  const gw = await startGateway(ARGS, { env: tracingEnv() });
  t.teardown(() => gw.stop());
  t.ok(gw.logLines().some((l) => l['msg'] === 'tracing on'), 'the gateway says tracing is on');

  const traceId = hex(16);
  const clientSpanId = hex(8);
  const { status, session, seen, count } = await callAndSee(gw, { traceparent: traceparent(traceId, clientSpanId), tracestate: 'vendor=abc' });
  t.equal(status, 0);
  t.equal(count('traceparent'), 1, "the function gets one traceparent: the gateway's replaces the client's");
  t.equal(count('tracestate'), 1, 'and one tracestate');

  await receiver.waitForSpans((spans) => spans.filter((s) => s.traceId === traceId).length >= 2);
  const spans = receiver.spans.filter((s) => s.traceId === traceId);
  t.equal(spans.length, 2, 'two spans in the client trace');
  const server = spans.find((s) => s.kind === SpanKind.SERVER) as ReceivedSpan;
  const client = spans.find((s) => s.kind === SpanKind.CLIENT) as ReceivedSpan;
  t.ok(server, 'a SERVER span');
  t.ok(client, 'a CLIENT span');

  t.equal(server.parentSpanId, clientSpanId, "the SERVER span's parent is the client's span");
  t.equal(client.parentSpanId, server.spanId, 'the CLIENT span is a child of the SERVER span');
  t.equal(seen.get('traceparent'), traceparent(traceId, client.spanId), "the function's traceparent names the CLIENT span, in the client's trace");
  t.equal(seen.get('tracestate'), 'vendor=abc', 'tracestate passed on');

  t.equal(server.name, 'fngate.test.Echo/Unary', 'span name: the fully-qualified method');
  t.equal(client.name, 'fngate.test.Echo/Unary');
  t.match(server.attributes, {
    'rpc.system.name': 'grpc',
    'rpc.method': 'fngate.test.Echo/Unary',
    'rpc.status_code': 'OK',
    'fngate.function_id': 'fn-echo',
    'fngate.version_id': 'v1',
    'fngate.session_id': sidOf(session),
    'fngate.endpoint': echo.address,
  });
  t.match(client.attributes, {
    'rpc.status_code': 'OK',
    'fngate.session_id': sidOf(session),
    'server.address': '127.0.0.1',
    'server.port': echo.port,
  });
  t.equal(server.status, StatusCode.UNSET, 'OK: status unset');
  t.ok(client.startNs >= server.startNs && client.endNs <= server.endNs, 'the CLIENT span lies within the SERVER span');
  t.equal(server.resource['service.name'], 'fngate-under-test', 'OTEL_SERVICE_NAME');
  t.equal(server.scope, 'fngate');
});

t.test('error statuses and calls without a traceparent', async (t) => {
  const gw = await startGateway(ARGS, { env: tracingEnv() });
  t.teardown(() => gw.stop());

  // No traceparent: the SERVER span is a root, the function still gets the CLIENT span as parent.
  const root = await callAndSee(gw, {});
  const rootParent = root.seen.get('traceparent') ?? '';
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(rootParent);
  t.ok(m, `the function got a sampled traceparent (${rootParent})`);
  const [, rootTrace = '', rootClientSpan = ''] = m ?? [];
  await receiver.waitForSpans((spans) => spans.filter((s) => s.traceId === rootTrace).length >= 2);
  const rootSpans = receiver.spans.filter((s) => s.traceId === rootTrace);
  const rootServer = rootSpans.find((s) => s.kind === SpanKind.SERVER);
  t.equal(rootServer?.parentSpanId, '', 'a root SERVER span');
  t.equal(rootSpans.find((s) => s.kind === SpanKind.CLIENT)?.spanId, rootClientSpan);

  // The function's own errors: INTERNAL is a server-side error, FAILED_PRECONDITION is not;
  // both are errors of the CLIENT span.
  const internalTrace = hex(16);
  t.equal((await callAndSee(gw, { traceparent: traceparent(internalTrace, hex(8)), 'x-echo-status': '13' })).status, 13);
  const preconditionTrace = hex(16);
  t.equal((await callAndSee(gw, { traceparent: traceparent(preconditionTrace, hex(8)), 'x-echo-status': '9' })).status, 9);
  await receiver.waitForSpans((spans) => spans.filter((s) => s.traceId === internalTrace || s.traceId === preconditionTrace).length >= 4);
  const get = (traceId: string, kind: number): ReceivedSpan | undefined => receiver.spans.find((s) => s.traceId === traceId && s.kind === kind);
  t.equal(get(internalTrace, SpanKind.SERVER)?.status, StatusCode.ERROR, 'INTERNAL: SERVER span error');
  t.equal(get(internalTrace, SpanKind.SERVER)?.attributes['error.type'], 'INTERNAL');
  t.equal(get(internalTrace, SpanKind.SERVER)?.attributes['rpc.status_code'], 'INTERNAL');
  t.equal(get(internalTrace, SpanKind.CLIENT)?.status, StatusCode.ERROR, 'INTERNAL: CLIENT span error');
  t.equal(get(preconditionTrace, SpanKind.SERVER)?.status, StatusCode.UNSET, 'FAILED_PRECONDITION: not a server error');
  t.equal(get(preconditionTrace, SpanKind.SERVER)?.attributes['rpc.status_code'], 'FAILED_PRECONDITION');
  t.equal(get(preconditionTrace, SpanKind.CLIENT)?.status, StatusCode.ERROR, 'FAILED_PRECONDITION: CLIENT span error');
});

t.test('an unsampled parent: no spans, its traceparent passed through unchanged', async (t) => {
  const gw = await startGateway(ARGS, { env: tracingEnv() });
  t.teardown(() => gw.stop());
  const traceId = hex(16);
  const parent = traceparent(traceId, hex(8), '00');
  const { status, seen } = await callAndSee(gw, { traceparent: parent, tracestate: 'vendor=x' });
  t.equal(status, 0);
  t.equal(seen.get('traceparent'), parent, 'unchanged');
  t.equal(seen.get('tracestate'), 'vendor=x', 'unchanged');
  // A sampled call after it proves the exporter is flushing; the unsampled trace is still absent.
  const later = hex(16);
  await callAndSee(gw, { traceparent: traceparent(later, hex(8)) });
  await receiver.waitForSpans((spans) => spans.some((s) => s.traceId === later));
  t.notOk(receiver.spans.some((s) => s.traceId === traceId), 'nothing exported for the unsampled trace');
});

t.test('tracing off: the function gets the client traceparent untouched', async (t) => {
  for (const [what, env] of [
    ['no exporter configured', { OTEL_METRICS_EXPORTER: 'prometheus' }],
    ['OTEL_TRACES_EXPORTER=none', { ...tracingEnv(), OTEL_TRACES_EXPORTER: 'none' }],
    ['sampler always_off', tracingEnv({ OTEL_TRACES_SAMPLER: 'always_off' })],
  ] as const) {
    const gw = await startGateway(ARGS, { env });
    t.teardown(() => gw.stop());
    t.notOk(gw.logLines().some((l) => l['msg'] === 'tracing on'), `${what}: tracing is off`);
    const traceId = hex(16);
    const parent = traceparent(traceId, hex(8));
    const { status, seen } = await callAndSee(gw, { traceparent: parent, tracestate: 'a=1,b=2' });
    t.equal(status, 0);
    t.equal(seen.get('traceparent'), parent, `${what}: traceparent unchanged`);
    t.equal(seen.get('tracestate'), 'a=1,b=2', `${what}: tracestate unchanged`);
    const noParent = await callAndSee(gw, {});
    t.notOk(noParent.seen.has('traceparent'), `${what}: none made up when the client sent none`);
    // A gateway that exits flushes its span exporter first: any span would have arrived by then.
    await gw.stop();
    t.notOk(receiver.spans.some((s) => s.traceId === traceId), `${what}: no span exported by the time the gateway has exited`);
  }
});

t.test('OTLP protocols, and metrics pushed by OTLP', async (t) => {
  // http/protobuf (the default protocol): the receiver sees the protobuf content type.
  const proto = await startGateway(ARGS, { env: tracingEnv({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }) });
  t.teardown(() => proto.stop());
  await callAndSee(proto, {});
  await waitFor(() => receiver.contentTypes.includes('/v1/traces application/x-protobuf'), 10_000, 'a protobuf export');
  t.pass('http/protobuf spans posted to /v1/traces');

  // grpc: the exporter loads and the gateway serves (nothing listens for OTLP/gRPC here).
  const grpc = await startGateway(ARGS, { env: tracingEnv({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1' }) });
  t.teardown(() => grpc.stop());
  t.match(grpc.logLines().find((l) => l['msg'] === 'tracing on'), { protocol: 'grpc' });
  t.equal((await callAndSee(grpc, {})).status, 0, 'calls work while the exporter cannot connect');

  // Metrics: OTEL_METRICS_EXPORTER=otlp pushes every OTEL_METRIC_EXPORT_INTERVAL.
  const pushed = await startGateway(ARGS, {
    env: { OTEL_METRICS_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_METRIC_EXPORT_INTERVAL: '200', OTEL_TRACES_EXPORTER: 'none' },
  });
  t.teardown(() => pushed.stop());
  await callAndSee(pushed, {});
  await waitFor(() => receiver.metrics.some((m) => JSON.stringify(m).includes('"rpc.server.call.duration"')), 10_000, 'pushed metrics');
  const body = JSON.stringify(receiver.metrics.find((m) => JSON.stringify(m).includes('"rpc.server.call.duration"')));
  for (const name of ['rpc.server.call.duration', 'fngate.rpc.time_to_first_byte', 'fngate.rpc.received', 'fngate.client_connections']) {
    t.ok(body.includes(`"${name}"`), `${name} pushed`);
  }
});

t.test('a bad OTEL_* value stops start-up naming the variable', async (t) => {
  for (const [key, value] of [
    ['OTEL_TRACES_SAMPLER', 'sometimes'],
    ['OTEL_TRACES_SAMPLER_ARG', '2'],
    ['OTEL_EXPORTER_OTLP_PROTOCOL', 'carrier-pigeon'],
    ['OTEL_TRACES_EXPORTER', 'zipkin'],
  ] as const) {
    const env = tracingEnv({ OTEL_TRACES_SAMPLER: key === 'OTEL_TRACES_SAMPLER_ARG' ? 'traceidratio' : 'parentbased_always_on', [key]: value });
    await t.rejects(startGateway(ARGS, { env, timeoutMs: 10_000 }), new RegExp(`${key}: `), `${key}=${value}`);
  }
});
