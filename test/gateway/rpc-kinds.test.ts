// All four RPC kinds through the real gateway, with grpc-js and with Python grpcio:
// payload accounting, request metadata passed on (custom, -bin, traceparent, grpc-timeout;
// authorization replaced by fngate-subject), response metadata and function-chosen statuses
// passed back unchanged, the session id (nvcf-reqid + Set-Cookie), client cancel reaching the
// function, and bidi interleaving (docs/reference.md, Clients).
import t from 'tap';
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { INITIAL_BIN, TRAILER_BIN, startEchoBackend } from '../helpers/backend.ts';
import type { CallRecord, EchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import type { CallResult, EchoClient, MetadataRecord } from '../helpers/echo-client.ts';
import { patternBytes } from '../helpers/echo-proto.ts';
import type { EchoReply, EchoRequest } from '../helpers/echo-proto.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { startGateway } from '../helpers/gateway.ts';
import type { GatewayProcess } from '../helpers/gateway.ts';
import { pyHeaderArgs, runPythonClient } from '../helpers/python.ts';
import type { PyCall } from '../helpers/python.ts';

const FUNCTION_ID = 'echo-rpc-kinds';
const KEY_NAME = 'rpc-kinds-client';
const KEY = randomKey();
const AUTH = `Bearer ${KEY}`;

/** Passed through unchanged: a custom text key, a binary key (0x00, 0xff, CR/LF, odd length), traceparent. */
const CUSTOM_TEXT = 'custom value: with spaces, commas; and = signs';
const CUSTOM_BIN = Buffer.from([0x00, 0x01, 0xfe, 0xff, 0x80, 0x0d, 0x0a]);
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
/** A function-chosen error: "%" and things that look like percent-escapes must survive grpc-message encoding. */
const ERROR_MESSAGE = 'precondition failed: 100% sure, %41 stays %41, "quotes" & (parens)';

const UUIDISH = /^[A-Za-z0-9._-]{8,}$/;

// --- the gateway and its one function -------------------------------------------------

const dir = t.testdir({});
const backend: EchoBackend = await startEchoBackend({ name: 'rpc-b1' });
writeFunctionsDir(join(dir, 'functions'), [
  { name: 'echo', functionId: FUNCTION_ID, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [backend.address] }] },
]);
writeKeysFile(join(dir, 'keys.yaml'), [{ name: KEY_NAME, key: KEY, functions: [FUNCTION_ID] }]);
const gw: GatewayProcess = await startGateway([
  '--functions', join(dir, 'functions'),
  '--api-keys', join(dir, 'keys.yaml'),
  '--idle-timeout', '20s',
  '--session-linger', '2s',
  '--drain-timeout', '5s',
]);
let gatewayExit: string | undefined;
void gw.exited.then((e) => {
  gatewayExit = `code ${e.code} signal ${e.signal}`;
});
t.teardown(async () => {
  await gw.stop();
  await backend.stop(1000);
});

/** Enough of a tap Test to register cleanups. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

function client(t: Teardown): EchoClient {
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  return c;
}

/** Invocation metadata plus `extra`; every call carries a unique x-test-id to find it in the backend's log. */
function md(id: string, extra: MetadataRecord = {}): MetadataRecord {
  return { authorization: AUTH, 'function-id': FUNCTION_ID, 'x-test-id': id, ...extra };
}

/** The metadata whose passing-on is checked, including a forged fngate-subject. */
const PASSTHROUGH: MetadataRecord = {
  'x-custom': CUSTOM_TEXT,
  'x-custom-bin': CUSTOM_BIN,
  traceparent: TRACEPARENT,
  'fngate-subject': 'forged-admin',
};

const pyHeaders = (id: string, extra: Record<string, string> = {}): string[] =>
  pyHeaderArgs({ authorization: AUTH, 'function-id': FUNCTION_ID, 'x-test-id': id, ...extra });
const PY_PASSTHROUGH: Record<string, string> = {
  'x-custom': CUSTOM_TEXT,
  'x-custom-bin': CUSTOM_BIN.toString('base64'),
  traceparent: TRACEPARENT,
  'fngate-subject': 'forged-admin',
};

