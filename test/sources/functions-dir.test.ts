import t from 'tap';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadFunctionsDir, watchFunctionsDir } from '../../lib/sources/file/functions-dir.ts';
import type { FunctionSpec } from '../../lib/registry/types.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { captureLog, changes } from './changes.ts';

const fn = (name: string, functionId: string, endpoint = '127.0.0.1:50051'): string => `apiVersion: fngate.dev/v1alpha1
kind: Function
metadata: { name: ${name} }
spec:
  functionId: ${functionId}
  activeVersion: v1
  versions:
    - versionId: v1
      endpoints: ["${endpoint}"]
`;

/** The rejection's message (t.rejects only matches substrings). */
const failure = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'did not fail',
    (err: unknown) => `${(err as Error).name}: ${(err as Error).message}`,
  );

const ids = (specs: readonly FunctionSpec[]): string[] => specs.map((s) => s.functionId);

/** Replaces a file the way editors and Kubernetes do: write a temp file, rename over. */
async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = join(file, '..', `.tmp-${Math.random().toString(36).slice(2)}`);
  await writeFile(tmp, text);
  await rename(tmp, file);
}

t.test('loadFunctionsDir reads every yaml file, all documents, in name order', async (t) => {
  const dir = t.testdir({
    'b.yml': fn('b', 'fn-b'),
    'a.yaml': `---\n# nothing here\n---\n${fn('a1', 'fn-a1')}---\n${fn('a2', 'fn-a2')}`,
    '.hidden.yaml': 'not: [valid',
    'notes.txt': 'ignored',
    'empty.yaml': '',
    'dir.yaml': {},
  });
  const { specs, files } = await loadFunctionsDir(dir);
  t.same(ids(specs), ['fn-a1', 'fn-a2', 'fn-b']);
  t.same([...files.keys()], ['a.yaml', 'b.yml', 'empty.yaml'], 'the files read, for a watcher to start from');
  t.equal(specs[0]?.origin, `${join(dir, 'a.yaml')} (document 2)`);
  t.equal(specs[2]?.origin, join(dir, 'b.yml'));
  t.same(specs[2]?.versions[0]?.backend, { kind: 'static', endpoints: ['127.0.0.1:50051'] });
});

t.test('loadFunctionsDir errors name the file, line and field', async (t) => {
  const dup = fn('a', 'fn-a').replace('endpoints: ["127.0.0.1:50051"]', 'endpoints: ["127.0.0.1:50051"]\n    - versionId: v1\n      endpoints: ["127.0.0.1:50052"]');
  const dir = t.testdir({
    'ok.yaml': fn('ok', 'fn-ok'),
    'two.yaml': `${fn('first', 'fn-first')}---\n${dup}`,
  });
  const file = join(dir, 'two.yaml');
  t.equal(await failure(loadFunctionsDir(dir)), `ManifestError: ${file}:20 (document 2): spec.versions[1].versionId: duplicate "v1"`);

  await writeFile(file, fn('x', 'fn-x').replace('functionId: fn-x', 'functionId: "has space"'));
  t.equal(await failure(loadFunctionsDir(dir)), `ManifestError: ${file}:5: spec.functionId: "has space" must be 1-128 characters of A-Za-z0-9._-`);

  await writeFile(file, fn('x', 'fn-x').replace('  functionId: fn-x\n', ''));
  t.equal(await failure(loadFunctionsDir(dir)), `ManifestError: ${file}:5: spec.functionId: required`);

  await writeFile(file, 'kind: Function\nmetadata: { name: [x }\n');
  t.match(await failure(loadFunctionsDir(dir)), `ManifestError: ${file}:2: invalid YAML: `);
});

t.test('loadFunctionsDir on a missing directory or a file', async (t) => {
  const dir = t.testdir({ 'file.yaml': '' });
  t.equal(await failure(loadFunctionsDir(join(dir, 'nope'))), `Error: functions directory ${join(dir, 'nope')}: does not exist`);
  t.equal(await failure(loadFunctionsDir(join(dir, 'file.yaml'))), `Error: functions directory ${join(dir, 'file.yaml')}: is not a directory`);
});

