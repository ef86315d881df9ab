import t from 'tap';
import { createHash } from 'node:crypto';
import { parse } from 'yaml';
import { KEYS_USAGE, runKeysCommand } from '../../lib/auth/keys-command.ts';

interface Run { code: number; out: string; err: string }

function run(...argv: string[]): Run {
  let out = '';
  let err = '';
  const code = runKeysCommand(argv, (s) => { out += s; }, (s) => { err += s; });
  return { code, out, err };
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The key as printed on stderr. */
function keyOf(err: string): string {
  const m = /fngk_[A-Za-z0-9_-]{43}/.exec(err);
  if (m === null) throw new Error(`no key in ${err}`);
  return m[0];
}

interface KeyItem { name: string; sha256: string; functions: string[] }
interface Secret {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels: Record<string, string>; annotations: Record<string, string> };
  type: string;
  data: { sha256: string };
}

t.test('file output: a keys-file list item on stdout, the key once on stderr', async (t) => {
  const r = run('create', '--name', 'alice', '--functions', 'fn-a,fn-b');
  t.equal(r.code, 0);
  const key = keyOf(r.err);
  t.notMatch(r.out, key, 'the key never reaches stdout');
  t.notMatch(r.out, 'fngk_');
  const items = parse(r.out) as KeyItem[];
  t.same(items, [{ name: 'alice', sha256: sha256(key), functions: ['fn-a', 'fn-b'] }]);
  t.same(parse(`keys:\n${r.out}`), { keys: items }, 'pastes under keys:');
  t.match(r.err, 'shown only once');
  t.match(r.err, `authorization: Bearer ${key}`);
});

t.test('defaults: --functions * and --output file; --flag=value works', async (t) => {
  const r = run('create', '--name=bob');
  t.equal(r.code, 0);
  t.same(parse(r.out), [{ name: 'bob', sha256: sha256(keyOf(r.err)), functions: ['*'] }]);
  const r2 = run('create', '--name=carol', '--functions=fn-a,*', '--output=file');
  t.same((parse(r2.out) as KeyItem[])[0]?.functions, ['*'], '* anywhere means all');
  t.not(keyOf(r.err), keyOf(r2.err), 'a new key each time');
});

t.test('secret output: the Secret described in docs/reference.md (Credentials)', async (t) => {
  const r = run('create', '--output', 'secret', '--name', 'ci', '--functions', 'fn-a,fn.b_2', '--namespace', 'team-a');
  t.equal(r.code, 0);
  const key = keyOf(r.err);
  t.notMatch(r.out, 'fngk_');
  const secret = parse(r.out) as Secret;
  t.same(secret, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: 'fngate-key-ci',
      namespace: 'team-a',
      labels: { 'fngate.dev/api-key': 'true' },
      annotations: { 'fngate.dev/functions': 'fn-a,fn.b_2' },
    },
    type: 'Opaque',
    data: { sha256: Buffer.from(sha256(key)).toString('base64') },
  });
  t.match(r.err, 'shown only once');
  t.match(r.err, `authorization: Bearer ${key}`);

  const all = parse(run('create', '--name', 'ops', '--output', 'secret').out) as Secret;
  t.equal(all.metadata.annotations['fngate.dev/functions'], '*');
  t.equal(all.metadata.namespace, undefined);
});

t.test('help', async (t) => {
  for (const argv of [['--help'], ['-h'], ['help'], ['create', '--help']]) {
    const r = run(...argv);
    t.equal(r.code, 0, argv.join(' '));
    t.equal(r.out, KEYS_USAGE);
    t.equal(r.err, '');
  }
  t.match(KEYS_USAGE, /--name.*--functions.*--output.*--namespace/s);
});

t.test('usage errors name the flag, print nothing on stdout and return 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [[], /missing subcommand/],
    [['delete', '--name', 'a'], /unknown subcommand "delete"/],
    [['create'], /--name: required/],
    [['create', '--functions', 'fn-a'], /--name: required/],
    [['create', '--name'], /--name: needs a value/],
    [['create', '--name', '--functions', 'fn-a'], /--name: needs a value/],
    [['create', '--name', 'Alice'], /--name: key name "Alice": must be lower-case/],
    [['create', '--name', 'a', '--name', 'b'], /--name: given more than once/],
    [['create', '--name', 'a', '--functions', 'ok,not ok'], /--functions: function id "not ok" must be 1-128 characters/],
    [['create', '--name', 'a', '--functions', 'a,,b'], /--functions: empty function id/],
    [['create', '--name', 'a', '--functions='], /--functions: empty function id/],
    [['create', '--name', 'a', '--functions', 'x'.repeat(129)], /--functions: function id/],
    [['create', '--name', 'a', '--output', 'json'], /--output: "json" must be file or secret/],
    [['create', '--name', 'a', '--namespace', 'ns'], /--namespace: only applies to --output secret/],
    [['create', '--name', 'a', '--output', 'secret', '--namespace', 'Team_A'], /--namespace: "Team_A" is not/],
    [['create', '--name', 'a', '--colour', 'red'], /--colour: unknown flag/],
    [['create', '--name', 'a', '--colour=red'], /--colour: unknown flag/],
    [['create', '--name', 'a', 'extra'], /unexpected argument "extra"/],
  ];
  for (const [argv, message] of cases) {
    const r = run(...argv);
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.err, message, argv.join(' '));
    t.match(r.err, /^fngate keys: .*\nRun "fngate keys --help" for usage\.\n$/);
    t.equal(r.out, '', 'nothing on stdout');
    t.notMatch(r.err, 'fngk_', 'no key made');
  }
});
