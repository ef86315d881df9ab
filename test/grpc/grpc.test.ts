import t from 'tap';
import { encodeGrpcMessage, statusFields, Status } from '../../lib/grpc/status.ts';
import { parseGrpcTimeout, MAX_TIMER_MS } from '../../lib/grpc/timeout.ts';

t.test('grpc-timeout parsing', async (t) => {
  const cases: Array<[string, number | undefined]> = [
    ['1H', 3_600_000],
    ['2M', 120_000],
    ['3S', 3000],
    ['250m', 250],
    ['1500u', 2],
    ['1u', 1],
    ['1n', 1],
    ['0S', 0],
    ['99999999S', 99_999_999_000],
    ['123456789S', undefined], // 9 digits: over the spec's 8
    ['S', undefined],
    ['10', undefined],
    ['10s', undefined], // units are case-sensitive: s is not a unit
    ['-1S', undefined],
    ['1.5S', undefined],
    ['', undefined],
    [' 1S', undefined],
  ];
  for (const [text, want] of cases) t.equal(parseGrpcTimeout(text), want, JSON.stringify(text));
  t.ok((parseGrpcTimeout('99999999H') as number) > MAX_TIMER_MS, 'huge deadlines exceed the timer range (not armed)');
});

t.test('grpc-message percent-encoding', async (t) => {
  t.equal(encodeGrpcMessage('plain ascii: ok'), 'plain ascii: ok');
  t.equal(encodeGrpcMessage('100%'), '100%25');
  t.equal(encodeGrpcMessage('héllo'), 'h%C3%A9llo');
  t.equal(encodeGrpcMessage('a\nb'), 'a%0Ab');
  t.equal(encodeGrpcMessage('日本'), '%E6%97%A5%E6%9C%AC');
  t.same(statusFields({ code: Status.NOT_FOUND, message: 'x%' }), ['grpc-status', '5', 'grpc-message', 'x%25']);
  t.same(statusFields({ code: Status.OK, message: '' }), ['grpc-status', '0'], 'no empty grpc-message');
});
