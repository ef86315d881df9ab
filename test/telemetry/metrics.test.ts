// admin /metrics through the real gateway: a known sequence of calls with mixed outcomes (OK,
// a function's own error status, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, a client
// cancel, an endpoint that refuses connections) must move exactly the series it should, by
// exactly as much, and nothing else; the exposition must pass `promtool check metrics`.
import t from 'tap';
import { join } from 'node:path';
import { deadPort, startEchoBackend } from '../helpers/backend.ts';
import { echoClient, type MetadataRecord } from '../helpers/echo-client.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { metric, metricsText, startGateway } from '../helpers/gateway.ts';
import { connectRaw, frame } from '../abuse/h2-wire.ts';
import { waitForAsync } from '../helpers/wait.ts';
import { increases, parseExposition, promtoolCheck, seriesKey, byKey, type Sample } from './exposition.ts';

const dir = t.testdir({});
const fnDir = join(dir, 'functions');
const keysFile = join(dir, 'keys.yaml');
const echo = await startEchoBackend({ name: 'echo' });
t.teardown(() => echo.stop(1000));
const refusedPort = await deadPort();
const REFUSED = `127.0.0.1:${refusedPort}`;
writeFunctionsDir(fnDir, [
  { name: 'echo', functionId: 'fn-echo', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [echo.address] }] },
  { name: 'refused', functionId: 'fn-refused', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [REFUSED] }] },
]);
const KEY = randomKey();
const KEY_OTHER = randomKey();
writeKeysFile(keysFile, [
  { name: 'all', key: KEY, functions: '*' },
  { name: 'refused-only', key: KEY_OTHER, functions: ['fn-refused'] },
]);

const gw = await startGateway(['--functions', fnDir, '--api-keys', keysFile], {
  env: { OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'prometheus' },
});
t.teardown(() => gw.stop());

const scrape = async (): Promise<{ text: string; samples: Sample[] }> => {
  const text = await metricsText(gw);
  return { text, samples: parseExposition(text) };
};

const GOOD: MetadataRecord = { authorization: `Bearer ${KEY}`, 'function-id': 'fn-echo' };
const UNARY = 'fngate.test.Echo/Unary';
const STREAM = 'fngate.test.Echo/ServerStream';

t.test('the exposition passes promtool check metrics, before and after traffic', async (t) => {
  const before = await promtoolCheck((await scrape()).text);
  t.equal(before.code, 0, `promtool: ${before.output}`);
  const client = echoClient(gw.h2c);
  t.teardown(() => client.close());
  t.equal((await client.unary(GOOD)).status, 0);
  t.equal((await client.unary({ authorization: 'Bearer nope', 'function-id': 'fn-echo' })).status, 16);
  const after = await promtoolCheck((await scrape()).text);
  t.equal(after.code, 0, `promtool: ${after.output}`);
});

