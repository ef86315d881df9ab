import t from 'tap';
import { createHash } from 'node:crypto';
import { parse } from 'yaml';
import { createApiKey, hashApiKey, renderKeyFileRecord, renderKeySecret } from '../../lib/auth/api-key-create.ts';
import { parseApiKeysFile } from '../../lib/sources/file/api-keys-file.ts';

t.test('a key is fngk_ + 32 random bytes, and the record holds only its hash', async (t) => {
  const { key, record } = createApiKey({ name: 'alice', functions: ['fn-a', 'fn-b'] });
  t.match(key, /^fngk_[A-Za-z0-9_-]{43}$/);
  t.equal(Buffer.from(key.slice(5), 'base64url').length, 32);
  t.equal(record.sha256, createHash('sha256').update(key).digest('hex'));
  t.equal(hashApiKey(key), record.sha256);
  t.same(record, { name: 'alice', sha256: record.sha256, functions: new Set(['fn-a', 'fn-b']) });
  t.not(createApiKey({ name: 'alice', functions: '*' }).key, key, 'random');
  t.equal(createApiKey({ name: 'bob', functions: '*' }).record.functions, '*');
  t.equal(createApiKey({ name: 'bob', functions: ['fn-a', '*'] }).record.functions, '*');
});

t.test('hashApiKey is lower-case hex sha256', async (t) => {
  t.equal(hashApiKey('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

t.test('bad names and function lists are refused before a key is made', async (t) => {
  t.throws(() => createApiKey({ name: 'Alice', functions: '*' }), /key name "Alice": must be lower-case/);
  t.throws(() => createApiKey({ name: '', functions: '*' }), /key name "": /);
  t.throws(() => createApiKey({ name: 'a'.repeat(243), functions: '*' }), /at most 242 characters/);
  t.throws(() => createApiKey({ name: 'alice', functions: [] }), /at least one function id/);
  t.throws(() => createApiKey({ name: 'alice', functions: ['ok', 'not ok'] }), /function id "not ok"/);
});

t.test('renderKeyFileRecord appends cleanly under keys:', async (t) => {
  const a = createApiKey({ name: 'alice', functions: ['fn-a', '123', 'true'] }).record;
  const b = createApiKey({ name: 'bob', functions: '*' }).record;
  const item = renderKeyFileRecord(a);
  t.equal(item, `  - name: alice\n    sha256: ${a.sha256}\n    functions: [fn-a, "123", "true"]\n`);
  t.equal(renderKeyFileRecord(b), `  - name: bob\n    sha256: ${b.sha256}\n    functions: ["*"]\n`);
  t.same(parseApiKeysFile(`keys:\n${item}${renderKeyFileRecord(b)}`, 'keys.yaml'), [a, b], 'round-trips through the key file parser');
});

interface Secret {
  metadata: { name: string; namespace?: string; labels: Record<string, string>; annotations: Record<string, string> };
  data: { sha256: string };
}

t.test('renderKeySecret', async (t) => {
  const a = createApiKey({ name: 'alice', functions: ['fn-a', 'fn-b'] }).record;
  const secret = parse(renderKeySecret(a, 'team-a')) as Secret;
  t.same(secret, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: 'fngate-key-alice',
      namespace: 'team-a',
      labels: { 'fngate.dev/api-key': 'true' },
      annotations: { 'fngate.dev/functions': 'fn-a,fn-b' },
    },
    type: 'Opaque',
    data: { sha256: Buffer.from(a.sha256).toString('base64') },
  });
  t.equal(Buffer.from(secret.data.sha256, 'base64').toString(), a.sha256);

  const b = createApiKey({ name: 'bob', functions: '*' }).record;
  const text = renderKeySecret(b);
  t.match(text, 'fngate.dev/api-key: "true"', 'the label value stays a string');
  const bs = parse(text) as Secret;
  t.equal(bs.metadata.namespace, undefined, 'no namespace unless given');
  t.equal(bs.metadata.annotations['fngate.dev/functions'], '*');
});
