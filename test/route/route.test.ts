import t from 'tap';
import type { IncomingHttpHeaders } from 'node:http2';
import { MAX_SESSION_ID, readInvocation } from '../../lib/route/invocation.ts';
import { newSid, SessionKeyRing } from '../../lib/sessions/session-token.ts';
import { routeInvocation } from '../../lib/route/route.ts';
import { Registry } from '../../lib/registry/registry.ts';
import { Status, isGrpcError } from '../../lib/grpc/status.ts';
import { NO_SCALING, type FunctionSpec } from '../../lib/registry/types.ts';

const headers = (h: Record<string, string | string[]>): IncomingHttpHeaders => h as IncomingHttpHeaders;

t.test('the session id of a session with the longest ids and host name is read back and opens', async (t) => {
  const ring = SessionKeyRing.random();
  const claims = {
    sid: newSid(),
    functionId: 'f'.repeat(128),
    versionId: 'v'.repeat(128),
    endpointKey: `${'h'.repeat(63)}.${'o'.repeat(63)}.${'s'.repeat(63)}.${'t'.repeat(61)}:65535`,
    issuedAt: Date.now(),
    expiresAt: Date.now() + 60_000,
  };
  const token = ring.seal(claims);
  t.ok(token.length > 256 && token.length <= MAX_SESSION_ID, `a ${token.length}-character token is within the limit`);
  const read = readInvocation(headers({ 'function-id': claims.functionId, 'nvcf-reqid': token }));
  t.equal(isGrpcError(read) ? read.message : read.sessionId, token, 'readInvocation passes it on');
  t.same(ring.open(token), claims, 'and it opens to the same claims');
});

t.test('readInvocation', async (t) => {
  t.same(readInvocation(headers({ 'function-id': 'fn-1' })), { functionId: 'fn-1', versionId: undefined, sessionId: undefined });
  t.same(readInvocation(headers({ 'function-id': 'fn', 'function-version-id': 'v2', 'nvcf-reqid': 'abc' })), {
    functionId: 'fn',
    versionId: 'v2',
    sessionId: 'abc',
  });
  t.same(readInvocation(headers({ 'function-id': 'fn', cookie: 'a=1; nvcf-request-id=xyz ; b=2' })).valueOf(), {
    functionId: 'fn',
    versionId: undefined,
    sessionId: 'xyz',
  });
  t.equal((readInvocation(headers({ 'function-id': 'fn', 'nvcf-reqid': 'hdr', cookie: 'nvcf-request-id=ck' })) as { sessionId: string }).sessionId, 'hdr', 'header wins over cookie');
  const bad: Array<[Record<string, string | string[]>, number, RegExp]> = [
    [{}, Status.INVALID_ARGUMENT, /missing function-id/],
    [{ 'function-id': '' }, Status.INVALID_ARGUMENT, /missing function-id/],
    [{ 'function-id': 'a b' }, Status.INVALID_ARGUMENT, /function-id must be/],
    [{ 'function-id': 'x'.repeat(129) }, Status.INVALID_ARGUMENT, /function-id must be/],
    [{ 'function-id': ['a', 'b'] }, Status.INVALID_ARGUMENT, /missing function-id/],
    [{ 'function-id': 'fn', 'function-version-id': 'v/1' }, Status.INVALID_ARGUMENT, /function-version-id must be/],
    [{ 'function-id': 'fn', 'function-version-id': '' }, Status.INVALID_ARGUMENT, /function-version-id must be/],
    [{ 'function-id': 'fn', 'nvcf-reqid': 'x'.repeat(MAX_SESSION_ID + 1) }, Status.NOT_FOUND, /^no existing session found$/],
  ];
  for (const [h, code, message] of bad) {
    const got = readInvocation(headers(h));
    t.ok(isGrpcError(got), JSON.stringify(h).slice(0, 60));
    if (isGrpcError(got)) {
      t.equal(got.code, code);
      t.match(got.message, message);
    }
  }
});

t.test('routeInvocation: permission before existence, then version', async (t) => {
  const registry = new Registry();
  const spec: FunctionSpec = {
    name: 'greeter',
    namespace: 'default',
    functionId: 'fn-a',
    activeVersion: 'v1',
    maxSessionsPerEndpoint: 0,
    scaling: NO_SCALING,
    versions: [{ versionId: 'v1', backend: { kind: 'static', endpoints: ['127.0.0.1:1'] } }],
    origin: 'test',
  };
  registry.replaceFunctions([spec]);
  const all = { subject: 'k', functions: '*' as const };
  const onlyB = { subject: 'k', functions: new Set(['fn-b']) };
  const route = (p: typeof all | typeof onlyB, functionId: string, versionId?: string) =>
    routeInvocation(registry, p, { functionId, versionId, sessionId: undefined });
  t.equal((route(all, 'fn-a') as { functionId: string }).functionId, 'fn-a');
  t.match(route(all, 'nope'), { code: Status.NOT_FOUND, message: /function nope not found/ });
  t.match(route(all, 'fn-a', 'v9'), { code: Status.NOT_FOUND, message: /no version v9/ });
  t.match(route(onlyB, 'fn-a'), { code: Status.PERMISSION_DENIED });
  t.match(route(onlyB, 'nope'), { code: Status.PERMISSION_DENIED }, 'a restricted key cannot probe for ids');
  t.match(route(onlyB, 'fn-b'), { code: Status.NOT_FOUND });
});
