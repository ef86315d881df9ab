// Sessions with several gateway replicas on a real API server:
// a sealed session id resumes on another replica and reaches the same pod; tampered,
// foreign, expired ids and ids of a gone endpoint get NOT_FOUND; a pinned endpoint turning
// not-ready sends its clients' connections a GOAWAY, and grpc-js and grpcio clients go on
// over new connections to a ready endpoint without a failed call; --max-connection-age
// spreads 100 long-lived clients over endpoints added after they connected; replicas share
// maxSessionsPerEndpoint between them (replica Leases), so a cap of 1 holds over all of them.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { EchoBackend } from '../helpers/backend.ts';
import type { CallResult, EchoClient, MetadataRecord } from '../helpers/echo-client.ts';
import { metric, SESSION_ID, type GatewayProcess } from '../helpers/gateway.ts';
import {
  backendSlice,
  clients,
  echoBackends,
  functionObject,
  readyEndpointsOf,
  reqid,
  serviceVersion,
  sessionsByEndpoint,
  startKubeEnv,
  Status,
  summary,
} from '../helpers/kube-fixtures.ts';
import { pyHeaderArgs, runPythonClient, type PyCall } from '../helpers/python.ts';
import { sleep, waitFor, waitForAsync } from '../helpers/wait.ts';

const NO_SESSION = 'no existing session found';
// Tokens are resealed after max(linger, 1 s) and live linger + that: 4 s with a 2 s linger.
const LINGER_MS = 2000;
const TOKEN_LIFETIME_MS = 2 * LINGER_MS;

const env = await startKubeEnv(t);
const backend = echoBackends(t);

const keyFile = join(env.work, 'session.key');
writeFileSync(keyFile, `# one secret shared by the replicas\n${randomBytes(32).toString('hex')}\n`);
const foreignKeyFile = join(env.work, 'foreign.key');
writeFileSync(foreignKeyFile, `${randomBytes(32).toString('hex')}\n`);
const withKey = (file: string, ...more: string[]): { args: string[] } => ({ args: ['--session-key-file', file, '--session-linger', `${LINGER_MS}ms`, ...more] });

const function_ = (name: string, functionId: string, service: string) =>
  functionObject(name, { functionId, activeVersion: 'v1', versions: [serviceVersion('v1', service, 'grpc')] });

/** Waits until the status shows `n` ready endpoints for v1, then a little for every replica's watch. */
async function routedWith(name: string, n: number): Promise<void> {
  await env.waitForFunction(name, (fn) => JSON.stringify(readyEndpointsOf(fn)) === JSON.stringify({ v1: n }), `${name}: ${n} ready endpoints`);
  await sleep(300);
}

/** A unary call repeated every `intervalMs` on one client until `untilMs` (Date.now()); each result stamped with its start. */
async function callLoop(client: EchoClient, md: MetadataRecord, untilMs: number, intervalMs: number): Promise<(CallResult & { startedAt: number })[]> {
  const out: (CallResult & { startedAt: number })[] = [];
  while (Date.now() < untilMs) {
    const startedAt = Date.now();
    out.push({ ...(await client.unary(md, {}, { deadlineMs: 10_000 })), startedAt });
    await sleep(intervalMs);
  }
  return out;
}

const closedBy = (gw: GatewayProcess, reason: string): Promise<number> => metric(gw, `fngate_connections_closed_by_gateway_total{reason="${reason}"}`).catch(() => 0);