let seq = 0;
const testId = (label: string): string => `${label}-${++seq}-${randomBytes(3).toString('hex')}`;

/** The backend's record of the call(s) tagged `id`. */
function recordsOf(id: string): CallRecord[] {
  return backend.callLog.filter((r) => r.metadata.split('\n').includes(`x-test-id: ${id}`));
}

/** Checks what the function saw of the request metadata. */
function checkFunctionSaw(t: Test, metadata: string | null | undefined, label: string): void {
  const lines = (metadata ?? '').split('\n');
  t.ok(lines.includes(`x-custom: ${CUSTOM_TEXT}`), `${label}: custom key passed on`);
  t.ok(lines.includes(`x-custom-bin: ${CUSTOM_BIN.toString('base64')}`), `${label}: -bin key passed on with its exact bytes`);
  t.ok(lines.includes(`traceparent: ${TRACEPARENT}`), `${label}: traceparent passed on`);
  t.same(
    lines.filter((l) => l.startsWith('fngate-subject:')),
    [`fngate-subject: ${KEY_NAME}`],
    `${label}: fngate-subject is the key name (the client's forged one is dropped)`,
  );
  t.same(lines.filter((l) => l.startsWith('authorization')), [], `${label}: authorization not passed on`);
  t.notOk((metadata ?? '').includes(KEY), `${label}: the API key appears nowhere in the function's metadata`);
  t.ok(lines.includes(`function-id: ${FUNCTION_ID}`), `${label}: function-id passed on`);
}

/**
 * The function saw the client's grpc-timeout: a deadline of about `timeoutMs` (not null, and
 * not a gateway default). grpcio sends the timeout rounded up ("5S") and the backend measures
 * on its own clock, so a few ms over is possible.
 */
function sawTimeout(t: Test, deadlineMs: number | null | undefined, timeoutMs: number, label: string): void {
  const d = deadlineMs ?? -1;
  t.ok(d > timeoutMs - 2000 && d <= timeoutMs + 100, `${label}: grpc-timeout passed on (function saw ${deadlineMs} ms of ${timeoutMs})`);
}

/** The session id a response carries (nvcf-reqid), after checking the cookie names the same id. */
function sessionOf(t: Test, headers: Record<string, string | Buffer>, label: string): string {
  const id = headers['nvcf-reqid'];
  t.type(id, 'string', `${label}: nvcf-reqid present`);
  const text = typeof id === 'string' ? id : '';
  t.match(text, UUIDISH, `${label}: nvcf-reqid looks like an id`);
  const cookies = String(headers['set-cookie'] ?? '').split(/,\s*(?=[^;=\s]+=)/);
  const ours = cookies.filter((c) => c.startsWith('nvcf-request-id='));
  t.equal(ours.length, 1, `${label}: one Set-Cookie nvcf-request-id (${String(headers['set-cookie'])})`);
  t.equal(ours[0]?.split(';')[0], `nvcf-request-id=${text}`, `${label}: the cookie carries the same id`);
  return text;
}

/** The function's response metadata, unchanged: x-initial(-bin) in the headers, x-trailer(-bin) in the trailers. */
function checkResponseMetadata(t: Test, r: CallResult, label: string): void {
  t.equal(r.initial['x-initial'], 'hello', `${label}: x-initial`);
  t.same(r.initial['x-initial-bin'], INITIAL_BIN, `${label}: x-initial-bin exact bytes`);
  t.equal(r.trailing['x-trailer'], 'bye', `${label}: x-trailer`);
  t.same(r.trailing['x-trailer-bin'], TRAILER_BIN, `${label}: x-trailer-bin exact bytes`);
}

function checkPyResponseMetadata(t: Test, c: PyCall | undefined, label: string): void {
  t.equal(c?.initial_metadata['x-initial'], 'hello', `${label}: x-initial`);
  t.equal(c?.initial_metadata['x-initial-bin'], INITIAL_BIN.toString('base64'), `${label}: x-initial-bin exact bytes`);
  t.equal(c?.trailing_metadata['x-trailer'], 'bye', `${label}: x-trailer`);
  t.equal(c?.trailing_metadata['x-trailer-bin'], TRAILER_BIN.toString('base64'), `${label}: x-trailer-bin exact bytes`);
}

