// JWT verification against real JWKS (HTTP served by the test, and a file), real RS256,
// ES256 and EdDSA tokens made with jose, and a table of bad tokens. Cache expiry, the refetch
// cooldown, back-off, fetch timeout and background refresh run on a manual clock: the tests
// say what happens before and after each deadline, never how long anything took.
import t, { type Test } from 'tap';
import { KeyObject, sign as cryptoSign } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { createJwtVerifier, functionsClaim, MAX_TOKEN_LENGTH, type JwtVerifier } from '../../lib/auth/jwt.ts';
import { Authenticator, mayInvoke, type Principal } from '../../lib/auth/authenticator.ts';
import { Registry } from '../../lib/registry/registry.ts';
import { Status, isGrpcError, type GrpcError } from '../../lib/grpc/status.ts';
import { writeFileAtomic } from '../helpers/files.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { waitFor, waitForAsync } from '../helpers/wait.ts';
import { captureLog } from '../sources/changes.ts';

const ISS = 'https://issuer.test/';
const AUD = 'fngate';

interface TestKey {
  readonly alg: string;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly jwk: JWK;
}

async function makeKey(alg: 'RS256' | 'ES256' | 'EdDSA', kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, jwk };
}

interface Claims {
  sub?: unknown;
  iss?: unknown;
  aud?: unknown;
  exp?: unknown;
  nbf?: unknown;
  functions?: unknown;
  [claim: string]: unknown;
}

const now = (): number => Math.floor(Date.now() / 1000);

/** A valid token for `key` unless `claims` (undefined = drop the claim) or `header` say otherwise. */
async function sign(key: TestKey, claims: Claims = {}, header: Record<string, unknown> = {}): Promise<string> {
  const payload: Record<string, unknown> = { sub: 'alice', iss: ISS, aud: AUD, iat: now(), exp: now() + 3600, functions: ['fn-a', 'fn-b'], ...claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey);
}

/** Signs without jose's checks (for headers jose refuses to produce). */
function signRs256(key: TestKey, header: Record<string, unknown>, payload: unknown): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${cryptoSign('sha256', Buffer.from(input), KeyObject.from(key.privateKey)).toString('base64url')}`;
}

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const segments = (token: string): [string, string, string] => token.split('.') as [string, string, string];

// ---- a JWKS endpoint ----

interface JwksServer {
  readonly url: string;
  keys: JWK[];
  hits: number;
  /** 'hang' never answers; 'error' answers 500. */
  mode: 'ok' | 'hang' | 'error';
  close(): Promise<void>;
}

async function jwksServer(keys: JWK[]): Promise<JwksServer> {
  const hanging: ServerResponse[] = [];
  const state: JwksServer = {
    url: '',
    keys,
    hits: 0,
    mode: 'ok',
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    state.hits++;
    if (state.mode === 'hang') {
      hanging.push(res);
      return;
    }
    if (state.mode === 'error') {
      res.writeHead(500).end('down');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(state, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json` });
}

// ---- assertions ----

async function outcome(v: JwtVerifier, token: string): Promise<Principal | GrpcError> {
  return await v.verify(token);
}

function principal(t: Test, got: Principal | GrpcError, what: string): Principal | undefined {
  if (isGrpcError(got)) {
    t.fail(`${what}: rejected: ${got.message}`);
    return undefined;
  }
  t.pass(`${what}: accepted`);
  return got;
}

const isPromise = (value: unknown): boolean => value instanceof Promise;

// The keys shared by most tests.
const rsa = await makeKey('RS256', 'rsa-1');
const ec = await makeKey('ES256', 'ec-1');
const ed = await makeKey('EdDSA', 'ed-1');
const stranger = await makeKey('RS256', 'rsa-1'); // same kid as `rsa`, not in any JWKS

const dir = mkdtempSync(join(tmpdir(), 'fngate-jwt-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('functions claim', async (t) => {
  t.equal(functionsClaim('*'), '*');
  t.equal(functionsClaim(['fn-a', '*']), '*');
  t.same(functionsClaim(['fn-a', 'fn-b']), new Set(['fn-a', 'fn-b']));
  for (const bad of [undefined, null, 'fn-a', [], [1], ['fn-a', 2], [''], { '*': true }, 42]) {
    t.same(functionsClaim(bad), new Set(), `${JSON.stringify(bad)} grants nothing`);
  }
});

