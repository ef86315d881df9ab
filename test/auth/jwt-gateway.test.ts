// JWT through the real gateway (docs/reference.md, Credentials): a JWKS file, tokens signed with jose,
// the `functions` claim for authorization, `sub` as fngate-subject, bad tokens refused with
// UNAUTHENTICATED (never INTERNAL), and a key removed from the JWKS revoking its tokens on an
// open connection. The verifier's own edge cases are in jwt.test.ts.
import t from 'tap';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { join } from 'node:path';
import { startEchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import { writeFileAtomic, writeFunctionsDir } from '../helpers/files.ts';
import { startGateway } from '../helpers/gateway.ts';
import { runPythonClient, pyHeaderArgs } from '../helpers/python.ts';

const OK = 0;
const PERMISSION_DENIED = 7;
const UNAUTHENTICATED = 16;
const ISSUER = 'https://issuer.test';
const AUDIENCE = 'fngate-test';

const dir = t.testdir();
const backend = await startEchoBackend({ name: 'jwt' });
t.teardown(() => backend.stop(1000));
writeFunctionsDir(join(dir, 'fns'), [
  { name: 'a', functionId: 'fn-a', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [backend.address] }] },
  { name: 'b', functionId: 'fn-b', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [backend.address] }] },
]);

const rsa = await generateKeyPair('RS256');
const ec = await generateKeyPair('ES256');
const rsaJwk: JWK = { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' };
const ecJwk: JWK = { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' };
const jwksFile = join(dir, 'jwks.json');
writeFileAtomic(jwksFile, JSON.stringify({ keys: [rsaJwk, ecJwk] }));

const gw = await startGateway([
  '--functions', join(dir, 'fns'),
  '--jwks-file', jwksFile,
  '--jwt-issuer', ISSUER,
  '--jwt-audience', AUDIENCE,
]);
t.teardown(() => gw.stop());

interface TokenOpts {
  sub?: string;
  functions?: unknown;
  alg?: 'RS256' | 'ES256';
  issuer?: string;
  audience?: string;
  expiresIn?: string | number;
}

async function token(opts: TokenOpts = {}): Promise<string> {
  const alg = opts.alg ?? 'ES256';
  const claims: Record<string, unknown> = opts.functions === undefined ? { functions: ['fn-a'] } : { functions: opts.functions };
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg, kid: alg === 'ES256' ? 'ec-1' : 'rsa-1' })
    .setIssuer(opts.issuer ?? ISSUER)
    .setAudience(opts.audience ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(opts.expiresIn ?? '10m');
  if (opts.sub !== '') jwt = jwt.setSubject(opts.sub ?? 'alice@example.com');
  return jwt.sign(alg === 'ES256' ? ec.privateKey : rsa.privateKey);
}

const md = (jwt: string, functionId = 'fn-a') => ({ authorization: `Bearer ${jwt}`, 'function-id': functionId });

t.test('valid tokens: RS256 and ES256, sub becomes fngate-subject, functions claim authorizes', async (t) => {
  const client = echoClient(gw.h2c);
  t.teardown(() => client.close());
  for (const alg of ['RS256', 'ES256'] as const) {
    const r = await client.unary(md(await token({ alg, sub: `user-${alg}` })), {});
    t.equal(r.status, OK, `${alg}: ${r.details}`);
    t.match(r.reply?.metadata ?? '', new RegExp(`^fngate-subject: user-${alg}$`, 'm'), 'the function sees the JWT subject');
    t.notMatch(r.reply?.metadata ?? '', /^authorization:/m, 'the token is not passed on');
  }
  const denied = await client.unary(md(await token(), 'fn-b'), {});
  t.equal(denied.status, PERMISSION_DENIED, 'functions claim [fn-a] may not invoke fn-b');
  const star = await client.unary(md(await token({ functions: '*' }), 'fn-b'), {});
  t.equal(star.status, OK, 'functions "*" may invoke anything');
  const none = await client.unary(md(await token({ functions: 42 })), {});
  t.equal(none.status, PERMISSION_DENIED, 'an unusable functions claim allows nothing');

  const py = await runPythonClient(['--target', gw.h2c, ...pyHeaderArgs(md(await token({ sub: 'py' }))), 'unary', '--calls', '2']);
  t.same(py.calls.map((c) => c.code), ['OK', 'OK'], 'grpcio with a JWT');
});

t.test('bad tokens: UNAUTHENTICATED with a reason, never INTERNAL, and the gateway keeps serving', async (t) => {
  const client = echoClient(gw.h2c);
  t.teardown(() => client.close());
  const good = await token();
  const [h, p, s] = good.split('.') as [string, string, string];
  const other = await generateKeyPair('ES256');
  const forged = await new SignJWT({ functions: ['fn-a'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'ec-1' })
    .setSubject('mallory')
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setExpirationTime('10m')
    .sign(other.privateKey);
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const cases: Array<[string, string, RegExp]> = [
    ['expired', await token({ expiresIn: Math.floor(Date.now() / 1000) - 3600 }), /expired/],
    ['wrong issuer', await token({ issuer: 'https://evil.test' }), /issuer/],
    ['wrong audience', await token({ audience: 'someone-else' }), /audience/],
    ['signed by another key', forged, /signature/],
    ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`, /algorithm|signature/],
    ['payload tampered', `${h}.${b64({ sub: 'root', functions: '*', iss: ISSUER, aud: AUDIENCE, exp: 9e9 })}.${s}`, /signature/],
    ['truncated', good.slice(0, good.length - 10), /signature|malformed/],
    ['not base64', `${h}.${p}.!!!`, /malformed|signature/],
    ['no sub', await token({ sub: '' }), /sub/],
  ];
  for (const [name, jwt, reason] of cases) {
    const r = await client.unary(md(jwt), {});
    t.equal(r.status, UNAUTHENTICATED, `${name}: ${r.details}`);
    t.match(r.details, reason, `${name}: says why`);
  }
  const after = await client.unary(md(await token()), {});
  t.equal(after.status, OK, 'a good token still works on the same connection');
  t.notMatch(gw.logs(), new RegExp(good.slice(-20)), 'no token in the logs');
});

t.test('a key removed from the JWKS file revokes its tokens on an open connection', async (t) => {
  const client = echoClient(gw.h2c);
  t.teardown(() => client.close());
  const jwt = await token({ alg: 'RS256' });
  t.equal((await client.unary(md(jwt), {})).status, OK, 'works (and is now cached)');
  writeFileAtomic(jwksFile, JSON.stringify({ keys: [ecJwk] }));
  // Logged as the new key set goes into use, together with the cache drop.
  await gw.waitForLog((l) => l['msg'] === 'JWKS changed' && l['removed'] === 1, 10_000);
  const refused = await client.unary(md(jwt), {});
  t.equal(refused.status, UNAUTHENTICATED, `the first call after the re-read is refused: ${refused.details}`);
  t.equal((await client.unary(md(await token({ alg: 'ES256' })), {})).status, OK, 'tokens of the remaining key still work');
});