t.test('a session id resumes on another replica and reaches the same endpoint; bad ids get NOT_FOUND', async (t) => {
  const x = await backend('resume-x');
  const y = await backend('resume-y');
  await env.apply(backendSlice(x, 'resume'), backendSlice(y, 'resume'), function_('resume', 'fn-resume', 'resume'), function_('resume-other', 'fn-resume-other', 'resume'));
  const [gwA, gwB, gwC] = await Promise.all([
    env.startGateway('gw-a', withKey(keyFile)),
    env.startGateway('gw-b', withKey(keyFile)),
    env.startGateway('gw-c', withKey(foreignKeyFile)),
  ]) as [GatewayProcess, GatewayProcess, GatewayProcess];
  // Stopped when done (their replica Leases go with them): the cap test below counts replicas.
  t.teardown(() => Promise.all([gwA, gwB, gwC].map((g) => g.stop())));
  await routedWith('resume', 2);
  const onA = clients(t, gwA, env.key);
  const onB = clients(t, gwB, env.key);
  const onC = clients(t, gwC, env.key);
  const byName = new Map<string, EchoBackend>([['resume-x', x], ['resume-y', y]]);

  const a = onA.client();
  const first = await a.unary(onA.md('fn-resume'));
  t.equal(first.status, Status.OK, summary(first));
  const token = reqid(first) ?? '';
  t.match(token, SESSION_ID);
  const pinned = first.reply?.backend ?? '';
  const otherName = pinned === 'resume-x' ? 'resume-y' : 'resume-x';
  t.notMatch(token, new RegExp(String((byName.get(pinned) as EchoBackend).port)), 'the endpoint is not readable in the id');

  // Replica B holds one session on the pinned endpoint and none on the other, so a new
  // session there goes to the other one: only the id can bring a client to `pinned`.
  const b1 = onB.client();
  const b2 = onB.client();
  const r1 = await b1.unary(onB.md('fn-resume'));
  const r2 = await b2.unary(onB.md('fn-resume'));
  (r1.reply?.backend === pinned ? b2 : b1).close();
  await waitForAsync(async () => Object.values(await sessionsByEndpoint(gwB)).reduce((n, v) => n + v, 0) === 1, 5000, 'replica B down to one session');
  const fresh = await onB.once('fn-resume');
  t.equal(fresh.reply?.backend, otherName, `without an id replica B picks the other endpoint: ${summary(fresh)}`);
  t.ok(r1.reply?.backend !== r2.reply?.backend, 'replica B spread its two sessions');

  const resumed = await onB.once('fn-resume', { 'nvcf-reqid': token });
  t.match([resumed.status, resumed.reply?.backend], [Status.OK, pinned], `resumed on replica B: ${summary(resumed)}`);
  t.equal(reqid(resumed), token, 'the same id comes back');
  const byCookie = await onB.once('fn-resume', { cookie: `theme=dark; nvcf-request-id=${token}` });
  t.match([byCookie.status, byCookie.reply?.backend], [Status.OK, pinned], `resumed by cookie: ${summary(byCookie)}`);
  const py = await runPythonClient(['--target', gwB.h2c, ...pyHeaderArgs(onB.md('fn-resume', { 'nvcf-reqid': token })), 'unary', '--calls', '2']);
  t.match(py.calls.map((c: PyCall) => [c.code, c.backend]), [['OK', pinned], ['OK', pinned]], 'grpcio resumes on replica B too');

  // Same characters, one changed: the AEAD tag no longer matches.
  const at = Math.floor(token.length / 2);
  const tampered = token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
  const bad: [string, Promise<CallResult>][] = [
    ['tampered', onB.once('fn-resume', { 'nvcf-reqid': tampered })],
    ['foreign (replica with another key)', onC.once('fn-resume', { 'nvcf-reqid': token })],
    ['another function', onB.once('fn-resume-other', { 'nvcf-reqid': token })],
    ['not a token', onB.once('fn-resume', { 'nvcf-reqid': '3d1c0e5e-8c55-4a0e-9d0e-1a2b3c4d5e6f' })],
  ];
  for (const [what, call] of bad) {
    const r = await call;
    t.match([r.status, r.details], [Status.NOT_FOUND, NO_SESSION], `${what}: ${summary(r)}`);
  }
  const pyBad = await runPythonClient(['--target', gwB.h2c, ...pyHeaderArgs(onB.md('fn-resume', { 'nvcf-reqid': tampered })), 'unary']);
  t.match(pyBad.calls[0], { code: 'NOT_FOUND', details: NO_SESSION, backend: null }, 'grpcio: tampered id');

  // Expired: every connection holding the session closed, linger and token lifetime over.
  a.close();
  b1.close();
  b2.close();
  await sleep(Math.max(TOKEN_LIFETIME_MS, LINGER_MS) + 1200);
  for (const [name, on] of [['A (issued it)', onA], ['B', onB]] as const) {
    const r = await on.once('fn-resume', { 'nvcf-reqid': token });
    t.match([r.status, r.details], [Status.NOT_FOUND, NO_SESSION], `expired on replica ${name}: ${summary(r)}`);
  }

  // Endpoint gone: a live session's id is refused once its endpoint is not ready.
  const holder = onA.client();
  const live = await holder.unary(onA.md('fn-resume'));
  const liveToken = reqid(live) ?? '';
  const gone = byName.get(live.reply?.backend ?? '') as EchoBackend;
  await env.apply(backendSlice(gone, 'resume', { ready: false }));
  await routedWith('resume', 1);
  await waitForAsync(async () => (await onB.once('fn-resume', { 'nvcf-reqid': liveToken })).status === Status.NOT_FOUND, 10_000, 'replica B refuses the id of a gone endpoint');
  const r = await onB.once('fn-resume', { 'nvcf-reqid': liveToken });
  t.match([r.status, r.details], [Status.NOT_FOUND, NO_SESSION], `endpoint gone: ${summary(r)}`);
  t.equal(await closedBy(gwA, 'endpoint_gone'), 1, 'the connection holding it on replica A got a GOAWAY');
});