const requests = (sizes: number[]): EchoRequest[] => sizes.map((n) => ({ payload: patternBytes(n) }));
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

async function* slowRequests(sizes: number[]): AsyncGenerator<EchoRequest> {
  for (const n of sizes) {
    yield { payload: patternBytes(n) };
    await new Promise((resolve) => setImmediate(resolve));
  }
}

// --- grpc-js --------------------------------------------------------------------------

t.test('grpc-js: four RPC kinds, payloads, metadata both ways, one session id per channel', async (t) => {
  const c = client(t);
  const ids: string[] = [];

  const uId = testId('js-unary');
  const u = await c.unary(md(uId, { ...PASSTHROUGH, 'x-echo-echo-payload': '1' }), { payload: patternBytes(100_000) }, { deadlineMs: 5000 });
  t.match(u, { status: 0, replyCount: 1 });
  t.match(u.reply, { backend: 'rpc-b1', received_bytes: 100_000, received_messages: 1 });
  t.same(u.reply?.payload, patternBytes(100_000), 'unary: payload echoed byte for byte');
  checkFunctionSaw(t, u.reply?.metadata, 'unary');
  checkResponseMetadata(t, u, 'unary');
  ids.push(sessionOf(t, u.initial, 'unary'));
  const uRec = recordsOf(uId);
  t.equal(uRec.length, 1);
  sawTimeout(t, uRec[0]?.deadlineMs, 5000, 'unary');

  const csId = testId('js-client-stream');
  const csSizes = [1, 1000, 65_536, 70_000, 0, 5];
  const cs = await c.clientStream(md(csId, PASSTHROUGH), slowRequests(csSizes));
  t.match(cs, { status: 0, replyCount: 1 });
  t.match(cs.reply, { backend: 'rpc-b1', received_bytes: sum(csSizes), received_messages: csSizes.length });
  checkFunctionSaw(t, cs.reply?.metadata, 'client-stream');
  checkResponseMetadata(t, cs, 'client-stream');
  ids.push(sessionOf(t, cs.initial, 'client-stream'));
  t.match(recordsOf(csId), [{ method: 'ClientStream', deadlineMs: null }], 'client-stream: no deadline invented');

  const ssId = testId('js-server-stream');
  const ss = await c.serverStream(md(ssId, PASSTHROUGH), { count: 7, reply_size: 40_000 });
  t.match(ss, { status: 0, replyCount: 7, replyBytes: 7 * 40_000 });
  t.same(ss.replies.map((r) => r.received_messages), [1, 2, 3, 4, 5, 6, 7], 'server-stream: replies in order');
  t.ok(ss.replies.every((r) => r.payload.equals(patternBytes(40_000))), 'server-stream: every reply payload intact');
  checkFunctionSaw(t, ss.reply?.metadata, 'server-stream');
  checkResponseMetadata(t, ss, 'server-stream');
  ids.push(sessionOf(t, ss.initial, 'server-stream'));
  t.match(recordsOf(ssId), [{ method: 'ServerStream', deadlineMs: null }]);

  const biId = testId('js-bidi');
  const biSizes = [3, 0, 20_000, 7];
  const bi = await c.bidi(md(biId, { ...PASSTHROUGH, 'x-echo-echo-payload': '1' }), requests(biSizes), { deadlineMs: 8000 });
  t.match(bi, { status: 0, replyCount: 4 });
  t.same(
    bi.replies.map((r) => [r.received_bytes, r.received_messages]),
    biSizes.map((n, i) => [n, i + 1]),
    'bidi: one reply per request, sizes and running count',
  );
  t.same(bi.replies.map((r) => r.payload), biSizes.map((n) => patternBytes(n)), 'bidi: payloads echoed');
  checkFunctionSaw(t, bi.reply?.metadata, 'bidi');
  checkResponseMetadata(t, bi, 'bidi');
  ids.push(sessionOf(t, bi.initial, 'bidi'));
  sawTimeout(t, recordsOf(biId)[0]?.deadlineMs, 8000, 'bidi');

  t.equal(new Set(ids).size, 1, `one session id for every call of the channel: ${ids.join(' ')}`);
  const again = await c.unary(md(testId('js-again')));
  t.equal(again.status, 0);
  t.equal(sessionOf(t, again.initial, 'later unary'), ids[0], 'a later call on the channel: the same id');

  const other = client(t);
  const o = await other.unary(md(testId('js-other')));
  t.equal(o.status, 0);
  t.not(sessionOf(t, o.initial, 'other channel'), ids[0], 'another channel is another session');
});

