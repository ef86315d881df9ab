// Every gateway-originated error of docs/reference.md, Clients, through the real gateway process,
// with a grpc-js client and with the Python grpcio client: the status code, a message that
// says what was wrong, the trailers-only wire shape (raw HTTP/2), and that an error leaves the
// client's connection usable while other clients are not disturbed.
import t from 'tap';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Status } from '../../lib/grpc/status.ts';
import { deadPort, startDropBackend, startEchoBackend, startGarbageBackend, startSilentBackend } from '../helpers/backend.ts';
import { echoClient, holdStream } from '../helpers/echo-client.ts';
import type { CallResult, MetadataRecord } from '../helpers/echo-client.ts';
import { ECHO_PATHS, encodeEchoRequest } from '../helpers/echo-proto.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import type { TestFunction } from '../helpers/files.ts';
import { startGateway, SESSION_ID } from '../helpers/gateway.ts';
import type { GatewayProcess } from '../helpers/gateway.ts';
import { decodeGrpcMessage, grpcFrame, rawGrpcCall } from '../helpers/http2-raw.ts';
import type { RawResponse } from '../helpers/http2-raw.ts';
import { pyHeaderArgs, runPythonClient } from '../helpers/python.ts';
import type { PyCall } from '../helpers/python.ts';
import { writeSessionKeys } from '../helpers/session-ids.ts';

type TestT = Parameters<Parameters<typeof t.test>[0]>[0];

const CODE_NAME: Record<number, string> = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k]));

// --- local helpers ----------------------------------------------------------------------

const onePyCall = (calls: PyCall[]): PyCall => {
  const call = calls[0];
  if (call === undefined) throw new Error('echo_client.py reported no call');
  return call;
};

// --- the shared gateway -----------------------------------------------------------------

const dir = t.testdir({});
const fnDir = join(dir, 'functions');
const keysFile = join(dir, 'keys.yaml');

const echo = await startEchoBackend({ name: 'echo' });
const slow = await startEchoBackend({ name: 'slow' });
const single = await startEchoBackend({ name: 'single' });
const garbage = await startGarbageBackend();
const dropClose = await startDropBackend('close');
const dropReset = await startDropBackend('reset');
const silent = await startSilentBackend();
const refusedPort = await deadPort();
t.teardown(async () => {
  await Promise.all([echo.stop(1000), slow.stop(1000), single.stop(1000), garbage.close(), dropClose.close(), dropReset.close(), silent.close()]);
});

const functions: TestFunction[] = [
  { name: 'echo', functionId: 'fn-echo', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [echo.address] }] },
  { name: 'other', functionId: 'fn-other', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [echo.address] }] },
  { name: 'slow', functionId: 'fn-slow', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [slow.address] }] },
  { name: 'single', functionId: 'fn-single', activeVersion: 'v1', maxSessionsPerEndpoint: 1, versions: [{ versionId: 'v1', endpoints: [single.address] }] },
  { name: 'refused', functionId: 'fn-refused', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [`127.0.0.1:${refusedPort}`] }] },
  { name: 'garbage', functionId: 'fn-garbage', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [garbage.address] }] },
  { name: 'drop-close', functionId: 'fn-drop-close', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [dropClose.address] }] },
  { name: 'drop-reset', functionId: 'fn-drop-reset', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [dropReset.address] }] },
  { name: 'silent', functionId: 'fn-silent', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [silent.address] }] },
];
writeFunctionsDir(fnDir, functions);
const KEY_ALL = randomKey();
const KEY_OTHER_ONLY = randomKey();
writeKeysFile(keysFile, [
  { name: 'all', key: KEY_ALL, functions: '*' },
  { name: 'other-only', key: KEY_OTHER_ONLY, functions: ['fn-other'] },
]);

const { path: sessionKeyFile, sidOf } = writeSessionKeys(dir);
const GATEWAY_ARGS = ['--functions', fnDir, '--api-keys', keysFile, '--session-key-file', sessionKeyFile, '--idle-timeout', '30s', '--session-linger', '2s', '--drain-timeout', '5s'];
const gw = await startGateway(GATEWAY_ARGS);
t.teardown(() => gw.stop());

const AUTH = { authorization: `Bearer ${KEY_ALL}` };
const GOOD: MetadataRecord = { ...AUTH, 'function-id': 'fn-echo' };

