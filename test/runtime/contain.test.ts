// The last line of defence (lib/runtime/contain.ts) on real node:http2 connections: a handler
// that throws closes its own client connection with GOAWAY(INTERNAL_ERROR); the process, the
// server and another client's connection go on; the error is reported with its stack, logged
// at level error and counted as fngate_internal_errors_total.
import t from 'tap';
import http2, { type ClientHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { contained, failConnection } from '../../lib/runtime/contain.ts';
import { createLogger } from '../../lib/telemetry/log.ts';
import { createTelemetry } from '../../lib/telemetry/telemetry.ts';
import { closeServer } from '../helpers/backend.ts';

interface Reported {
  where: string;
  err: unknown;
}

/** A server whose stream handler throws for requests carrying `x-throw`. */
async function startServer(reported: Reported[]): Promise<{ server: http2.Http2Server; address: string; close: () => Promise<void> }> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  const onStream = contained(
    function (this: ServerHttp2Stream, headers: http2.IncomingHttpHeaders) {
      this.on('error', () => {});
      if (headers['x-throw'] !== undefined) throw new TypeError('handler bug');
      this.respond({ ':status': 200 });
      this.end('ok');
    },
    (stream, err) => failConnection(stream.session, 'test stream', err, (where, e) => reported.push({ where, err: e })),
  );
  server.on('stream', (stream: ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => onStream.call(stream, headers));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, address: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server, sessions) };
}

function request(client: ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status: number | undefined; body: string; error: string | undefined }> {
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
    req.on('error', (err: Error) => resolve({ status, body, error: err.message }));
    req.on('close', () => resolve({ status, body, error: undefined }));
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
  t.same(await request(bystander, {}), { status: 200, body: 'ok', error: undefined }, 'a bystander call works before');

  const victim = http2.connect(address);
  victim.on('error', () => {});
  t.teardown(() => victim.destroy());
  const goaway = new Promise<number>((resolve) => victim.once('goaway', (code: number) => resolve(code)));
  const result = await request(victim, { 'x-throw': '1' });
  t.equal(await goaway, http2.constants.NGHTTP2_INTERNAL_ERROR, 'the connection whose handler threw got GOAWAY(INTERNAL_ERROR)');
  t.equal(result.status, undefined, 'its stream was not answered');
  await new Promise<void>((resolve) => (victim.closed ? resolve() : victim.once('close', () => resolve())));
  t.equal(reported.length, 1, 'reported once');
  t.equal(reported[0]?.where, 'test stream');
  t.match(String((reported[0]?.err as Error).stack), /TypeError: handler bug/, 'with the exception and its stack');

  t.same(await request(bystander, {}), { status: 200, body: 'ok', error: undefined }, 'the bystander connection still works');
  const next = http2.connect(address);
  next.on('error', () => {});
  t.teardown(() => next.destroy());
  t.same(await request(next, {}), { status: 200, body: 'ok', error: undefined }, 'a new connection is served');
});

t.test('contained passes this and its arguments through, and survives a throwing onError', async (t) => {
  const seen: unknown[] = [];
  const target = { name: 'target' };
  const ok = contained(function (this: typeof target, a: number, b: string, c: boolean) {
    seen.push(this.name, a, b, c);
  }, () => {});
  ok.call(target, 1, 'two', true);
  t.same(seen, ['target', 1, 'two', true]);
  const worse = contained(
    function (this: typeof target) {
      throw new Error('first');
    },
    () => {
      throw new Error('second');
    },
  );
  t.doesNotThrow(() => worse.call(target, undefined), 'neither exception escapes');
});

t.test('GatewayTelemetry.internalError logs at level error with the stack and counts fngate_internal_errors_total', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  const telemetry = await createTelemetry({
    log,
    env: { OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'prometheus' },
    accessLog: 'off',
    accessLogSample: 1,
    sessions: { byEndpoint: () => new Map(), processes: () => 1 },
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