t.test('grpc-js: function-chosen statuses, messages and trailers pass back unchanged, for each kind', async (t) => {
  const c = client(t);
  const ids: string[] = [];
  const fail = (extra: MetadataRecord = {}): MetadataRecord => md(testId('js-status'), { 'x-echo-status': '9', 'x-echo-message': ERROR_MESSAGE, ...extra });
  const trailersOnly = (): MetadataRecord => fail({ 'x-echo-trailers-only': '1' });

  // After the response headers (and, for streams, after replies).
  const results: Array<[string, CallResult, number]> = [
    ['unary', await c.unary(fail(), { payload: patternBytes(10) }), 0],
    ['client-stream', await c.clientStream(fail(), requests([10, 20, 30])), 0],
    ['server-stream', await c.serverStream(fail(), { count: 3, reply_size: 100 }), 3],
    ['bidi', await c.bidi(fail(), requests([1, 2, 3])), 3],
  ];
  for (const [kind, r, replies] of results) {
    t.equal(r.status, 9, `${kind}: status 9`);
    t.equal(r.details, ERROR_MESSAGE, `${kind}: message unchanged`);
    t.equal(r.replyCount, replies, `${kind}: ${replies} replies before the status`);
    checkResponseMetadata(t, r, `${kind} (error)`);
    ids.push(sessionOf(t, r.initial, `${kind} (error)`));
  }
  t.same(results[2]?.[1].replies.map((r) => r.payload.length), [100, 100, 100]);

  // Trailers-only: the session id and cookie are in the trailers.
  const only: Array<[string, CallResult]> = [
    ['unary', await c.unary(trailersOnly())],
    ['client-stream', await c.clientStream(trailersOnly(), requests([10]))],
    ['server-stream', await c.serverStream(trailersOnly(), { count: 3 })],
    ['bidi', await c.bidi(trailersOnly(), requests([1]))],
  ];
  for (const [kind, r] of only) {
    t.equal(r.status, 9, `${kind} trailers-only: status 9`);
    t.equal(r.details, ERROR_MESSAGE, `${kind} trailers-only: message unchanged`);
    t.equal(r.replyCount, 0);
    t.same(r.initial, {}, `${kind} trailers-only: no response headers`);
    t.equal(r.trailing['x-trailer'], 'bye', `${kind} trailers-only: x-trailer`);
    t.same(r.trailing['x-trailer-bin'], TRAILER_BIN, `${kind} trailers-only: x-trailer-bin exact bytes`);
    ids.push(sessionOf(t, r.trailing, `${kind} trailers-only`));
  }

  // Every status code, chosen by the function (also the ones the gateway itself uses).
  for (let code = 1; code <= 16; code++) {
    const message = `function says ${code}`;
    const r = await c.unary(md(testId('js-code'), { 'x-echo-status': String(code), 'x-echo-message': message }));
    t.same([r.status, r.details], [code, message], `status ${code} after headers`);
    const o = await c.unary(md(testId('js-code'), { 'x-echo-status': String(code), 'x-echo-message': message, 'x-echo-trailers-only': '1' }));
    t.same([o.status, o.details], [code, message], `status ${code} trailers-only`);
    ids.push(sessionOf(t, r.initial, `status ${code}`), sessionOf(t, o.trailing, `status ${code} trailers-only`));
  }
  // An OK trailers-only response (no replies) is passed back as it is too.
  const ok = await c.bidi(md(testId('js-ok-only'), { 'x-echo-trailers-only': '1' }), requests([1]));
  t.match(ok, { status: 0, replyCount: 0, initial: {} });
  ids.push(sessionOf(t, ok.trailing, 'OK trailers-only'));

  t.equal(new Set(ids).size, 1, 'errors and trailers-only responses carry the channel\'s one session id');
  await backend.waitFor(() => backend.active === 0);
});