t.test('pinned endpoint turns not-ready: GOAWAY, grpc-js and grpcio clients reconnect to a ready endpoint, nothing fails', async (t) => {
  const p = await backend('moving-p');
  const q = await backend('moving-q');
  // Only p is ready at first, so every client below pins there; q joins for the later ones.
  await env.apply(backendSlice(p, 'moving'), backendSlice(q, 'moving', { ready: false }), function_('moving', 'fn-moving', 'moving'));
  const gw = await env.startGateway('gw-moving', withKey(keyFile));
  t.teardown(() => gw.stop());
  await routedWith('moving', 1);
  const on = clients(t, gw, env.key);
  const md = on.md('fn-moving');
  const acceptedBefore = await metric(gw, 'fngate_client_connections_accepted_total');

  // A long stream on the endpoint that goes away: it must run to its end there.
  const streamer = on.client();
  let replies = 0;
  const stream = streamer.serverStream(on.md('fn-moving', { 'x-echo-sleep-ms': '100' }), { count: 40 }, { onReply: () => void replies++ });
  await waitFor(() => replies >= 1, 5000, 'the stream started');

  const until = Date.now() + 6000;
  const python = runPythonClient(['--target', gw.h2c, ...pyHeaderArgs(md), '--timeout', '10', 'loop', '--duration', '6', '--interval-ms', '100']);
  const loops = [callLoop(on.client(), md, until, 100), callLoop(on.client(), md, until, 100)];
  await waitFor(() => p.peers.size === 4, 5000, 'the stream, grpcio and two grpc-js clients pinned to p');
  await env.apply(backendSlice(q, 'moving'));
  await routedWith('moving', 2);
  loops.push(callLoop(on.client(), md, until, 100), callLoop(on.client(), md, until, 100));
  await waitFor(() => q.peers.size === 2, 5000, 'two more grpc-js clients pinned to q (fewest sessions)');
  await sleep(500);

  // Terminating pod: not ready, still serving what it has.
  await env.apply(backendSlice(p, 'moving', { ready: false }));
  await waitForAsync(async () => (await closedBy(gw, 'endpoint_gone')) >= 1, 10_000, 'the gateway applied the change');
  const applied = Date.now();
  const pCallsAtChange = p.calls;

  const results = await Promise.all(loops);
  const py = await python;
  const done = await stream;

  t.equal(done.status, Status.OK, `the open stream on the removed endpoint completed: ${summary(done)}`);
  t.equal(done.replyCount, 40);
  t.same(new Set(done.replies.map((r) => r.backend)), new Set(['moving-p']), 'all of it from the removed endpoint');
  t.equal(p.cancelled, 0, 'nothing cut on the removed endpoint');

  const js = results.flat();
  t.ok(js.length >= 100, `grpc-js calls made (${js.length})`);
  t.same(js.filter((r) => r.status !== Status.OK).map(summary), [], 'no grpc-js call failed');
  t.same(py.calls.filter((c) => c.code !== 'OK').map((c) => `${c.code} ${c.details}`), [], 'no grpcio call failed');
  t.equal(py.calls[0]?.backend, 'moving-p', 'grpcio started on the endpoint that went away');
  const late = js.filter((r) => r.startedAt > applied);
  const pyLate = py.calls.filter((c) => c.started_at_ms > applied);
  t.ok(late.length >= 20 && pyLate.length >= 5, `calls after the change (grpc-js ${late.length}, grpcio ${pyLate.length})`);
  t.same(new Set([...late.map((r) => r.reply?.backend), ...pyLate.map((c) => c.backend)]), new Set(['moving-q']), 'every call after the change reached the ready endpoint');
  // A call each of the three calling clients had already sent may still arrive; nothing more.
  t.ok(p.calls - pCallsAtChange <= 3, `the removed endpoint got no call started after the change (${p.calls - pCallsAtChange} already in flight)`);

  t.equal(await closedBy(gw, 'endpoint_gone'), 4, 'GOAWAY to the four connections pinned there, none to those on q');
  // The streamer made no call after its stream: the other three pinned to p redialled.
  const accepted = (await metric(gw, 'fngate_client_connections_accepted_total')) - acceptedBefore;
  t.equal(accepted, 6 + 3, 'the three clients that went on calling reconnected once each');
});

