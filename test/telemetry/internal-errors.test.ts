// The last line of defence between one connection and the process: an exception out of a
// stream handler of the layer above lib/h2 (the gateway's pipeline, the relay) closes that
// connection with GOAWAY(INTERNAL_ERROR) and is reported; the process, the server and another
// client's connection go on. The gateway reports it by logging the stack at level error and
// counting fngate_internal_errors_total.
import t from 'tap';
import http2 from 'node:http2';
import net from 'node:net';
import { DEFAULT_LIMITS, newCounters } from '../../lib/h2/limits.ts';
import { ServerConnection } from '../../lib/h2/server-connection.ts';
import { createLogger } from '../../lib/telemetry/log.ts';
import { createTelemetry } from '../../lib/telemetry/telemetry.ts';

interface Reported {
  where: string;
  err: unknown;
}

/** A lib/h2 server whose request handling throws for requests carrying `x-throw`. */
async function startServer(reported: Reported[]): Promise<{ address: string; close: () => Promise<void> }> {
  const counters = newCounters();
  const connections = new Set<ServerConnection>();
  const server = net.createServer((socket) => {
    const c = new ServerConnection(socket, DEFAULT_LIMITS, counters, {
      onStream(stream, fields) {
        if (fields.includes('x-throw')) throw new TypeError('handler bug');
        stream.writeHeaders([':status', '200'], false);
        stream.writeData(Buffer.from('ok'), true);
      },
      onGoaway() {},
      onClose: () => connections.delete(c),
      onInternalError: (where, err) => reported.push({ where, err }),
      onStreamCountChanged() {},
    });
    connections.add(c);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.destroy();
        server.close(() => resolve());
      }),
  };
}

function request(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status: number | undefined; body: string }> {
  return new Promise((resolve) => {
    const req = client.request({ ':path': '/', ...headers });
    let status: number | undefined;
    let body = '';
    req.on('response', (h) => {
      status = Number(h[':status']);
    });
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('error', () => {});
    req.on('close', () => resolve({ status, body }));
    req.end();
  });
}

t.test('a throwing handler closes its own connection with GOAWAY(INTERNAL_ERROR); others go on', async (t) => {
  const reported: Reported[] = [];
  const { address, close } = await startServer(reported);
  t.teardown(close);
  const bystander = http2.connect(address);
  bystander.on('error', () => {});
  t.teardown(() => bystander.destroy());
  t.same(await request(bystander, {}), { status: 200, body: 'ok' }, 'a bystander call works before');

  const victim = http2.connect(address);
  victim.on('error', () => {});
  t.teardown(() => victim.destroy());
  const goaway = new Promise<number>((resolve) => victim.once('goaway', (code: number) => resolve(code)));
  const result = await request(victim, { 'x-throw': '1' });
  t.equal(await goaway, http2.constants.NGHTTP2_INTERNAL_ERROR, 'the connection whose handler threw got GOAWAY(INTERNAL_ERROR)');
  t.equal(result.status, undefined, 'its stream was not answered');
  t.equal(reported.length, 1, 'reported once');
  t.equal(reported[0]?.where, 'read');
  t.match(String((reported[0]?.err as Error).stack), /TypeError: handler bug/, 'with the exception and its stack');

  t.same(await request(bystander, {}), { status: 200, body: 'ok' }, 'the bystander connection still works');
  const next = http2.connect(address);
  next.on('error', () => {});
  t.teardown(() => next.destroy());
  t.same(await request(next, {}), { status: 200, body: 'ok' }, 'a new connection is served');
});

t.test('GatewayTelemetry.internalError logs at level error with the stack and counts fngate_internal_errors_total', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  const telemetry = await createTelemetry({
    log,
    env: { OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'prometheus' },
    accessLog: 'off',
    accessLogSample: 1,
    sessions: { byEndpoint: () => new Map(), processes: () => 1, byVersion: () => [] },
  });
  t.teardown(() => telemetry.shutdown());
  t.match((await telemetry.metrics.render()).text, /^fngate_internal_errors_total 0$/m, 'exported at 0 before any error');
  telemetry.internalError('client DATA', new RangeError('boom'));
  telemetry.internalError('new stream', 'not an Error');
  t.match((await telemetry.metrics.render()).text, /^fngate_internal_errors_total 2$/m, 'counted');
  const errors = lines.filter((l) => l['level'] === 'error');
  t.equal(errors.length, 2, 'two lines at level error');
  t.equal(errors[0]?.['where'], 'client DATA');
  t.equal(errors[0]?.['error'], 'boom');
  t.match(String(errors[0]?.['stack']), /^RangeError: boom\n\s+at /, 'the stack is logged');
  t.equal(errors[1]?.['error'], 'not an Error');
});