t.test('real RS256, ES256 and EdDSA tokens verify against a JWKS served over HTTP', async (t) => {
  const server = await jwksServer([rsa.jwk, ec.jwk, ed.jwk]);
  t.teardown(() => server.close());
  const v = await createJwtVerifier({ jwksUrl: server.url, issuer: ISS, audience: AUD, log: captureLog().log });
  t.teardown(() => v.close());
  t.equal(server.hits, 1, 'fetched once at start');

  for (const key of [rsa, ec, ed]) {
    const token = await sign(key, { sub: `user-${key.alg}` });
    t.ok(v.accepts(token));
    const first = v.verify(token);
    t.ok(isPromise(first), `${key.alg}: first verification is asynchronous`);
    const p = principal(t, await first, key.alg);
    t.same(p, { subject: `user-${key.alg}`, functions: new Set(['fn-a', 'fn-b']) });
    const again = v.verify(token);
    t.notOk(isPromise(again), `${key.alg}: second verification is synchronous (cached)`);
    t.same(again, p);
  }
  const all = principal(t, await outcome(v, await sign(ed, { functions: '*' })), 'functions "*"');
  t.equal(all?.functions, '*');
  const audList = principal(t, await outcome(v, await sign(ec, { aud: ['other', AUD] })), 'aud array containing the audience');
  t.equal(audList?.subject, 'alice');
  principal(t, await outcome(v, await sign(rsa, { exp: now() - 10 })), 'expired 10 s ago, within the 30 s tolerance');
  principal(t, await outcome(v, await sign(rsa, { nbf: now() + 10 })), 'nbf 10 s ahead, within the 30 s tolerance');
  principal(t, await outcome(v, await sign(rsa, {}, { kid: undefined })), 'no kid: the only RSA key is used');
  t.equal(server.hits, 1, 'known keys: no refetch');

  t.notOk(v.accepts('fngk_' + 'A'.repeat(43)), 'API keys are not JWTs');
  t.notOk(v.accepts('a'.repeat(64)), 'hex API keys are not JWTs');
});

