// --session-key-file: its secrets, one per line; start-up errors name the file and line; a
// rotation (a new key put in front of the old one) takes effect without a restart and keeps
// the old ids opening; a bad edit is reported and the keys in use stay.
import t from 'tap';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newSid, SessionKeyRing, type SessionClaims } from '../../lib/sessions/session-token.ts';
import { parseSessionSecrets, sessionKeyFile } from '../../lib/sources/file/session-key-file.ts';
import { startGateway } from '../helpers/gateway.ts';
import { captureLog, changes } from './changes.ts';

const OLD = 'the old secret: thirty-two characters or more';
const NEW = 'the new secret: thirty-two characters or more';
const claims = (): SessionClaims => ({ sid: newSid(), functionId: 'fn', versionId: 'v1', endpointKey: '10.0.0.1:50051', issuedAt: Date.now(), expiresAt: Date.now() + 60_000 });

t.test('one secret per line, comments skipped, short ones named by line', async (t) => {
  t.same(parseSessionSecrets(`# current\n${OLD}\n\n  ${NEW}  \n`, 'keys'), [OLD, NEW]);
  t.throws(() => parseSessionSecrets(`${OLD}\nshort\n`, '/etc/k'), { message: '/etc/k:2: session key is 5 characters; at least 32 are needed' });
  t.throws(() => parseSessionSecrets('# nothing\n\n', '/etc/k'), { message: /^\/etc\/k: no session key in the file/ });
});

t.test('start-up: a missing file, a short key or an empty file stop the gateway, naming file and line', async (t) => {
  const dir = t.testdir({ 'short.key': `# rotated 2026-11\n${OLD}\ntoo-short\n`, 'empty.key': '# nothing yet\n\n' });
  await t.rejects(sessionKeyFile.load(join(dir, 'nope.key')), { message: `--session-key-file ${join(dir, 'nope.key')}: does not exist` });
  await t.rejects(sessionKeyFile.load(join(dir, 'short.key')), { message: `${join(dir, 'short.key')}:3: session key is 9 characters; at least 32 are needed` });
  await t.rejects(sessionKeyFile.load(join(dir, 'empty.key')), { message: /empty\.key: no session key in the file/ });
  const gw = startGateway(['--session-key-file', join(dir, 'short.key')], { timeoutMs: 10_000 });
  await t.rejects(gw, /short\.key:3: session key is 9 characters; at least 32 are needed/, 'the gateway refuses to start and says why');
});

t.test('rotation is picked up from the file; a bad edit keeps the keys in use', async (t) => {
  const dir = t.testdir({ 'session.key': `${OLD}\n` });
  const file = join(dir, 'session.key');
  const loaded = await sessionKeyFile.load(file);
  t.same(loaded.value, [OLD]);
  const oldToken = SessionKeyRing.fromSecrets(loaded.value).seal(claims());
  const got = changes<string[]>();
  const { log, lines, waitFor } = captureLog();
  const w = sessionKeyFile.watch(file, got.onChange, log);
  t.teardown(() => w.close());
  t.same(await got.next(), [OLD], 'the secrets as read at first');

  // As Kubernetes updates a mounted Secret: a new file renamed over the old one.
  await writeFile(join(dir, '.tmp'), `${NEW}\n${OLD}\n`);
  await rename(join(dir, '.tmp'), file);
  const secrets = await got.next(3000);
  t.same(secrets, [NEW, OLD]);
  const rotated = SessionKeyRing.fromSecrets(secrets);
  t.ok(rotated.open(oldToken), 'ids sealed with the old key still open');
  const newToken = rotated.seal(claims());
  t.equal(SessionKeyRing.fromSecrets([OLD]).open(newToken), undefined, 'new ids are sealed with the new key...');
  t.ok(SessionKeyRing.fromSecrets([NEW]).open(newToken), '...the first line');

  await writeFile(file, `${NEW}\nshort\n`);
  await waitFor((l) => l.level === 'error');
  t.match(lines.find((l) => l.level === 'error'), { msg: 'session key file rejected; keeping the keys in use', error: /session\.key:2: session key is 5 characters/ });
  await writeFile(file, `${NEW}\n`);
  t.same(await got.next(), [NEW], 'the next secrets delivered are those of the fixed file: the bad edit delivered none');
});

t.test('the text read at start-up is not delivered again; the next change is', async (t) => {
  const dir = t.testdir({ 'session.key': `${OLD}\n` });
  const file = join(dir, 'session.key');
  const loaded = await sessionKeyFile.load(file);
  const got = changes<string[]>();
  const w = sessionKeyFile.watch(file, got.onChange, captureLog().log, { pollMs: 100 }, loaded.text);
  t.teardown(() => w.close());
  await writeFile(join(dir, '.tmp'), `${NEW}\n${OLD}\n`);
  await rename(join(dir, '.tmp'), file);
  t.same(await got.next(), [NEW, OLD], 'the first secrets delivered are the rotation: those in use were not loaded a second time');
  t.same(got.pending, [], 'and only once');
});