// One grpc-js client (one connection) makes every error call and the good calls around it.
const probe = echoClient(gw.h2c);
t.teardown(() => probe.close());

// The probe's session of fn-echo: live throughout.
const probeFirst = await probe.unary(GOOD);
if (probeFirst.status !== Status.OK) throw new Error(`probe cannot call fn-echo: ${probeFirst.status} ${probeFirst.details}\n${gw.logs()}`);
const PROBE_SESSION = String(probeFirst.initial['nvcf-reqid']);

// Another client on its own connection holds a stream open through all of it.
const bystander = echoClient(gw.h2c);
t.teardown(() => bystander.close());
const bystanderStream = await holdStream(bystander, GOOD, 'bystander stream open');

// --- the error table, row by row -------------------------------------------------------

interface Row {
  name: string;
  md: MetadataRecord;
  code: number;
  /** The exact message, or a pattern naming what was wrong. */
  message: string | RegExp;
  /** The call got as far as a session: its id comes back (trailers-only: in the one block). */
  session?: true;
}

/** The gateway's message for a failed endpoint connection: names the endpoint and, where given, the cause. */
const endpointFailed = (port: number, cause = '\\S'): RegExp => new RegExp(`^connection to function endpoint 127\\.0\\.0\\.1:${port} failed: ${cause}`);

const rows: Row[] = [
  { name: 'no authorization', md: { 'function-id': 'fn-echo' }, code: Status.UNAUTHENTICATED, message: /^missing authorization metadata/ },
  { name: 'authorization not Bearer', md: { authorization: 'Basic x', 'function-id': 'fn-echo' }, code: Status.UNAUTHENTICATED, message: /must be "Bearer <token>"/ },
  { name: 'unknown API key', md: { authorization: `Bearer ${randomKey()}`, 'function-id': 'fn-echo' }, code: Status.UNAUTHENTICATED, message: /invalid or revoked API key/ },
  {
    name: 'valid key restricted to another function',
    md: { authorization: `Bearer ${KEY_OTHER_ONLY}`, 'function-id': 'fn-echo' },
    code: Status.PERMISSION_DENIED,
    message: /may not invoke function fn-echo$/,
  },
  {
    name: 'restricted key, function that does not exist (no probing of ids)',
    md: { authorization: `Bearer ${KEY_OTHER_ONLY}`, 'function-id': 'fn-nope' },
    code: Status.PERMISSION_DENIED,
    message: /may not invoke function fn-nope$/,
  },
  { name: 'no function-id', md: { ...AUTH }, code: Status.INVALID_ARGUMENT, message: /missing function-id/ },
  { name: 'function-id with bad characters', md: { ...AUTH, 'function-id': 'fn/echo:1!' }, code: Status.INVALID_ARGUMENT, message: /^function-id must be 1-128 characters of A-Za-z0-9\._-/ },
  { name: 'function-id of 129 characters', md: { ...AUTH, 'function-id': 'a'.repeat(129) }, code: Status.INVALID_ARGUMENT, message: /^function-id must be 1-128 characters/ },
  { name: 'unknown function-id', md: { ...AUTH, 'function-id': 'fn-nope' }, code: Status.NOT_FOUND, message: /^function fn-nope not found$/ },
  {
    name: 'unknown function-version-id',
    md: { ...AUTH, 'function-id': 'fn-echo', 'function-version-id': 'v9' },
    code: Status.NOT_FOUND,
    message: /fn-echo has no version v9$/,
  },
  // Another function than the probe's good calls, so its pinned fn-echo session is not involved.
  {
    name: 'nvcf-reqid naming no session',
    md: { ...AUTH, 'function-id': 'fn-other', 'nvcf-reqid': randomUUID() },
    code: Status.NOT_FOUND,
    message: 'no existing session found',
  },
  {
    name: 'nvcf-reqid of a live session of another function',
    md: { ...AUTH, 'function-id': 'fn-other', 'nvcf-reqid': PROBE_SESSION },
    code: Status.NOT_FOUND,
    message: 'no existing session found',
  },
  {
    name: 'cookie nvcf-request-id naming no session',
    md: { ...AUTH, 'function-id': 'fn-other', cookie: `theme=dark; nvcf-request-id=${randomUUID()}` },
    code: Status.NOT_FOUND,
    message: 'no existing session found',
  },
  { name: 'endpoint refuses the connection', md: { ...AUTH, 'function-id': 'fn-refused' }, code: Status.UNAVAILABLE, session: true, message: endpointFailed(refusedPort, 'ECONNREFUSED') },
  { name: 'endpoint answers garbage', md: { ...AUTH, 'function-id': 'fn-garbage' }, code: Status.UNAVAILABLE, session: true, message: endpointFailed(garbage.port) },
  { name: 'endpoint accepts and closes the connection (FIN)', md: { ...AUTH, 'function-id': 'fn-drop-close' }, code: Status.UNAVAILABLE, session: true, message: endpointFailed(dropClose.port) },
  { name: 'endpoint accepts and resets the connection (RST)', md: { ...AUTH, 'function-id': 'fn-drop-reset' }, code: Status.UNAVAILABLE, session: true, message: endpointFailed(dropReset.port) },
];