t.test('--max-connection-age spreads 100 long-lived clients over endpoints added later, within two ages', async (t) => {
  const AGE_MS = 3000;
  const s1 = await backend('spread-1');
  await env.apply(backendSlice(s1, 'spread'), function_('spread', 'fn-spread', 'spread'));
  const gw = await env.startGateway('gw-age', withKey(keyFile, '--max-connection-age', `${AGE_MS}ms`));
  t.teardown(() => gw.stop());
  await routedWith('spread', 1);
  const on = clients(t, gw, env.key);
  const md = on.md('fn-spread');
  const until = Date.now() + 60_000;
  const latest: (string | undefined)[] = [];
  const failures: string[] = [];
  let stop = false;
  const loops = Array.from({ length: 100 }, async (_, i) => {
    const c = on.client();
    while (!stop && Date.now() < until) {
      const r = await c.unary(md, {}, { deadlineMs: 10_000 });
      if (r.status !== Status.OK) failures.push(summary(r));
      latest[i] = r.reply?.backend;
      await sleep(300);
    }
  });
  await waitFor(() => latest.filter((b) => b === 'spread-1').length === 100, 10_000, 'all 100 clients on the only endpoint');

  const s2 = await backend('spread-2');
  const s3 = await backend('spread-3');
  await env.apply(backendSlice(s2, 'spread'), backendSlice(s3, 'spread'));
  await routedWith('spread', 3);
  const added = Date.now();
  const counts = (): Record<string, number> => {
    const out: Record<string, number> = { 'spread-1': 0, 'spread-2': 0, 'spread-3': 0 };
    for (const b of latest) if (b !== undefined) out[b] = (out[b] ?? 0) + 1;
    return out;
  };
  // Two ages with the jitter's upper end, plus a call interval.
  await waitFor(() => Object.values(counts()).every((n) => n >= 25), 2 * AGE_MS * 1.1 + 600, `spread within two ages: ${JSON.stringify(counts())}`).catch(() => {});
  const spread = counts();
  const took = Date.now() - added;
  stop = true;
  await Promise.all(loops);
  t.ok(Object.values(spread).every((n) => n >= 25), `each endpoint serves at least a quarter of the clients: ${JSON.stringify(spread)}`);
  t.ok(took <= 2 * AGE_MS * 1.1 + 600, `within two ages of the endpoints appearing (${took} ms)`);
  t.same(failures, [], 'no call failed across the reconnections');
  t.ok((await closedBy(gw, 'max_age')) >= 100, 'every connection reached its age and got a GOAWAY');
  t.equal(s1.cancelled + s2.cancelled + s3.cancelled, 0, 'no call was cut');
});

t.test('maxSessionsPerEndpoint 1 over two replicas: one session per endpoint in all; a replica leaving hands its share on', async (t) => {
  const ends = await Promise.all(['cap-1', 'cap-2', 'cap-3'].map((name) => backend(name)));
  await env.apply(...ends.map((b) => backendSlice(b, 'capped')), functionObject('capped', { functionId: 'fn-capped', activeVersion: 'v1', maxSessionsPerEndpoint: 1, versions: [serviceVersion('v1', 'capped', 'grpc')] }));
  const [gwA, gwB] = (await Promise.all([env.startGateway('gw-cap-a', withKey(keyFile)), env.startGateway('gw-cap-b', withKey(keyFile))])) as [GatewayProcess, GatewayProcess];
  t.teardown(() => Promise.all([gwA, gwB].map((g) => g.stop())));
  await routedWith('capped', 3);
  const sharers = (gw: GatewayProcess): Promise<number> => metric(gw, 'fngate_session_cap_sharers');
  await waitForAsync(async () => (await sharers(gwA)) === 2 && (await sharers(gwB)) === 2, 10_000, 'both replicas see two gateway processes');

  /** New connections to `gw`, each kept open, until one is refused; the backends they reached. */
  const fill = async (gw: GatewayProcess): Promise<{ got: string[]; refusal: CallResult }> => {
    const on = clients(t, gw, env.key);
    const got: string[] = [];
    for (;;) {
      const r = await on.client().unary(on.md('fn-capped'), {}, { deadlineMs: 10_000 });
      if (r.status !== Status.OK) return { got, refusal: r };
      got.push(r.reply?.backend ?? '?');
    }
  };
  const a = await fill(gwA);
  const b = await fill(gwB);
  t.same([...a.got, ...b.got].sort(), ['cap-1', 'cap-2', 'cap-3'], `each endpoint holds one session over both replicas (A: ${a.got}, B: ${b.got})`);
  t.same(ends.map((e) => e.peers.size), [1, 1, 1], 'each function pod sees one client session');
  for (const { refusal } of [a, b]) {
    t.match([refusal.status, refusal.details], [Status.RESOURCE_EXHAUSTED, /this gateway's share of its 1 sessions \(2 gateway processes share the cap\)/], summary(refusal));
  }

  // B shuts down: its sessions end, its replica Lease is deleted, A takes the whole cap.
  await gwB.stop();
  await waitForAsync(async () => (await sharers(gwA)) === 1, 10_000, 'replica A sees itself alone');
  const more = await fill(gwA);
  t.same([...a.got, ...more.got].sort(), ['cap-1', 'cap-2', 'cap-3'], `A fills the endpoints B held (${more.got})`);
  t.match([more.refusal.status, more.refusal.details], [Status.RESOURCE_EXHAUSTED, /already holds 1 sessions$/], summary(more.refusal));
});
