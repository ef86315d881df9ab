import t from 'tap';
import { rename, rm, symlink, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { apiKeysFile, parseApiKeysFile } from '../../lib/sources/file/api-keys-file.ts';
import type { ApiKeyRecord } from '../../lib/registry/types.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { captureLog, changes } from './changes.ts';

const H1 = 'a'.repeat(64);
const H2 = 'B'.repeat(64);
const H3 = '0123456789abcdef'.repeat(4);

const entry = (name: string, sha256: string, functions: string): string =>
  `  - name: ${name}\n    sha256: "${sha256}"\n    functions: ${functions}\n`;

const failure = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  return 'did not fail';
};

const names = (records: readonly ApiKeyRecord[]): string[] => records.map((r) => r.name);

t.test('parses keys, lower-cases hashes, reads "*" both ways', async (t) => {
  const text = `keys:\n${entry('alice', H1, '[fn-a, fn-b]')}${entry('bob', H2, '"*"')}${entry('carol', H3, '["*"]')}`;
  t.same(parseApiKeysFile(text, 'keys.yaml'), [
    { name: 'alice', sha256: H1, functions: new Set(['fn-a', 'fn-b']) },
    { name: 'bob', sha256: 'b'.repeat(64), functions: '*' },
    { name: 'carol', sha256: H3, functions: '*' },
  ]);
  t.same(parseApiKeysFile('keys: []\n', 'keys.yaml'), []);
});

t.test('invalid key files name the file, line and field', async (t) => {
  const ok = entry('alice', H1, '[fn-a]');
  const cases: [string, string][] = [
    ['', 'keys.yaml: empty file (write `keys: []` for no keys)'],
    ['keys: []\n---\nkeys: []\n', 'keys.yaml:3: expected a single YAML document'],
    ['- name: a\n', 'keys.yaml:1: must be a mapping'],
    ['key: []\n', 'keys.yaml:1: key: unknown field (expected one of: keys)'],
    ['other: 1\nkeys: []\n', 'keys.yaml:1: other: unknown field (expected one of: keys)'],
    ['{}\n', 'keys.yaml:1: keys: required (write `keys: []` for none)'],
    ['keys:\n', 'keys.yaml:1: keys: must be a list'],
    [`keys:\n${ok}  - alice\n`, 'keys.yaml:5: keys[1]: must be a mapping'],
    [`keys:\n${ok}${ok}${entry('c', 'abc', '"*"')}`, 'keys.yaml:5: keys[1].name: duplicate "alice"'],
    [`keys:\n${ok}${entry('bob', H2, '"*"')}${entry('carol', 'abc', '"*"')}`, 'keys.yaml:9: keys[2].sha256: must be 64 hex characters (the SHA-256 of the key)'],
    [`keys:\n${ok}${entry('bob', 'g'.repeat(64), '"*"')}`, 'keys.yaml:6: keys[1].sha256: must be 64 hex characters (the SHA-256 of the key)'],
    [`keys:\n${ok}${entry('bob', H1.toUpperCase(), '"*"')}`, 'keys.yaml:6: keys[1].sha256: same key as "alice"'],
    [`keys:\n  - sha256: "${H1}"\n    functions: "*"\n`, 'keys.yaml:2: keys[0].name: required'],
    [`keys:\n${entry('has space', H1, '"*"')}`, 'keys.yaml:2: keys[0].name: "has space" must be lower-case a-z, 0-9, \'-\', \'.\' (a DNS-1123 name of at most 242 characters; it also names the key\'s Secret)'],
    // One name rule for keys files, Secrets and `fngate keys create`: a name moves between them unchanged.
    [`keys:\n${entry('Alice', H1, '"*"')}`, 'keys.yaml:2: keys[0].name: "Alice" must be lower-case a-z, 0-9, \'-\', \'.\' (a DNS-1123 name of at most 242 characters; it also names the key\'s Secret)'],
    [`keys:\n  - name: a\n    functions: "*"\n`, 'keys.yaml:2: keys[0].sha256: required'],
    [`keys:\n  - name: a\n    sha256: "${H1}"\n`, 'keys.yaml:2: keys[0].functions: required (a list of function ids, or "*")'],
    [`keys:\n${entry('a', H1, '[]')}`, 'keys.yaml:4: keys[0].functions: must not be empty (list function ids, or "*" for all)'],
    [`keys:\n${entry('a', H1, 'fn-a')}`, 'keys.yaml:4: keys[0].functions: must be a list of function ids, or "*"'],
    [`keys:\n${entry('a', H1, '[fn-a, "bad id"]')}`, 'keys.yaml:4: keys[0].functions[1]: "bad id" must be 1-128 characters of A-Za-z0-9._-'],
    [`keys:\n${entry('a', H1, '[1]')}`, 'keys.yaml:4: keys[0].functions[0]: must be a string (quote it)'],
    [`keys:\n${ok}    function: [x]\n`, 'keys.yaml:5: keys[0].function: unknown field (expected one of: name, sha256, functions)'],
    ['keys: [\n', 'keys.yaml:2: invalid YAML: '],
  ];
  for (const [text, want] of cases) {
    const got = failure(() => parseApiKeysFile(text, 'keys.yaml'));
    if (want.endsWith(': ')) t.ok(got.startsWith(want), want, { found: got });
    else t.equal(got, want);
  }
});