/** A good call on the probe: OK from the echo backend. */
async function goodCall(t: TestT, what: string): Promise<CallResult> {
  const r = await probe.unary(GOOD, {}, { deadlineMs: 5000 });
  t.equal(r.status, Status.OK, `${what}: good call OK (${r.details})`);
  t.equal(r.reply?.backend, 'echo', `${what}: reached the function`);
  return r;
}

for (const row of rows) {
  t.test(row.name, async (t) => {
    // grpc-js: good call, the error, good call again on the same channel.
    const before = await goodCall(t, 'before');
    const r = await probe.unary(row.md, {}, { deadlineMs: 5000 });
    t.equal(r.status, row.code, `grpc-js: ${CODE_NAME[row.code]} (got ${r.status} "${r.details}")`);
    if (typeof row.message === 'string') t.equal(r.details, row.message, 'grpc-js: message');
    else t.match(r.details, row.message, 'grpc-js: message');
    t.equal(r.reply, undefined, 'no reply');
    if (row.session) t.match(r.trailing['nvcf-reqid'], SESSION_ID, 'grpc-js: the session id comes back');
    const after = await goodCall(t, 'after');
    // Same gateway session and same upstream connection: the client connection was not dropped.
    t.equal(sidOf(after.initial['nvcf-reqid']), sidOf(before.initial['nvcf-reqid']), 'same connection: same session after the error');
    t.equal(after.reply?.peer, before.reply?.peer, 'same upstream connection after the error');

    // grpcio: two calls on one channel, both answered with the error (the channel survives the first).
    const py = await runPythonClient(['--target', gw.h2c, '--timeout', '5', ...pyHeaderArgs(row.md), 'unary', '--calls', '2']);
    t.equal(py.calls.length, 2);
    for (const [i, call] of py.calls.entries()) {
      t.equal(call.code_value, row.code, `python call ${i}: ${CODE_NAME[row.code]} (got ${call.code} "${call.details}")`);
      t.equal(call.code, CODE_NAME[row.code]);
      if (typeof row.message === 'string') t.equal(call.details, row.message, `python call ${i}: message`);
      else t.match(call.details, row.message, `python call ${i}: message`);
      t.equal(call.replies, 0);
    }
  });
}

