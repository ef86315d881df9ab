// Header rewriting between client and function (lib/forward/headers.ts), on lib/h2's flat lists.
import t from 'tap';
import { SESSION_HEADER } from '../../lib/route/invocation.ts';
import type { Session } from '../../lib/sessions/session.ts';
import { SUBJECT_HEADER, toClientHeaders, toClientTrailers, toFunctionHeaders, WAIT_HEADER } from '../../lib/forward/headers.ts';

// Only the two fields the rewriting reads.
const session = { token: 'sealed-id', setCookie: ['nvcf-request-id=sealed-id; Path=/'] } as unknown as Session;

t.test('toward the function: credential, forged subject and connection fields go; metadata repeats stay', async (t) => {
  const raw = [
    ':method', 'POST', ':path', '/pkg.Svc/Call', 'authorization', 'Bearer secret', SUBJECT_HEADER, 'forged',
    'connection', 'close', 'x-tag', 'a', 'x-tag', 'b', 'user-agent', 'first', 'user-agent', 'second',
  ];
  t.same(toFunctionHeaders(raw, 'key:bench'), [
    ':method', 'POST', ':path', '/pkg.Svc/Call', 'x-tag', 'a', 'x-tag', 'b', 'user-agent', 'first', SUBJECT_HEADER, 'key:bench',
  ]);
  t.equal(raw.length, 18, 'the decoded list is left as it was');
});

t.test("toward the client: the function's own session fields are replaced by the gateway's", async (t) => {
  const raw = [':status', '200', 'content-type', 'application/grpc', SESSION_HEADER, 'made-up', WAIT_HEADER, '7', 'keep-alive', 'x'];
  t.same(toClientHeaders(raw, session, -1), [':status', '200', 'content-type', 'application/grpc', SESSION_HEADER, 'sealed-id', 'set-cookie', 'nvcf-request-id=sealed-id; Path=/']);
  t.same(toClientHeaders(raw, session, 12).slice(-2), [WAIT_HEADER, '12'], 'a call that waited says how long');
});

t.test('trailers: passed on as decoded when nothing is to go, filtered when something is', async (t) => {
  const plain = ['grpc-status', '0', 'grpc-message', '', 'x-trailer', 'a', 'x-trailer', 'b'];
  t.equal(toClientTrailers(plain), plain, 'no copy');
  t.same(toClientTrailers(['grpc-status', '0', 'transfer-encoding', 'chunked']), ['grpc-status', '0'], 'a connection field is dropped');
  t.same(toClientTrailers(['grpc-status', '0', 'content-type', 'a', 'content-type', 'b']), ['grpc-status', '0', 'content-type', 'a'], 'a repeated single-value field keeps its first');
});
