import t from 'tap';
import { newSid, SessionKeyRing, type SessionClaims } from '../../lib/sessions/session-token.ts';

const SECRET = 'fngate-test-vector-secret-0123456789';
const CLAIMS: SessionClaims = {
  sid: '0123456789abcdef',
  functionId: 'fn-vector',
  versionId: 'v1',
  endpointKey: '10.0.0.7:8080',
  issuedAt: 1796428800000,
  expiresAt: 4102444800000,
};

t.test('an id sealed by the previous format (AES-256-GCM) still opens', async (t) => {
  // Sealed by the release before format 2 with SECRET: replicas of that release handed such ids out.
  const v1 = 'AUlP0_FfOE_Xz5pUgY75yruTAsewgL4yy6RQ_4JdFTznxwJv3cE3Vg7UsgHMVVXUj5SUhkz_S7QDomxJS84Bbhz7BUjfAlEKbqK-V67eyeT2TGw';
  t.same(SessionKeyRing.fromSecrets([SECRET]).open(v1), CLAIMS);
  t.equal(SessionKeyRing.fromSecrets(['another secret']).open(v1), undefined, 'not under another key');
  t.equal(SessionKeyRing.fromSecrets([SECRET]).open(v1.slice(0, 40) + (v1[40] === 'A' ? 'B' : 'A') + v1.slice(41)), undefined, 'not changed');
});

t.test('ids are sealed in format 2 and open on any replica with the secret', async (t) => {
  const sealer = SessionKeyRing.fromSecrets([SECRET]);
  const token = sealer.seal(CLAIMS);
  t.equal(Buffer.from(token, 'base64url')[0], 2, 'format byte 2');
  t.notOk(token.includes('10.0.0.7') || Buffer.from(token, 'base64url').includes('10.0.0.7'), 'the endpoint is not readable');
  t.same(SessionKeyRing.fromSecrets([SECRET]).open(token), CLAIMS, 'another process with the secret opens it');
  t.same(SessionKeyRing.fromSecrets(['new secret', SECRET]).open(token), CLAIMS, 'so does one that seals with a newer key');
  t.equal(SessionKeyRing.fromSecrets(['new secret']).open(token), undefined, 'one without the secret does not');
  t.equal(SessionKeyRing.random().open(token), undefined);
});

t.test('every octet is covered: any change opens to nothing', async (t) => {
  const ring = SessionKeyRing.fromSecrets([SECRET]);
  const body = Buffer.from(ring.seal(CLAIMS), 'base64url');
  let opened = 0;
  for (let i = 0; i < body.length; i++) {
    for (const flip of [0x01, 0x80]) {
      const changed = Buffer.from(body);
      changed[i] = (changed[i] as number) ^ flip;
      if (ring.open(changed.toString('base64url')) !== undefined) opened++;
    }
  }
  t.equal(opened, 0, `${body.length * 2} changed ids, none opened`);
  t.equal(ring.open(body.subarray(0, body.length - 1).toString('base64url')), undefined, 'truncated');
  t.equal(ring.open(Buffer.concat([body, Buffer.from([0])]).toString('base64url')), undefined, 'extended');
  const format3 = Buffer.from(body);
  format3[0] = 3;
  t.equal(ring.open(format3.toString('base64url')), undefined, 'an unknown format');
});

t.test('the keystream is never used twice: distinct IVs, every id opens, across many refills', async (t) => {
  const ring = SessionKeyRing.fromSecrets([SECRET]);
  const ivs = new Set<string>();
  let wrong = 0;
  for (let i = 0; i < 3000; i++) {
    // Lengths vary so ids take different numbers of keystream blocks.
    const claims = { ...CLAIMS, sid: newSid(), functionId: 'f'.repeat(1 + (i % 128)), endpointKey: `${'h'.repeat(i % 253)}:1` };
    const token = ring.seal(claims);
    ivs.add(Buffer.from(token, 'base64url').toString('hex', 5, 21));
    const back = ring.open(token);
    if (back?.sid !== claims.sid || back.functionId !== claims.functionId || back.endpointKey !== claims.endpointKey) wrong++;
  }
  t.equal(ivs.size, 3000, '3000 ids, 3000 IVs');
  t.equal(wrong, 0, 'each opens to its own claims');
  const a = Buffer.from(SessionKeyRing.fromSecrets([SECRET]).seal(CLAIMS), 'base64url');
  const b = Buffer.from(SessionKeyRing.fromSecrets([SECRET]).seal(CLAIMS), 'base64url');
  t.not(a.toString('hex', 5, 13), b.toString('hex', 5, 13), 'two processes with one key start from different random IV prefixes');
});