t.test('maxSessionsPerEndpoint 1: a second connection gets RESOURCE_EXHAUSTED while the first session lives', async (t) => {
  const md = { ...AUTH, 'function-id': 'fn-single' };
  const first = echoClient(gw.h2c);
  t.teardown(() => first.close());
  const a = await first.unary(md);
  t.equal(a.status, Status.OK, `first connection served (${a.details})`);
  t.equal(a.reply?.backend, 'single');
  const again = await first.unary(md);
  t.equal(again.status, Status.OK, 'the holder keeps calling on its session');
  t.equal(sidOf(again.initial['nvcf-reqid']), sidOf(a.initial['nvcf-reqid']), 'in the same session');

  const message = /fn-single.*already holds 1 session/;
  const second = echoClient(gw.h2c);
  t.teardown(() => second.close());
  const b = await second.unary(md);
  t.equal(b.status, Status.RESOURCE_EXHAUSTED, `grpc-js second connection (got ${b.status} "${b.details}")`);
  t.match(b.details, message);
  const py = onePyCall((await runPythonClient(['--target', gw.h2c, '--timeout', '5', ...pyHeaderArgs(md), 'unary'])).calls);
  t.equal(py.code, 'RESOURCE_EXHAUSTED', `python (got ${py.code} "${py.details}")`);
  t.match(py.details, message);

  // The rejected connection is still fine for other functions.
  const other = await second.unary(GOOD);
  t.equal(other.status, Status.OK, 'the rejected connection still serves another function');
  t.equal(single.calls, 2, 'only the holder reached the endpoint');

  // The first connection goes away: its session ends and the endpoint is free again.
  first.close();
  const until = Date.now() + 5000;
  let c: CallResult = b;
  while (Date.now() < until) {
    c = await second.unary(md);
    if (c.status === Status.OK) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.equal(c.status, Status.OK, `after the first connection closed, the second is served (last: ${c.status} "${c.details}")`);
  t.not(c.initial['nvcf-reqid'], a.initial['nvcf-reqid'], 'a new session');
});

t.test('grpc-timeout running out inside the gateway: DEADLINE_EXCEEDED, promptly, backend cancelled', async (t) => {
  // No client-side deadline: the grpc-timeout header is sent as metadata, so only the gateway
  // can end the call (grpc-js would otherwise end it itself at the same moment).
  const md = { ...AUTH, 'function-id': 'fn-slow', 'grpc-timeout': '300m', 'x-echo-sleep-ms': '5000' };
  const message = /grpc-timeout/;
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());

  const cancelledBefore = slow.cancelled;
  const r = await c.unary(md);
  t.equal(r.status, Status.DEADLINE_EXCEEDED, `grpc-js (got ${r.status} "${r.details}")`);
  t.match(r.details, message, 'the gateway says it was the grpc-timeout');
  t.ok(r.elapsedMs >= 250 && r.elapsedMs < 1500, `ended after ${Math.round(r.elapsedMs)} ms, well before the 5 s sleep`);
  await slow.waitFor(() => slow.cancelled === cancelledBefore + 1 && slow.active === 0, 2000);
  t.pass('the backend saw the cancel');
  const seen = slow.callLog[slow.callLog.length - 1]?.deadlineMs ?? null;
  t.ok(seen !== null && seen > 0 && seen <= 300, `grpc-timeout passed on to the function (${seen} ms left at start)`);
  const next = await c.unary(GOOD);
  t.equal(next.status, Status.OK, 'the connection serves the next call');

  // grpcio turns a grpc-timeout given as metadata into its own deadline as well (and will not
  // send one shorter than --timeout), so here the gateway and the client race to report it; the
  // gateway's part shows as the prompt end and the backend's cancel.
  const py = onePyCall((await runPythonClient(['--target', gw.h2c, ...pyHeaderArgs(md), 'unary'])).calls);
  t.equal(py.code, 'DEADLINE_EXCEEDED', `python (got ${py.code} "${py.details}")`);
  t.match(py.details, /deadline exceeded/i);
  t.ok(py.elapsed_ms < 1500, `python call ended after ${py.elapsed_ms} ms`);
  await slow.waitFor(() => slow.cancelled === cancelledBefore + 2 && slow.active === 0, 2000);

  // With an ordinary client deadline too: the call ends on time and the backend is cancelled.
  const d = await c.unary({ ...AUTH, 'function-id': 'fn-slow', 'x-echo-sleep-ms': '5000' }, {}, { deadlineMs: 300 });
  t.equal(d.status, Status.DEADLINE_EXCEEDED);
  await slow.waitFor(() => slow.cancelled === cancelledBefore + 3 && slow.active === 0, 2000);
});

// --- the wire shape ---------------------------------------------------------------------

t.test('gateway errors are trailers-only gRPC responses', async (t) => {
  const rawRows: Row[] = [
    ...rows,
    {
      name: 'grpc-timeout with a silent endpoint (no response headers yet)',
      md: { ...AUTH, 'function-id': 'fn-silent', 'grpc-timeout': '200m' },
      code: Status.DEADLINE_EXCEEDED,
      message: /grpc-timeout/,
      session: true,
    },
  ];
  for (const row of rawRows) {
    const headers: Record<string, string> = { ':path': ECHO_PATHS.Unary };
    for (const [k, v] of Object.entries(row.md)) headers[k] = typeof v === 'string' ? v : v.toString('base64');
    const res = await rawGrpcCall(gw.h2c, headers, [grpcFrame(encodeEchoRequest({}))]);
    checkTrailersOnly(t, res, row);
  }
});