t.test('a table of bad tokens: each UNAUTHENTICATED with a reason, never the token, never a crash', async (t) => {
  const server = await jwksServer([rsa.jwk, ec.jwk, ed.jwk]);
  t.teardown(() => server.close());
  const captured = captureLog();
  const v = await createJwtVerifier({ jwksUrl: server.url, issuer: ISS, audience: AUD, log: captured.log, jwksCooldownMs: 60_000 });
  t.teardown(() => v.close());

  const good = await sign(rsa);
  const [h, p, s] = segments(good);
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  const rsaPem = await exportSPKI(rsa.publicKey);
  const hmacWith = (secret: string): Promise<string> =>
    new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid: rsa.kid }).sign(new TextEncoder().encode(secret));

  const cases: Array<[string, string, RegExp]> = [
    ['alg none, no signature', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`, /signature missing/],
    ['alg none with a signature', `${b64({ alg: 'none', kid: rsa.kid })}.${p}.${s}`, /algorithm not allowed/],
    ['wrong key (same kid)', await sign(stranger), /bad signature/],
    ['HS256 keyed with the RSA public key PEM', await hmacWith(rsaPem), /algorithm not allowed/],
    ['HS256 keyed with the RSA public JWK', await hmacWith(JSON.stringify(rsa.jwk)), /algorithm not allowed/],
    ['HS256 with alg spelled in a JWK-less way (no kid)', await new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(rsaPem)), /algorithm not allowed/],
    ['expired', await sign(rsa, { exp: now() - 3600 }), /invalid JWT: expired/],
    ['not yet valid', await sign(ec, { nbf: now() + 3600 }), /not yet valid/],
    ['wrong issuer', await sign(ed, { iss: 'https://evil.test/' }), /wrong issuer/],
    ['no issuer', await sign(ed, { iss: undefined }), /no iss claim/],
    ['wrong audience', await sign(rsa, { aud: 'someone-else' }), /wrong audience/],
    ['no audience', await sign(rsa, { aud: undefined }), /no aud claim/],
    ['no exp', await sign(rsa, { exp: undefined }), /no exp claim/],
    ['exp not a number', await sign(rsa, { exp: String(now() + 3600) }), /malformed/],
    ['missing sub', await sign(ec, { sub: undefined }), /no sub claim/],
    ['sub with a line break (header injection)', await sign(ec, { sub: 'alice\r\nx-evil: 1' }), /sub claim must be/],
    ['sub not a string', await sign(ec, { sub: 42 }), /sub claim must be/],
    ['truncated', good.slice(0, Math.floor(good.length / 2)), /malformed/],
    ['truncated signature', good.slice(0, -7), /malformed|bad signature/],
    ['non-base64url characters', `${h}.${p.slice(0, 10)}*+/=${p.slice(10)}.${s}`, /malformed/],
    ['spaces inside', `${h}.${p} .${s}`, /malformed/],
    ['header not JSON', `${b64('not json')}.${p}.${s}`, /malformed/],
    ['payload not JSON (validly signed)', signRs256(rsa, { alg: 'RS256', kid: rsa.kid }, '{"sub": "alice"'), /malformed/],
    ['payload a JSON array (validly signed)', signRs256(rsa, { alg: 'RS256', kid: rsa.kid }, [payload]), /malformed/],
    ['payload not JSON (signature of another payload)', `${h}.${b64('[1,2')}.${s}`, /bad signature/],
    ['64 KiB header', `${b64({ alg: 'RS256', kid: rsa.kid, pad: 'x'.repeat(64 * 1024) })}.${p}.${s}`, /token too large/],
    ['just over 16 KiB', 'a.b.' + 'c'.repeat(MAX_TOKEN_LENGTH), /token too large/],
    ['unknown kid', await sign(rsa, {}, { kid: 'nobody' }), /unknown signing key/],
    ['kid of a key of another type', await sign(rsa, {}, { kid: ec.kid }), /unknown signing key/],
    ['signature stripped', `${h}.${p}.`, /signature missing/],
    ['signature of another token', `${h}.${p}.${segments(await sign(rsa, { sub: 'bob' }))[2]}`, /bad signature/],
    ['payload tampered (functions widened)', `${h}.${b64({ ...payload, functions: '*' })}.${s}`, /bad signature/],
    ['header tampered (kid changed to the EC key)', `${b64({ alg: 'ES256', kid: ec.kid })}.${p}.${s}`, /bad signature/],
    ['unknown crit extension (validly signed)', signRs256(rsa, { alg: 'RS256', kid: rsa.kid, crit: ['x-must'], 'x-must': 1 }, payload), /unsupported token/],
    ['JWE shape (five segments)', `${h}.a.b.c.${s}`, /malformed/],
    ['two segments', `${h}.${p}`, /malformed/],
    ['empty header', `.${p}.${s}`, /malformed/],
    ['lone dots', '..', /malformed/],
  ];
  t.ok(cases.length >= 15);
  principal(t, await outcome(v, signRs256(rsa, { alg: 'RS256', kid: rsa.kid }, payload)), 'control: hand-signed token without crit');
  for (const [what, token, reason] of cases) {
    const got = await outcome(v, token);
    if (!isGrpcError(got)) {
      t.fail(`${what}: accepted as ${got.subject}`);
      continue;
    }
    t.equal(got.code, Status.UNAUTHENTICATED, `${what}: UNAUTHENTICATED`);
    t.match(got.message, reason, `${what}: ${got.message}`);
    t.ok(got.message.length < 100, `${what}: short message`);
    t.notOk(got.message.includes(token.slice(0, 20)), `${what}: message does not echo the token`);
    t.ok(isGrpcError(await outcome(v, token)), `${what}: still rejected the second time (never cached)`);
  }

  // Missing functions claim: authenticated, allowed nothing -> PERMISSION_DENIED at routing.
  for (const [what, functions] of [['missing', undefined], ['a number', 7], ['an object', { a: 1 }], ['a list of numbers', [1, 2]]] as const) {
    const got = principal(t, await outcome(v, await sign(rsa, { functions })), `functions claim ${what}`);
    if (got === undefined) continue;
    t.same(got.functions, new Set(), `functions claim ${what}: no functions`);
    t.notOk(mayInvoke(got, 'fn-a'), `functions claim ${what}: may invoke nothing`);
  }

  const logged = JSON.stringify(captured.lines);
  for (const [what, token] of cases) {
    const [, , sig] = segments(token + '..');
    if (sig.length > 16) t.notOk(logged.includes(sig), `${what}: not in the logs`);
  }
  t.notOk(logged.includes(s), 'the good signature is not in the logs');
  t.equal(captured.lines.filter((l) => l.level === 'warn' || l.level === 'error').length, 0, 'no warnings: every failure had a known reason');
});

t.test('random junk never throws and is never accepted', async (t) => {
  const server = await jwksServer([rsa.jwk]);
  t.teardown(() => server.close());
  const v = await createJwtVerifier({ jwksUrl: server.url, log: captureLog().log });
  t.teardown(() => v.close());
  const good = await sign(rsa);
  const alphabet = 'ABCxyz019-_.=+/ \u00e9\u0000';
  let rejected = 0;
  for (let i = 0; i < 400; i++) {
    let token: string;
    if (i % 2 === 0) {
      token = Array.from({ length: 1 + (i % 97) }, (_, j) => alphabet[(i * 31 + j * 7) % alphabet.length]).join('');
    } else {
      // flip one character of a real token
      const at = (i * 13) % good.length;
      const c = good[at] === 'A' ? 'B' : 'A';
      token = good.slice(0, at) + c + good.slice(at + 1);
      if (token === good) continue;
    }
    if (!v.accepts(token)) continue;
    const got = await outcome(v, token);
    if (isGrpcError(got)) {
      if (got.code === Status.UNAUTHENTICATED) rejected++;
      else t.fail(`unexpected code ${got.code} (${got.message})`);
    } else if (got.subject !== 'alice') {
      t.fail('junk accepted');
    }
  }
  t.ok(rejected > 150, `rejected ${rejected}`);
});

t.test('kid rotation: a new key in the JWKS is picked up by one refetch; unknown kids refetch at most once per cooldown', async (t) => {
  const rsa2 = await makeKey('RS256', 'rsa-2');
  const rotated = await sign(rsa2);
  const cachedToken = await sign(rsa);
  const server = await jwksServer([rsa.jwk]);
  t.teardown(() => server.close());
  const clock = new ManualClock();
  const v = await createJwtVerifier({ jwksUrl: server.url, log: captureLog().log, jwksCooldownMs: 500, jwksRefreshMs: 60_000, clock });
  t.teardown(() => v.close());
  principal(t, await outcome(v, cachedToken), 'old key');
  t.equal(server.hits, 1);

  // Within the cooldown an unknown kid does not refetch, up to its last millisecond.
  server.keys = [rsa.jwk, rsa2.jwk];
  const early = await outcome(v, rotated);
  t.ok(isGrpcError(early) && /unknown signing key/.test(early.message), 'new kid unknown while cooling down');
  clock.advance(499);
  const last = await outcome(v, rotated);
  t.ok(isGrpcError(last) && /unknown signing key/.test(last.message), 'still unknown a millisecond before the cooldown ends');
  t.equal(server.hits, 1, 'no refetch during the cooldown');

  clock.advance(1);
  principal(t, await outcome(v, rotated), 'new kid after one refetch, once the cooldown has passed');
  t.equal(server.hits, 2, 'exactly one refetch');
  t.notOk(isPromise(v.verify(cachedToken)), 'a key was only added: earlier tokens stay cached');

  // A burst of unknown kids, concurrent and sequential: at most one more fetch.
  const junk = await Promise.all(Array.from({ length: 20 }, (_, i) => sign(rsa, {}, { kid: `random-${i}` })));
  clock.advance(500);
  const before = server.hits;
  const results = await Promise.all(junk.map((token) => outcome(v, token)));
  for (const token of junk) results.push(await outcome(v, token));
  t.ok(results.every((r) => isGrpcError(r) && r.code === Status.UNAUTHENTICATED && /unknown signing key/.test(r.message)));
  t.ok(server.hits - before <= 1, `unknown kids caused ${server.hits - before} fetch(es)`);
});

t.test('a JWKS endpoint that is down or slow stalls no cached token', async (t) => {
  const server = await jwksServer([rsa.jwk, ec.jwk]);
  t.teardown(() => server.close());
  const captured = captureLog();
  const clock = new ManualClock();
  const v = await createJwtVerifier({
    jwksUrl: server.url,
    log: captured.log,
    jwksCooldownMs: 0,
    jwksTimeoutMs: 300,
    jwksRefreshMs: 100,
    jwksRetryMs: 2000,
    clock,
  });
  t.teardown(() => v.close());
  const token = await sign(rsa);
  const uncachedKnownKid = await sign(ec, { sub: 'carol' });
  const unknownKid = await sign(rsa, {}, { kid: 'rotated-in' });
  principal(t, await outcome(v, token), 'verified while the JWKS server is up');

  // Slow: every request hangs. The background refresh goes out and is stuck on one; it can
  // only end when the clock reaches its timeout.
  server.mode = 'hang';
  clock.advance(100);
  await waitFor(() => server.hits === 2, 5000, 'the background refresh reaches the hanging endpoint');
  const cached = v.verify(token);
  t.notOk(isPromise(cached), 'cached token answered synchronously while the endpoint hangs');
  t.equal((cached as Principal).subject, 'alice');
  const known = await outcome(v, uncachedKnownKid);
  t.equal((known as Principal).subject, 'carol', 'an uncached token with a known kid is answered while the refetch hangs: it needs no fetch');
  let unknownAnswer: Principal | GrpcError | undefined;
  const unknown = outcome(v, unknownKid).then((r) => (unknownAnswer = r));
  clock.advance(299);
  principal(t, await outcome(v, await sign(ec, { sub: 'dave' })), 'a later uncached token is answered too');
  t.equal(unknownAnswer, undefined, 'while an unknown kid waits on the fetch under way');
  clock.advance(1);
  await unknown;
  t.match(unknownAnswer, { code: Status.UNAUTHENTICATED, message: /signing keys unavailable/ }, 'and is refused when that fetch times out');
  t.equal(server.hits, 2, 'joining that fetch, not starting another');

  // Down: every fetch fails. Each back-off period lets one more attempt through.
  server.mode = 'error';
  for (let attempt = 1; attempt <= 3; attempt++) {
    const hits = server.hits;
    clock.advance(2000);
    await waitFor(() => server.hits === hits + 1, 5000, `attempt ${attempt} after the back-off`);
    // Answered once that attempt has failed (it joins it, or finds the back-off it set).
    t.match(await outcome(v, unknownKid), { message: /signing keys unavailable/ }, `attempt ${attempt} failed`);
    t.equal(server.hits, hits + 1, 'one fetch per back-off period, however many RPCs and refresh ticks');
  }
  await server.close();
  for (let i = 0; i < 100; i++) {
    const r = v.verify(token);
    if (isPromise(r)) {
      t.fail('cached token went asynchronous while the endpoint is down');
      break;
    }
  }
  t.same(v.verify(token), { subject: 'alice', functions: new Set(['fn-a', 'fn-b']) }, 'cached token still verifies with the JWKS server stopped');
  t.ok(captured.lines.some((l) => l.level === 'warn' && l.msg.startsWith('JWKS fetch failed')), 'fetch failure logged');
  t.equal(captured.lines.filter((l) => l.msg.startsWith('JWKS fetch failed')).length, 1, 'logged once per outage, not per attempt (four failed)');
});

t.test('remote JWKS: a removed key revokes cached tokens after the background refetch', async (t) => {
  const rsa2 = await makeKey('RS256', 'rsa-2');
  const server = await jwksServer([rsa.jwk, rsa2.jwk]);
  t.teardown(() => server.close());
  const clock = new ManualClock();
  const v = await createJwtVerifier({ jwksUrl: server.url, log: captureLog().log, jwksRefreshMs: 100, clock });
  t.teardown(() => v.close());
  const revoked = await sign(rsa2, { sub: 'mallory' });
  const kept = await sign(rsa);
  principal(t, await outcome(v, revoked), 'before removal');
  principal(t, await outcome(v, kept), 'other key');
  t.notOk(isPromise(v.verify(revoked)), 'cached');

  server.keys = [rsa.jwk];
  clock.advance(99);
  t.notOk(isPromise(v.verify(revoked)), 'until the next refetch is due, still cached');
  t.equal(server.hits, 1);
  clock.advance(1);
  await waitForAsync(async () => isGrpcError(await outcome(v, revoked)), 5000, 'revocation by the background refetch');
  t.equal(server.hits, 2, 'by that one refetch');
  const got = await outcome(v, revoked);
  t.match((got as GrpcError).message, /unknown signing key/);
  principal(t, await outcome(v, kept), 'tokens of the remaining key still verify');
});

t.test('JWKS file: verifies, re-reads on change, a removed key is rejected once the file is re-read', async (t) => {
  const file = join(dir, 'jwks.json');
  writeFileAtomic(file, JSON.stringify({ keys: [rsa.jwk, ed.jwk] }));
  const captured = captureLog();
  const v = await createJwtVerifier({ jwksFile: file, issuer: ISS, log: captured.log, fileWatch: { debounceMs: 20, pollMs: 200 } });
  t.teardown(() => v.close());
  const rsaToken = await sign(rsa);
  const edToken = await sign(ed, { sub: 'erin' });
  principal(t, await outcome(v, rsaToken), 'RS256 from the file');
  principal(t, await outcome(v, edToken), 'EdDSA from the file');
  t.notOk(isPromise(v.verify(edToken)), 'cached');

  // Invalid content: last good keys kept.
  writeFileAtomic(file, '{"keys": [');
  await captured.waitFor((l) => l.msg.startsWith('invalid JWKS file'));
  t.notOk(isPromise(v.verify(edToken)), 'still cached after an invalid rewrite');

  // A key added: no revocation; the new key works.
  writeFileAtomic(file, JSON.stringify({ keys: [rsa.jwk, ed.jwk, ec.jwk] }));
  await captured.waitFor((l) => l.msg === 'JWKS changed' && l['added'] === 1);
  t.notOk(isPromise(v.verify(edToken)), 'adding a key keeps the cache');
  principal(t, await outcome(v, await sign(ec)), 'the added key verifies');

  // The EdDSA key removed: once the new file is in use its token is rejected, the RSA one still passes.
  writeFileAtomic(file, JSON.stringify({ keys: [rsa.jwk, ec.jwk] }));
  await captured.waitFor((l) => l.msg === 'JWKS changed' && l['removed'] === 1);
  t.match((await outcome(v, edToken) as GrpcError).message, /unknown signing key/);
  principal(t, await outcome(v, rsaToken), 'RS256 still verifies');
});

t.test('cache: bounded, and entries end at exp', async (t) => {
  const file = join(dir, 'jwks-cache.json');
  writeFileAtomic(file, JSON.stringify({ keys: [ec.jwk] }));
  const clock = new ManualClock();
  const v = await createJwtVerifier({ jwksFile: file, log: captureLog().log, cacheMaxEntries: 3, clockToleranceSec: 0, clock });
  t.teardown(() => v.close());
  const tokens = await Promise.all(Array.from({ length: 5 }, (_, i) => sign(ec, { sub: `u${i}` })));
  for (const token of tokens) principal(t, await outcome(v, token), 'verify');
  t.ok(isPromise(v.verify(tokens[0] as string)), 'oldest evicted');
  t.notOk(isPromise(v.verify(tokens[4] as string)), 'newest kept');

  const exp = Math.floor(clock.wall() / 1000) + 2;
  const shortLived = await sign(ec, { exp });
  principal(t, await outcome(v, shortLived), 'short-lived token');
  clock.advance(exp * 1000 - clock.wall() - 1);
  t.notOk(isPromise(v.verify(shortLived)), 'cached up to the last millisecond before exp');
  clock.advance(1);
  const after = v.verify(shortLived);
  t.ok(isPromise(after), 'at exp the cache entry is not used');
  t.match((await after) as GrpcError, { code: Status.UNAUTHENTICATED, message: /expired/ });

  // Concurrent first verifications of one token share the work and all succeed.
  const fresh = await sign(ec, { sub: 'many' });
  const all = await Promise.all(Array.from({ length: 50 }, () => outcome(v, fresh)));
  t.ok(all.every((p) => !isGrpcError(p) && p.subject === 'many'));
});

t.test('through the Authenticator: JWTs to the verifier, API keys to the registry', async (t) => {
  const file = join(dir, 'jwks-auth.json');
  writeFileAtomic(file, JSON.stringify({ keys: [rsa.jwk] }));
  const v = await createJwtVerifier({ jwksFile: file, log: captureLog().log });
  t.teardown(() => v.close());
  const auth = new Authenticator(new Registry(), v);
  const ok = await auth.authenticate(`Bearer ${await sign(rsa, { functions: ['fn-a'] })}`);
  t.same(ok, { subject: 'alice', functions: new Set(['fn-a']) });
  t.match(await auth.authenticate(`Bearer ${await sign(stranger)}`), { code: Status.UNAUTHENTICATED, message: /bad signature/ });
  t.match(await auth.authenticate('Bearer fngk_notakey'), { code: Status.UNAUTHENTICATED, message: /API key/ });
});

t.test('startup errors', async (t) => {
  const log = captureLog().log;
  await t.rejects(createJwtVerifier({ log }), /exactly one of/);
  await t.rejects(createJwtVerifier({ log, jwksUrl: 'http://x/', jwksFile: '/x' }), /exactly one of/);
  await t.rejects(createJwtVerifier({ log, jwksUrl: 'ftp://example.com/jwks' }), /must be http or https/);
  await t.rejects(createJwtVerifier({ log, jwksUrl: 'not a url' }), /not a URL/);
  await t.rejects(createJwtVerifier({ log, jwksFile: join(dir, 'nope.json') }), /does not exist/);
  const cases: Array<[string, string, RegExp]> = [
    ['garbage.json', 'nope', /not JSON/],
    ['array.json', '[]', /not a JSON Web Key Set/],
    ['private.json', JSON.stringify({ keys: [await exportJWK(rsa.privateKey)] }), /private key material/],
    ['oct.json', JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }), /symmetric/],
  ];
  for (const [name, text, message] of cases) {
    writeFileAtomic(join(dir, name), text);
    await t.rejects(createJwtVerifier({ log, jwksFile: join(dir, name) }), message, name);
  }

  // An unreachable URL is not fatal: tokens are refused until keys arrive.
  const server = await jwksServer([rsa.jwk]);
  server.mode = 'error';
  const captured = captureLog();
  const clock = new ManualClock();
  const v = await createJwtVerifier({ jwksUrl: server.url, log: captured.log, jwksRetryMs: 100, jwksRefreshMs: 60_000, clock });
  t.teardown(() => v.close());
  t.teardown(() => server.close());
  t.ok(captured.lines.some((l) => l.msg.startsWith('no JWKS yet')));
  t.equal(server.hits, 1, 'the fetch at start failed');
  const token = await sign(rsa);
  for (let i = 0; i < 10; i++) t.match(await outcome(v, token), { code: Status.UNAUTHENTICATED, message: /signing keys unavailable/ });
  t.equal(server.hits, 1, 'a failed fetch backs off instead of refetching per RPC');
  server.mode = 'ok';
  clock.advance(99);
  t.match(await outcome(v, token), { message: /signing keys unavailable/ }, 'the endpoint recovered, but the back-off has a millisecond to go');
  t.equal(server.hits, 1);
  clock.advance(1);
  principal(t, await outcome(v, token), 'verifies once the back-off has passed');
  t.equal(server.hits, 2, 'after one fetch');
});