t.test('a known sequence of calls moves exactly the series it should', async (t) => {
  const before = await scrape();
  const client = echoClient(gw.h2c);
  t.teardown(() => client.close());

  // 3 OK, 2 with the function's own FAILED_PRECONDITION (9), one stream the client cancels.
  for (let i = 0; i < 3; i++) t.equal((await client.unary(GOOD)).status, 0, 'OK');
  for (let i = 0; i < 2; i++) t.equal((await client.unary({ ...GOOD, 'x-echo-status': '9' })).status, 9, 'status 9 from the function');
  const abort = new AbortController();
  const cancelled = await client.serverStream({ ...GOOD, 'x-echo-hold': '1' }, { count: 1 }, { signal: abort.signal, onReply: () => abort.abort() });
  t.equal(cancelled.status, 1, 'cancelled by the client');
  // Refused by the gateway: no token, an unknown key, a key for another function, an unknown function.
  t.equal((await client.unary({ 'function-id': 'fn-echo' })).status, 16, 'UNAUTHENTICATED (missing token)');
  t.equal((await client.unary({ authorization: `Bearer ${randomKey()}`, 'function-id': 'fn-echo' })).status, 16, 'UNAUTHENTICATED (unknown key)');
  t.equal((await client.unary({ authorization: `Bearer ${KEY_OTHER}`, 'function-id': 'fn-echo' })).status, 7, 'PERMISSION_DENIED');
  t.equal((await client.unary({ ...GOOD, 'function-id': 'fn-nope' })).status, 5, 'NOT_FOUND');
  // The endpoint refuses the connection: UNAVAILABLE, an upstream connect failure.
  t.equal((await client.unary({ ...GOOD, 'function-id': 'fn-refused' })).status, 14, 'UNAVAILABLE');

  // The cancel reaches the gateway as a RST_STREAM; wait until it has been counted.
  const activeKey = seriesKey('fngate_rpc_active_streams', { fngate_function_id: 'fn-echo', fngate_version_id: 'v1' });
  let after = await scrape();
  await waitForAsync(
    async () => {
      after = await scrape();
      // ... and the session of the previous test's client released (its connection's close
      // reaches the gateway a moment after the client closed it).
      return (
        byKey(after.samples).get(activeKey) === 0 &&
        byKey(after.samples).get(seriesKey('rpc_server_call_duration_seconds_count', rpc('fn-echo', STREAM, 'CANCELLED'))) !== undefined &&
        byKey(after.samples).get(seriesKey('fngate_endpoint_sessions', { endpoint: echo.address })) === 1
      );
    },
    5000,
    'the cancelled stream counted and only this client\'s session left',
  );
  const check = await promtoolCheck(after.text);
  t.equal(check.code, 0, `promtool: ${check.output}`);

  const echoAttrs = { fngate_function_id: 'fn-echo', fngate_version_id: 'v1' };
  // Every duration series that moved, and by how much (count; the +Inf bucket is the same).
  const expectedCounts: Array<[Record<string, string>, number]> = [
    [rpc('fn-echo', UNARY, 'OK'), 3],
    [rpc('fn-echo', UNARY, 'FAILED_PRECONDITION'), 2],
    [rpc('fn-echo', STREAM, 'CANCELLED'), 1],
    [{ rpc_method: '_OTHER', rpc_status_code: 'UNAUTHENTICATED', rpc_system_name: 'grpc' }, 2],
    [{ fngate_function_id: 'fn-echo', rpc_method: UNARY, rpc_status_code: 'PERMISSION_DENIED', rpc_system_name: 'grpc' }, 1],
    [{ rpc_method: UNARY, rpc_status_code: 'NOT_FOUND', rpc_system_name: 'grpc' }, 1],
    [rpc('fn-refused', UNARY, 'UNAVAILABLE'), 1],
  ];
  // Time to first response byte: only calls whose function answered with headers.
  const expectedFirstByte: Array<[Record<string, string>, number]> = [
    [rpc('fn-echo', UNARY, 'OK'), 3],
    [rpc('fn-echo', UNARY, 'FAILED_PRECONDITION'), 2],
    [rpc('fn-echo', STREAM, 'CANCELLED'), 1],
  ];
  const expected = new Map<string, number>();
  for (const [labels, n] of expectedCounts) {
    expected.set(seriesKey('rpc_server_call_duration_seconds_count', labels), n);
    expected.set(seriesKey('rpc_server_call_duration_seconds_bucket', { ...labels, le: '+Inf' }), n);
  }
  for (const [labels, n] of expectedFirstByte) {
    expected.set(seriesKey('fngate_rpc_time_to_first_byte_seconds_count', labels), n);
    expected.set(seriesKey('fngate_rpc_time_to_first_byte_seconds_bucket', { ...labels, le: '+Inf' }), n);
  }
  expected.set(seriesKey('fngate_auth_failures_total', { reason: 'missing_token' }), 1);
  expected.set(seriesKey('fngate_auth_failures_total', { reason: 'unknown_key' }), 1);
  expected.set(seriesKey('fngate_auth_failures_total', { reason: 'permission_denied' }), 1);
  expected.set(seriesKey('fngate_upstream_connect_failures_total', { endpoint: REFUSED, error_type: 'ECONNREFUSED' }), 1);
  // Request messages forwarded: 5 empty EchoRequests (a 5-byte gRPC frame each) and the
  // stream's {count: 1} (5 + 2 bytes).
  expected.set(seriesKey('fngate_rpc_received_bytes_total', echoAttrs), 5 * 5 + 7);
  // (The refused call's request may or may not have been read before its upstream failed.)
  const refusedBytes = seriesKey('fngate_rpc_received_bytes_total', { fngate_function_id: 'fn-refused', fngate_version_id: 'v1' });
  expected.set(seriesKey('fngate_client_connections_accepted_total', {}), 1);

  const moved = increases(before.samples, after.samples);
  // Series whose exact amount depends on timing or reply sizes: checked separately below.
  const inexact = (key: string): boolean =>
    /^(rpc_server_call_duration_seconds|fngate_rpc_time_to_first_byte_seconds)_(sum|bucket)\{/.test(key) && !key.includes('le="+Inf"')
      ? true
      : key.startsWith('fngate_rpc_sent_bytes_total{') || key.startsWith('fngate_client_connections{') || key.startsWith('fngate_endpoint_sessions{') || key.startsWith('fngate_sessions{') ||
        key.startsWith('target_info{') || key.startsWith('fngate_rpc_active_streams{') || key === refusedBytes;
  for (const [key, n] of expected) {
    if (n === 0) t.notOk(moved.has(key), `${key} unchanged`);
    else t.equal(moved.get(key), n, `${key} +${n}`);
  }
  const unexpected = [...moved].filter(([key]) => !expected.has(key) && !inexact(key));
  t.same(unexpected, [], 'no other series moved');

  // Histograms: buckets cumulative, ending at the count; sums positive; the same label sets.
  const now = after.samples;
  for (const [labels, n] of expectedCounts) {
    const buckets = now.filter((s) => s.name === 'rpc_server_call_duration_seconds_bucket' && sameLabels(s.labels, labels, 'le'));
    t.equal(buckets.length, 24, `${JSON.stringify(labels)}: 23 bounds (0.1 ms .. 1 h) + Inf`);
    t.ok(buckets.every((b, i) => i === 0 || b.value >= (buckets[i - 1] as Sample).value), 'cumulative');
    t.same(buckets.map((b) => b.labels['le']).slice(0, 3), ['0.0001', '0.00025', '0.0005'], 'smallest bounds');
    t.equal(buckets.at(-2)?.labels['le'], '3600', 'largest finite bound: 1 h');
    t.ok(n > 0);
  }
  t.ok((moved.get(refusedBytes) ?? 0) <= 5, 'at most the one request frame to the refused endpoint');
  const sent = increases(before.samples, after.samples).get(seriesKey('fngate_rpc_sent_bytes_total', echoAttrs)) ?? 0;
  t.ok(sent > 0, `bytes sent to clients counted (${sent})`);
  t.equal(byKey(now).get(seriesKey('fngate_endpoint_sessions', { endpoint: echo.address })), 1, 'one session pinned to the echo endpoint');
  t.equal(byKey(now).get(activeKey), 0, 'no stream open');
  t.equal(byKey(now).get('fngate_session_cap_sharers{}'), 1, 'one gateway process: it holds the whole cap of every endpoint');
  t.equal(byKey(now).get('fngate_draining{}'), 0, 'not draining');
  t.equal(byKey(now).get('fngate_registry_staleness_seconds{}'), 0, 'registry in sync');
});

t.test('units and types as Prometheus names them', async (t) => {
  const { text } = await scrape();
  for (const [name, type] of [
    ['rpc_server_call_duration_seconds', 'histogram'],
    ['fngate_rpc_time_to_first_byte_seconds', 'histogram'],
    ['fngate_rpc_active_streams', 'gauge'],
    ['fngate_rpc_received_bytes_total', 'counter'],
    ['fngate_rpc_sent_bytes_total', 'counter'],
    ['fngate_client_connections', 'gauge'],
    ['fngate_client_connections_accepted_total', 'counter'],
    ['fngate_endpoint_sessions', 'gauge'],
    ['fngate_session_cap_sharers', 'gauge'],
    ['fngate_auth_failures_total', 'counter'],
    ['fngate_upstream_connect_failures_total', 'counter'],
    ['fngate_draining', 'gauge'],
    ['fngate_registry_staleness_seconds', 'gauge'],
    ['fngate_http2_protections_total', 'counter'],
    ['fngate_http2_errors_total', 'counter'],
    ['fngate_http2_read_buffers', 'gauge'],
    ['fngate_http2_read_buffer_limit_total', 'counter'],
  ] as const) {
    t.match(text, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), `${name} is a ${type}`);
  }
  t.notMatch(text, /^# UNIT /m, 'no OpenMetrics UNIT lines in the 0.0.4 text format');
});

t.test('admin endpoints', async (t) => {
  const res = await fetch(`http://${gw.admin}/metrics`);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  t.equal((await fetch(`http://${gw.admin}/readyz`)).status, 200, 'ready');
  const debug = await fetch(`http://${gw.admin}/debug/sessions`);
  t.equal(debug.status, 404, '/debug/sessions is off by default');
});

t.test('/debug/sessions when enabled', async (t) => {
  const other = await startGateway(['--functions', fnDir, '--api-keys', keysFile, '--debug-sessions']);
  t.teardown(() => other.stop());
  const client = echoClient(other.h2c);
  t.teardown(() => client.close());
  t.equal((await client.unary(GOOD)).status, 0);
  const res = await fetch(`http://${other.admin}/debug/sessions`);
  t.equal(res.status, 200);
  const doc = (await res.json()) as { live: number; endpoints: Record<string, number> };
  t.equal(doc.live, 1, 'one live session');
  t.same(doc.endpoints, { [echo.address]: 1 }, 'pinned to the echo endpoint');
});

function rpc(functionId: string, method: string, status: string): Record<string, string> {
  return { fngate_function_id: functionId, fngate_version_id: 'v1', rpc_method: method, rpc_status_code: status, rpc_system_name: 'grpc' };
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>, except: string): boolean {
  const ka = Object.keys(a).filter((k) => k !== except).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

t.test('fngate_http2_read_buffers counts a connection whose last read was large, until it closes', async (t) => {
  const before = await metric(gw, 'fngate_http2_read_buffers');
  const raw = await connectRaw(gw.h2c);
  t.teardown(() => raw.destroy());
  // Frames of an unknown type are read and ignored (RFC 9113 5.5). Bursts of 48 KiB of them
  // until one ends in a read of 16 KiB or more (how the kernel splits them into reads is its
  // own business): the connection then keeps a read buffer of its own, however quiet it goes.
  const burst = Buffer.concat(Array.from({ length: 3 }, () => frame(0xfa, 0, 0, Buffer.alloc(16384, 1))));
  await waitForAsync(
    async () => {
      await raw.write(burst);
      return (await metric(gw, 'fngate_http2_read_buffers')) === before + 1;
    },
    10_000,
    'the quiet connection counted',
  );
  t.pass('counted while it holds a read buffer of its own');
  raw.destroy();
  await waitForAsync(async () => (await metric(gw, 'fngate_http2_read_buffers')) === before, 5000, 'given back when it closed');
  t.pass('given back when the connection closed');
});