function checkTrailersOnly(t: TestT, res: RawResponse, row: Row): void {
  const what = row.name;
  t.equal(res.headers[':status'], 200, `${what}: HTTP 200`);
  t.equal(res.headers['content-type'], 'application/grpc', `${what}: content-type`);
  t.equal(res.headers['grpc-status'], String(row.code), `${what}: grpc-status in the single HEADERS block`);
  const message = decodeGrpcMessage(res.headers['grpc-message']);
  if (typeof row.message === 'string') t.equal(message, row.message, `${what}: grpc-message`);
  else t.match(message, row.message, `${what}: grpc-message`);
  t.same(res.trailers, {}, `${what}: no second HEADERS (trailers) block`);
  t.equal(res.data.length, 0, `${what}: no DATA`);
  t.equal(res.rstCode, 0, `${what}: stream ended cleanly (rst ${res.rstCode})`);
  t.equal(res.error, undefined, `${what}: no stream or session error`);
  if (row.session) {
    t.match(res.headers['nvcf-reqid'], SESSION_ID, `${what}: nvcf-reqid in the trailers-only block`);
    t.match(res.headers['set-cookie'], [new RegExp(`^nvcf-request-id=${String(res.headers['nvcf-reqid'])}(;|$)`)], `${what}: Set-Cookie`);
  }
}

t.test('the bystander connection was not disturbed', async (t) => {
  t.equal(bystanderStream.replies, 1);
  t.equal(echo.active, 1, 'its held stream is still open at the function');
  const r = await bystander.unary(GOOD);
  t.equal(r.status, Status.OK, 'and its connection serves new calls');
  const held = await bystanderStream.cancel();
  t.equal(held.status, Status.CANCELLED, 'it ends when its client cancels, not before');
  t.equal(held.replyCount, 1);
  await echo.waitFor(() => echo.active === 0);
});

// --- draining ---------------------------------------------------------------------------

t.test('draining gateway: a new connection\'s call gets UNAVAILABLE after a GOAWAY', async (t) => {
  const dgw: GatewayProcess = await startGateway([...GATEWAY_ARGS, '--drain-timeout', '20s']);
  t.teardown(() => dgw.stop());
  const long = echoClient(dgw.h2c);
  t.teardown(() => long.close());
  const held = await holdStream(long, GOOD, 'long stream open');

  dgw.signal('SIGTERM');
  await dgw.waitForLog((l) => l['msg'] === 'draining');
  const message = /draining/;

  const fresh = echoClient(dgw.h2c);
  t.teardown(() => fresh.close());
  const r = await fresh.unary(GOOD, {}, { deadlineMs: 5000 });
  t.equal(r.status, Status.UNAVAILABLE, `grpc-js new connection (got ${r.status} "${r.details}")`);
  // grpc-js has seen the GOAWAY when it would start the call and reports it as its own
  // "Stream refused by server"; had the stream gone out, the gateway's message would say why.
  t.match(r.details, /draining|refused/);
  t.ok(r.elapsedMs < 2000, `answered at once (${Math.round(r.elapsedMs)} ms), not at the deadline`);

  // grpcio: a deadline of 3 s, so that "never answered" shows up as DEADLINE_EXCEEDED rather than a hang.
  const py = onePyCall((await runPythonClient(['--target', dgw.h2c, '--timeout', '3', ...pyHeaderArgs(GOOD), 'unary'])).calls);
  t.equal(py.code, 'UNAVAILABLE', `python new connection (got ${py.code} "${py.details}" after ${py.elapsed_ms} ms)`);
  t.match(py.details, /draining|GOAWAY|refused|unavailable/i);

  const raw = await rawGrpcCall(dgw.h2c, { ':path': ECHO_PATHS.Unary, ...AUTH, 'function-id': 'fn-echo' }, [grpcFrame(encodeEchoRequest({}))]);
  checkTrailersOnly(t, raw, { name: 'draining', md: GOOD, code: Status.UNAVAILABLE, message });
  t.ok(raw.goaway !== undefined, `a GOAWAY came on the new connection (${JSON.stringify(raw.goaway)})`);
  t.equal(raw.goaway?.errorCode, 0, 'GOAWAY(NO_ERROR)');

  t.equal(echo.active, 1, 'the long stream still runs');
  t.equal(held.replies, 1);
  t.equal((await held.cancel()).status, Status.CANCELLED);
  t.same(await dgw.exited, { code: 0, signal: null }, 'exits 0 once the last stream ended');
  await echo.waitFor(() => echo.active === 0);
});