t.test('watchFunctionsDir follows writes, renames and deletes', async (t) => {
  const dir = t.testdir({ 'a.yaml': fn('a', 'fn-a') });
  const got = changes<FunctionSpec[]>();
  const { log, lines, waitFor } = captureLog();
  // No periodic re-scan here: this exercises the fs.watch path.
  const w = watchFunctionsDir(dir, got.onChange, log, { pollMs: 600_000 });
  t.teardown(() => w.close());

  t.same(ids(await got.next()), ['fn-a'], 'first scan reports the current set');

  await writeFile(join(dir, 'b.yaml'), fn('b', 'fn-b'));
  t.same(ids(await got.next()), ['fn-a', 'fn-b'], 'new file');

  await replaceFile(join(dir, 'a.yaml'), fn('a', 'fn-a', '127.0.0.1:60000'));
  const renamed = await got.next();
  t.same(renamed[0]?.versions[0]?.backend, { kind: 'static', endpoints: ['127.0.0.1:60000'] }, 'replaced by rename');

  // A bad edit: logged, and the file's last good content stays.
  await writeFile(join(dir, 'a.yaml'), fn('a', 'fn-a').replace('activeVersion: v1', 'activeVersion: v9'));
  await waitFor((l) => l.level === 'error' && String(l['error']).includes('spec.activeVersion'));
  const bad = lines.find((l) => l.level === 'error');
  t.match(bad, { file: join(dir, 'a.yaml'), kept: ['fn-a'] });
  t.match(String(bad?.['error']), `${join(dir, 'a.yaml')}:6: spec.activeVersion: "v9" names no version`);

  await writeFile(join(dir, 'a.yaml'), fn('a', 'fn-a2'));
  t.same(ids(await got.next()), ['fn-a2', 'fn-b'], 'the next delivery is the fixed file: the bad edit delivered nothing');

  await rm(join(dir, 'b.yaml'));
  t.same(ids(await got.next()), ['fn-a2'], 'deleted file drops its functions');

  // Dotfiles and other extensions do not matter: the next delivery is the manifest after them.
  await writeFile(join(dir, '.a.yaml.swp'), 'junk');
  await writeFile(join(dir, 'README.md'), 'junk');
  await writeFile(join(dir, 'c.yaml'), fn('c', 'fn-c'));
  t.same(ids(await got.next()), ['fn-a2', 'fn-c'], 'the manifest written after them');
  t.same(got.pending, [], 'and nothing else');
});

t.test('a watcher started from the load reports only what changed since', async (t) => {
  const dir = t.testdir({ 'a.yaml': fn('a', 'fn-a'), 'b.yaml': fn('b', 'fn-b'), 'empty.yaml': '' });
  const loadLog = captureLog();
  const snapshot = await loadFunctionsDir(dir, loadLog.log);
  t.same(loadLog.lines.map((l) => [l['msg'], l['file'], l['functions']]), [
    ['functions file loaded', join(dir, 'a.yaml'), ['fn-a']],
    ['functions file loaded', join(dir, 'b.yaml'), ['fn-b']],
    ['functions file loaded', join(dir, 'empty.yaml'), []],
  ], 'the load logs each file as the watcher logs a reload');

  // A file without functions removed since the load: the first scan logs that (the mark that
  // it has run) and, no function having changed, delivers nothing.
  await rm(join(dir, 'empty.yaml'));
  const got = changes<FunctionSpec[]>();
  const { log, lines, waitFor } = captureLog();
  const w = watchFunctionsDir(dir, got.onChange, log, { pollMs: 100 }, snapshot);
  t.teardown(() => w.close());
  await waitFor((l) => l.msg === 'functions file removed');
  t.same(got.pending, [], 'the first scan, done: nothing delivered');

  await writeFile(join(dir, 'b.yaml'), fn('b', 'fn-b2'));
  t.same(ids(await got.next()), ['fn-a', 'fn-b2'], 'the first delivery is the change after it, with the rest');
  t.same(lines.map((l) => [l['msg'], l['file']]), [
    ['functions file removed', join(dir, 'empty.yaml')],
    ['functions file loaded', join(dir, 'b.yaml')],
  ], 'and only the changed file read and logged: a.yaml never');
});