t.test('grpc-js: a client cancel reaches the function; the gateway stays healthy', async (t) => {
  const c = client(t);
  const first = await c.unary(md(testId('js-before-cancel')));
  t.equal(first.status, 0);
  const session = sessionOf(t, first.initial, 'before cancel');
  await backend.waitFor(() => backend.active === 0);

  // A server stream held open by the function after its replies.
  const cancelledBefore = backend.cancelled;
  const abort = new AbortController();
  const heldId = testId('js-held');
  const held = await c.serverStream(md(heldId, { 'x-echo-hold': '1' }), { count: 2, reply_size: 10 }, {
    signal: abort.signal,
    onReply: (_r, i) => {
      if (i === 1) abort.abort();
    },
  });
  t.match(held, { status: 1, replyCount: 2 }, 'the client sees its own cancel');
  await backend.waitFor(() => backend.cancelled === cancelledBefore + 1 && backend.active === 0);
  t.pass('held server stream: the function saw the cancel');

  // A server stream still sending (10000 replies, paced): cancelled after 5.
  const abort2 = new AbortController();
  const busyId = testId('js-busy');
  const busy = await c.serverStream(md(busyId, { 'x-echo-sleep-ms': '5' }), { count: 10_000, reply_size: 1000 }, {
    signal: abort2.signal,
    onReply: (_r, i) => {
      if (i === 4) abort2.abort();
    },
  });
  t.equal(busy.status, 1);
  t.ok(busy.replyCount >= 5 && busy.replyCount < 10_000, `cancelled mid-stream after ${busy.replyCount} replies`);
  await backend.waitFor(() => backend.cancelled === cancelledBefore + 2 && backend.active === 0);
  t.pass('sending server stream: the function saw the cancel');

  // A bidi stream whose client never half-closes, cancelled after the first reply while the
  // function works on the second request. (Cancelled while the function waits for a request,
  // the helper backend's for-await loop just ends and the call does not count as cancelled,
  // even without the gateway; so the function is kept busy here.)
  const abort3 = new AbortController();
  async function* endless(): AsyncGenerator<EchoRequest> {
    yield { payload: patternBytes(8) };
    yield { payload: patternBytes(8) };
    await new Promise<void>((resolve) => abort3.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  const bi = await c.bidi(md(testId('js-bidi-cancel'), { 'x-echo-sleep-ms': '300' }), endless(), { signal: abort3.signal, onReply: () => abort3.abort() });
  t.match(bi, { status: 1, replyCount: 1 });
  await backend.waitFor(() => backend.cancelled === cancelledBefore + 3 && backend.active === 0);
  t.pass('bidi: the function saw the cancel');

  // Healthy: the same channel goes on in the same session; a new channel works; admin says ready.
  const after = await c.unary(md(testId('js-after-cancel')), { payload: patternBytes(1000) });
  t.match(after, { status: 0, reply: { received_bytes: 1000 } });
  t.equal(sessionOf(t, after.initial, 'after cancel'), session, 'same session after the cancels');
  const fresh = client(t);
  t.match(await fresh.serverStream(md(testId('js-fresh')), { count: 3, reply_size: 10 }), { status: 0, replyCount: 3 });
  for (const path of ['/healthz', '/readyz']) {
    const res = await fetch(`http://${gw.admin}${path}`);
    t.equal(res.status, 200, `admin ${path}`);
    await res.arrayBuffer();
  }
  t.equal(gatewayExit, undefined, 'the gateway process is still running');
  await backend.waitFor(() => backend.active === 0);
  t.equal(backend.cancelled, cancelledBefore + 3, 'no other call was cancelled');
});

t.test('grpc-js: bidi interleaving, each reply arrives before the next request is sent', async (t) => {
  const c = client(t);
  const events: string[] = [];
  let replies = 0;
  let wake: () => void = () => {};
  const sizes = [5, 1, 70_000, 0, 12];
  async function* pingPong(): AsyncGenerator<EchoRequest> {
    for (let i = 0; i < sizes.length; i++) {
      events.push(`send ${i}`);
      yield { payload: patternBytes(sizes[i] ?? 0) };
      // Waits for this request's reply; a gateway that held replies until the client
      // half-closed would hang here until the deadline.
      while (replies <= i) await new Promise<void>((resolve) => (wake = resolve));
    }
    events.push('half-close');
  }
  const r = await c.bidi(md(testId('js-pingpong'), { 'x-echo-echo-payload': '1' }), pingPong(), {
    deadlineMs: 10_000,
    onReply: (reply: EchoReply, i: number) => {
      events.push(`reply ${i} (${reply.received_bytes})`);
      replies++;
      wake();
    },
  });
  t.match(r, { status: 0, replyCount: sizes.length });
  t.same(events, [...sizes.flatMap((n, i) => [`send ${i}`, `reply ${i} (${n})`]), 'half-close']);
  t.same(r.replies.map((x) => x.payload), sizes.map((n) => patternBytes(n)));
  checkResponseMetadata(t, r, 'ping-pong');
});

// --- Python grpcio --------------------------------------------------------------------

t.test('python: four RPC kinds, payloads, metadata both ways, one session id per channel', async (t) => {
  const target = ['--target', gw.h2c];
  const ids = { unary: testId('py-unary'), cs: testId('py-cs'), ss: testId('py-ss'), bidi: testId('py-bidi') };
  const [unary, cs, ss, bidi] = await Promise.all([
    runPythonClient([...target, ...pyHeaders(ids.unary, PY_PASSTHROUGH), '--timeout', '5', 'unary', '--calls', '3', '--payload-size', '100000']),
    runPythonClient([...target, ...pyHeaders(ids.cs, PY_PASSTHROUGH), 'client-stream', '--total-bytes', String(1_000_000), '--chunk-size', '65536']),
    runPythonClient([...target, ...pyHeaders(ids.ss, PY_PASSTHROUGH), 'server-stream', '--count', '6', '--reply-size', '50000']),
    runPythonClient([...target, ...pyHeaders(ids.bidi, PY_PASSTHROUGH), '--timeout', '20', 'bidi', '--count', '5', '--payload-size', '300']),
  ]);

  t.equal(unary.calls.length, 3);
  for (const [i, call] of unary.calls.entries()) {
    t.match(call, { code: 'OK', code_value: 0, details: '', backend: 'rpc-b1', received_bytes: 100_000, received_messages: 1, replies: 1 }, `unary call ${i}`);
    checkFunctionSaw(t, call.backend_metadata, `py unary ${i}`);
    checkPyResponseMetadata(t, call, `py unary ${i}`);
  }
  const unaryIds = unary.calls.map((c, i) => sessionOf(t, c.initial_metadata, `py unary ${i}`));
  t.equal(new Set(unaryIds).size, 1, `one session id for the channel's calls: ${unaryIds.join(' ')}`);
  const unaryRecords = recordsOf(ids.unary);
  t.equal(unaryRecords.length, 3);
  for (const r of unaryRecords) {
    sawTimeout(t, r.deadlineMs, 5000, 'py unary');
  }

  const csCall = cs.calls[0];
  t.match(csCall, { code: 'OK', backend: 'rpc-b1', received_bytes: 1_000_000, received_messages: Math.ceil(1_000_000 / 65536), replies: 1 });
  checkFunctionSaw(t, csCall?.backend_metadata, 'py client-stream');
  checkPyResponseMetadata(t, csCall, 'py client-stream');
  sessionOf(t, csCall?.initial_metadata ?? {}, 'py client-stream');
  t.match(recordsOf(ids.cs), [{ method: 'ClientStream', deadlineMs: null }]);

  const ssCall = ss.calls[0];
  t.match(ssCall, { code: 'OK', backend: 'rpc-b1', received_messages: 1, replies: 6, reply_bytes: 6 * 50_000 });
  checkFunctionSaw(t, ssCall?.backend_metadata, 'py server-stream');
  checkPyResponseMetadata(t, ssCall, 'py server-stream');
  sessionOf(t, ssCall?.initial_metadata ?? {}, 'py server-stream');

  // Ping-pong (not --pipeline): each request is sent after the previous reply arrived.
  const biCall = bidi.calls[0];
  t.match(biCall, { code: 'OK', backend: 'rpc-b1', received_bytes: 300, received_messages: 1, replies: 5 });
  checkFunctionSaw(t, biCall?.backend_metadata, 'py bidi');
  checkPyResponseMetadata(t, biCall, 'py bidi');
  sessionOf(t, biCall?.initial_metadata ?? {}, 'py bidi');
  sawTimeout(t, recordsOf(ids.bidi)[0]?.deadlineMs, 20_000, 'py bidi');

  const channelIds = [unaryIds[0], csCall?.initial_metadata['nvcf-reqid'], ssCall?.initial_metadata['nvcf-reqid'], biCall?.initial_metadata['nvcf-reqid']];
  t.equal(new Set(channelIds).size, 4, 'each Python channel (connection) is its own session');
  await backend.waitFor(() => backend.active === 0);
});

t.test('python: function-chosen statuses, messages and trailers pass back unchanged, for each kind', async (t) => {
  const target = ['--target', gw.h2c];
  const status = { 'x-echo-status': '9', 'x-echo-message': ERROR_MESSAGE };
  const only = { ...status, 'x-echo-trailers-only': '1' };
  const modes: Array<[string, string[], number]> = [
    ['unary', ['unary', '--calls', '2', '--payload-size', '10'], 0],
    ['client-stream', ['client-stream', '--total-bytes', '3000', '--chunk-size', '1000'], 0],
    ['server-stream', ['server-stream', '--count', '3', '--reply-size', '100'], 3],
    ['bidi', ['bidi', '--count', '3', '--payload-size', '10', '--pipeline'], 3],
  ];
  const runs = await Promise.all(
    modes.flatMap(([kind, args]) => [
      runPythonClient([...target, ...pyHeaders(testId(`py-${kind}-status`), status), ...args]),
      runPythonClient([...target, ...pyHeaders(testId(`py-${kind}-only`), only), ...args]),
    ]),
  );
  for (const [i, [kind, , replies]] of modes.entries()) {
    const after = runs[2 * i]?.calls ?? [];
    const trailersOnly = runs[2 * i + 1]?.calls ?? [];
    t.ok(after.length >= 1 && trailersOnly.length === after.length, `${kind}: ran`);
    const afterIds: string[] = [];
    for (const call of after) {
      t.match(call, { code: 'FAILED_PRECONDITION', code_value: 9, replies }, `${kind}: status 9 after ${replies} replies`);
      t.equal(call.details, ERROR_MESSAGE, `${kind}: message unchanged`);
      checkPyResponseMetadata(t, call, `${kind} (error)`);
      afterIds.push(sessionOf(t, call.initial_metadata, `${kind} (error)`));
    }
    const onlyIds: string[] = [];
    for (const call of trailersOnly) {
      t.match(call, { code: 'FAILED_PRECONDITION', code_value: 9, replies: 0 }, `${kind} trailers-only: status 9`);
      t.equal(call.details, ERROR_MESSAGE, `${kind} trailers-only: message unchanged`);
      t.same(call.initial_metadata, {}, `${kind} trailers-only: no response headers`);
      t.equal(call.trailing_metadata['x-trailer'], 'bye');
      t.equal(call.trailing_metadata['x-trailer-bin'], TRAILER_BIN.toString('base64'));
      onlyIds.push(sessionOf(t, call.trailing_metadata, `${kind} trailers-only`));
    }
    t.equal(new Set(afterIds).size, 1, `${kind}: one id per channel`);
    t.equal(new Set(onlyIds).size, 1, `${kind} trailers-only: one id per channel`);
  }
  await backend.waitFor(() => backend.active === 0);
});

t.test('the gateway logged no errors', async (t) => {
  const errors = gw.logLines().filter((l) => l['level'] === 'error');
  t.same(errors, [], 'no error-level log lines');
  t.equal(gatewayExit, undefined);
});