t.test('apiKeysFile.load', async (t) => {
  const dir = t.testdir({ 'keys.yaml': `keys:\n${entry('alice', H1, '"*"')}` });
  t.same(names((await apiKeysFile.load(join(dir, 'keys.yaml'))).value), ['alice']);
  await t.rejects(apiKeysFile.load(join(dir, 'nope.yaml')), { message: `api keys file ${join(dir, 'nope.yaml')}: does not exist` });
});

t.test('apiKeysFile.watch: a removed key is gone after the next check; a bad edit keeps the last good set', async (t) => {
  const dir = t.testdir({ 'keys.yaml': `keys:\n${entry('alice', H1, '"*"')}${entry('bob', H2, '[fn-a]')}` });
  const file = join(dir, 'keys.yaml');
  const got = changes<ApiKeyRecord[]>();
  const { log, lines, waitFor } = captureLog();
  const w = apiKeysFile.watch(file, got.onChange, log);
  t.teardown(() => w.close());
  t.same(names(await got.next()), ['alice', 'bob']);

  // Editors and Kubernetes replace the file by rename.
  await writeFile(join(dir, '.keys.yaml.tmp'), `keys:\n${entry('alice', H1, '"*"')}`);
  await rename(join(dir, '.keys.yaml.tmp'), file);
  t.same(names(await got.next()), ['alice'], 'removal seen');

  await writeFile(file, `keys:\n${entry('alice', 'nothex', '"*"')}`);
  await waitFor((l) => l.level === 'error');
  t.match(lines.find((l) => l.level === 'error'), {
    msg: 'invalid api keys file; keeping the last good keys',
    file,
    error: `${file}:3: keys[0].sha256: must be 64 hex characters`,
  });

  // A missing file is an error too (a rename in progress must not revoke every key).
  await rm(file);
  await waitFor((l) => l.level === 'error' && l.msg.startsWith('cannot read api keys file'));

  await writeFile(file, `keys:\n${entry('carol', H3, '[fn-c]')}`);
  const records = await got.next();
  t.same(records, [{ name: 'carol', sha256: H3, functions: new Set(['fn-c']) }], 'the next change delivered is the good file: the bad edit and the missing file delivered nothing');

  // Other files in the directory do not matter: the next delivery is the next change of the file.
  await writeFile(join(dir, 'other.yaml'), 'x');
  await writeFile(file, `keys:\n${entry('dave', H1, '[fn-d]')}`);
  t.same(names(await got.next()), ['dave'], 'the change after the other file is the next delivery');
  t.same(got.pending, [], 'and the only one');
});

t.test('the stat poll alone catches a change, also a same-size rewrite', async (t) => {
  const dir = t.testdir({ 'keys.yaml': `keys:\n${entry('alice', H1, '"*"')}${entry('bob', H2, '"*"')}` });
  const file = join(dir, 'keys.yaml');
  const got = changes<ApiKeyRecord[]>();
  const clock = new ManualClock();
  const w = apiKeysFile.watch(file, got.onChange, captureLog().log, { fsWatch: false, pollMs: 1000, clock });
  t.teardown(() => w.close());
  t.same(names(await got.next()), ['alice', 'bob']);
  await writeFile(file, `keys:\n${entry('bob', H2, '"*"')}`);
  clock.advance(1000);
  t.same(names(await got.next()), ['bob'], 'seen by the poll');
  // Same size, same inode, within the clock's two-second racy window: read again, found even
  // where timestamps are too coarse to tell.
  await writeFile(file, `keys:\n${entry('bot', H2, '"*"')}`);
  clock.advance(1000);
  t.same(names(await got.next()), ['bot'], 'a same-size rewrite seen by the next poll');
});

t.test('a Kubernetes-style ..data symlink swap is picked up', async (t) => {
  const dir = t.testdir({
    '..v1': { 'keys.yaml': `keys:\n${entry('alice', H1, '"*"')}` },
  });
  await symlink('..v1', join(dir, '..data'));
  await symlink(join('..data', 'keys.yaml'), join(dir, 'keys.yaml'));
  const got = changes<ApiKeyRecord[]>();
  const w = apiKeysFile.watch(join(dir, 'keys.yaml'), got.onChange, captureLog().log, { pollMs: 600_000 });
  t.teardown(() => w.close());
  t.same(names(await got.next()), ['alice']);

  await mkdir(join(dir, '..v2'));
  await writeFile(join(dir, '..v2', 'keys.yaml'), `keys:\n${entry('bob', H2, '"*"')}`);
  await symlink('..v2', join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  t.same(names(await got.next()), ['bob']);
});