t.test('a change between the load and the watcher is not missed', async (t) => {
  const dir = t.testdir({ 'a.yaml': fn('a', 'fn-a') });
  const snapshot = await loadFunctionsDir(dir);
  await writeFile(join(dir, 'c.yaml'), fn('c', 'fn-c'));
  const got = changes<FunctionSpec[]>();
  const w = watchFunctionsDir(dir, got.onChange, captureLog().log, {}, snapshot);
  t.teardown(() => w.close());
  t.same(ids(await got.next()), ['fn-a', 'fn-c']);
});

t.test('a file that is invalid from the start contributes nothing until fixed', async (t) => {
  const dir = t.testdir({ 'a.yaml': fn('a', 'fn-a'), 'b.yaml': 'spec: {}' });
  const got = changes<FunctionSpec[]>();
  const w = watchFunctionsDir(dir, got.onChange, captureLog().log);
  t.teardown(() => w.close());
  t.same(ids(await got.next()), ['fn-a']);
  await writeFile(join(dir, 'b.yaml'), fn('b', 'fn-b'));
  t.same(ids(await got.next()), ['fn-a', 'fn-b']);
});

t.test('the periodic re-scan catches changes without fs events', async (t) => {
  const dir = t.testdir({ 'a.yaml': fn('a', 'fn-a') });
  const got = changes<FunctionSpec[]>();
  const w = watchFunctionsDir(dir, got.onChange, captureLog().log, { fsWatch: false, pollMs: 200 });
  t.teardown(() => w.close());
  t.same(ids(await got.next()), ['fn-a']);
  await replaceFile(join(dir, 'a.yaml'), fn('a', 'fn-a2'));
  t.same(ids(await got.next(1000)), ['fn-a2']);
  await mkdir(join(dir, 'sub.yaml'));
  await rm(join(dir, 'a.yaml'));
  t.same(ids(await got.next(1000)), []);
});

t.test('a directory that disappears keeps the current functions', async (t) => {
  const root = t.testdir({ fns: { 'a.yaml': fn('a', 'fn-a') } });
  const dir = join(root, 'fns');
  const got = changes<FunctionSpec[]>();
  const { log, waitFor } = captureLog();
  const w = watchFunctionsDir(dir, got.onChange, log, { pollMs: 200 });
  t.teardown(() => w.close());
  t.same(ids(await got.next()), ['fn-a']);
  await rm(dir, { recursive: true });
  await waitFor((l) => l.level === 'error' && l.msg.startsWith('cannot list functions directory'));
  t.same(got.pending, []);
  await mkdir(dir);
  await writeFile(join(dir, 'b.yaml'), fn('b', 'fn-b'));
  // A re-scan may catch the new directory while still empty (an honest "no functions")
  // before b.yaml lands; what matters is that b.yaml is then picked up.
  let seen = ids(await got.next());
  if (seen.length === 0) seen = ids(await got.next());
  t.same(seen, ['fn-b'], 'a new directory is picked up again');
  await writeFile(join(dir, 'c.yaml'), fn('c', 'fn-c'));
  t.same(ids(await got.next()), ['fn-b', 'fn-c']);
});

t.test('close stops notifications', async (t) => {
  const dir = t.testdir({ 'a.yaml': fn('a', 'fn-a') });
  const clock = new ManualClock();
  const timing = { fsWatch: false, pollMs: 100, clock };
  const got = changes<FunctionSpec[]>();
  const w = watchFunctionsDir(dir, got.onChange, captureLog().log, timing);
  await got.next();
  w.close();
  t.equal(clock.pending, 0, 'closed: no poll left');

  // A watch still open on the same clock, polled at the same moment the closed one would be,
  // sees the change; the closed one has delivered nothing.
  const open = changes<FunctionSpec[]>();
  const w2 = watchFunctionsDir(dir, open.onChange, captureLog().log, timing);
  t.teardown(() => w2.close());
  t.same(ids(await open.next()), ['fn-a']);
  await writeFile(join(dir, 'b.yaml'), fn('b', 'fn-b'));
  clock.advance(100);
  t.same(ids(await open.next()), ['fn-a', 'fn-b'], 'the open watch delivers the change');
  t.same(got.pending, [], 'the closed one delivered nothing');
});
