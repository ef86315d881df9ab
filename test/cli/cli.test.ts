// The command line (docs/reference.md, Command line), run as users run it: `node dist/cmd/fngate.js ...` as a
// child process. Bad flags, environment variables, config keys, manifests and key files stop
// start-up with a message naming what is wrong; `keys create` makes a usable key; `fngate
// local` prints instructions with which the three example clients in examples/ succeed.
import t from 'tap';
import type { Test } from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { startEchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import { writeFunctionsDir } from '../helpers/files.ts';
import { FNGATE_ENTRY, REPO_ROOT, SESSION_ID, startGateway, startLocal } from '../helpers/gateway.ts';
import { PYTHON } from '../helpers/python.ts';


interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment without inherited FNGATE_* variables, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('FNGATE_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs `file args` to its end (killed after `timeoutMs`, which then shows as a signal). */
function run(file: string, args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolvePromise) => {
    execFile(
      file,
      args,
      { cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? cleanEnv(), timeout: opts.timeoutMs ?? 20_000, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolvePromise({ code, signal: err?.signal ?? null, stdout, stderr });
      },
    );
  });
}

/** `fngate ...args` (the built entry). Listeners default to port 0 so a wrongly started gateway cannot collide. */
const fngate = (args: string[], env: Record<string, string> = {}, cwd?: string): Promise<Run> =>
  run(process.execPath, [FNGATE_ENTRY, ...args], { env: cleanEnv(env), ...(cwd === undefined ? {} : { cwd }) });


/** A start-up that stopped: non-zero exit (not killed by the timeout), nothing listening, every `parts` in stderr. */
function expectStartupError(t: Test, r: Run, parts: string[], what: string): void {
  t.equal(r.signal, null, `${what}: exited by itself (not killed after the timeout)`);
  t.ok(r.code !== null && r.code !== 0, `${what}: non-zero exit (${r.code})`);
  t.notMatch(r.stderr, /fngate listening/, `${what}: never started listening`);
  for (const part of parts) t.ok(r.stderr.includes(part), `${what}: the message names ${JSON.stringify(part)}\n${r.stderr}`);
}

const PORTS = ['--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'];

t.test('bad settings stop start-up, naming the flag, variable or file key', async (t) => {
  const dir = t.testdir({});

  const banana = await fngate(['serve', ...PORTS, '--idle-timeout', 'banana']);
  expectStartupError(t, banana, ['--idle-timeout', 'banana'], '--idle-timeout banana');
  t.equal(banana.stderr.split('\n').filter((l) => l !== '').length, 1, 'one line');

  const unknown = await fngate(['serve', ...PORTS, '--idle-timout', '1s']);
  expectStartupError(t, unknown, ['--idle-timout', 'unknown flag'], 'unknown flag');

  const env = await fngate(['serve', ...PORTS], { FNGATE_IDLE_TIMEOUT: 'bad' });
  expectStartupError(t, env, ['FNGATE_IDLE_TIMEOUT', 'bad'], 'FNGATE_IDLE_TIMEOUT=bad');

  const config = join(dir, 'fngate.yaml');
  writeFileSync(config, 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nidle-timeout: 1s\nidle_timeout: 2s\n');
  const file = await fngate(['serve', '--config', config]);
  expectStartupError(t, file, [config, 'idle_timeout', 'unknown key'], '--config with an unknown key');

  const fileValue = join(dir, 'bad-value.yaml');
  writeFileSync(fileValue, 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\ndrain-timeout: soon\n');
  const fv = await fngate(['serve', '--config', fileValue]);
  expectStartupError(t, fv, [fileValue, 'drain-timeout', 'soon'], '--config with a bad value');

  // Sanity: the same file without the mistake starts (so the failures above are the mistakes').
  const good = join(dir, 'good.yaml');
  writeFileSync(good, 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nidle-timeout: 1s\n');
  const gw = await startGateway(['--config', good]);
  t.teardown(() => gw.stop());
  t.match(gw.h2c, /^127\.0\.0\.1:\d+$/, 'a good --config starts');
  await gw.stop();
});

const MISSING_FUNCTION_ID = `apiVersion: fngate.dev/v1alpha1
kind: Function
metadata: { name: no-id, namespace: default }
spec:
  activeVersion: v1
  versions:
    - versionId: v1
      endpoints: ["127.0.0.1:50051"]
`;

const DUPLICATE_VERSION = `apiVersion: fngate.dev/v1alpha1
kind: Function
metadata: { name: dup, namespace: default }
spec:
  functionId: fn-dup
  activeVersion: v1
  versions:
    - versionId: v1
      endpoints: ["127.0.0.1:50051"]
    - versionId: v1
      endpoints: ["127.0.0.1:50052"]
`;

t.test('a bad Function manifest stops start-up, naming the file and the field', async (t) => {
  const dir = t.testdir({});
  const cases: Array<{ name: string; yaml: string; field: string; reason: string }> = [
    { name: 'no-id', yaml: MISSING_FUNCTION_ID, field: 'spec.functionId', reason: 'required' },
    { name: 'dup', yaml: DUPLICATE_VERSION, field: 'spec.versions[1].versionId', reason: 'duplicate "v1"' },
  ];
  for (const c of cases) {
    const fns = join(dir, c.name);
    mkdirSync(fns);
    // A good Function beside the bad one: the bad one must still stop start-up.
    writeFunctionsDir(fns, [{ name: 'good', functionId: 'fn-good', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: ['127.0.0.1:50051'] }] }]);
    const file = join(fns, `${c.name}.yaml`);
    writeFileSync(file, c.yaml);
    const r = await fngate(['serve', ...PORTS, '--functions', fns]);
    expectStartupError(t, r, [file, c.field, c.reason], `${c.name}.yaml`);
  }
});

t.test('a bad API keys file stops start-up, naming the file and the field', async (t) => {
  const dir = t.testdir({});
  const keys = join(dir, 'keys.yaml');
  writeFileSync(keys, `keys:\n  - name: ok\n    sha256: ${'a'.repeat(64)}\n    functions: ["*"]\n  - name: broken\n    sha256: not-a-digest\n    functions: ["*"]\n`);
  const r = await fngate(['serve', ...PORTS, '--api-keys', keys]);
  expectStartupError(t, r, [keys, 'keys[1].sha256', '64 hex'], 'bad sha256');
});

t.test('keys create: the printed record holds the SHA-256 of the key printed on stderr, and it works', async (t) => {
  const r = await fngate(['keys', 'create', '--name', 'ci']);
  t.equal(r.code, 0, r.stderr);
  const m = /^ {2}(fngk_[A-Za-z0-9_-]+)$/m.exec(r.stderr);
  if (m === null) throw new Error(`no key line on stderr:\n${r.stderr}`);
  const key = m[1] as string;
  t.notMatch(r.stdout, key, 'the key is not on stdout');
  const records = parse(r.stdout) as Array<{ name: string; sha256: string; functions: string[] }>;
  t.same(records, [{ name: 'ci', sha256: createHash('sha256').update(key).digest('hex'), functions: ['*'] }], 'the record on stdout');

  // Pasted under `keys:`, the record lets the key invoke a function through `fngate serve`.
  const dir = t.testdir({});
  const b = await startEchoBackend({ name: 'keys-backend' });
  t.teardown(() => b.stop(1000));
  writeFunctionsDir(join(dir, 'fns'), [{ name: 'k', functionId: 'fn-keys', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [b.address] }] }]);
  writeFileSync(join(dir, 'keys.yaml'), `keys:\n${r.stdout}`);
  const gw = await startGateway(['--functions', join(dir, 'fns'), '--api-keys', join(dir, 'keys.yaml')]);
  t.teardown(() => gw.stop());
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  const ok = await c.unary({ authorization: `Bearer ${key}`, 'function-id': 'fn-keys' });
  t.equal(ok.status, 0, ok.details);
  t.match(ok.reply?.metadata, /^fngate-subject: ci$/m, 'the function sees the key name');
  const other = await c.unary({ authorization: `Bearer ${key}x`, 'function-id': 'fn-keys' });
  t.equal(other.status, 16, 'another key is refused');
});

t.test('fngate local: the printed instructions work with the three example clients', async (t) => {
  const local = await startLocal();
  t.teardown(() => local.stop());
  const out = await local.waitForStdout(/Ctrl-C/, 10_000);

  const exported = /^ *export (FNGATE_ADDR=\S+) (FNGATE_API_KEY=\S+) (FNGATE_FUNCTION_ID=\S+)$/m.exec(out);
  if (exported === null) throw new Error(`no export line in the instructions:\n${out}`);
  const vars: Record<string, string> = {};
  for (const assignment of exported.slice(1)) {
    const eq = (assignment as string).indexOf('=');
    vars[(assignment as string).slice(0, eq)] = (assignment as string).slice(eq + 1);
  }
  t.equal(vars['FNGATE_ADDR'], local.h2c, 'FNGATE_ADDR is the gateway listener');
  t.match(vars['FNGATE_API_KEY'], /^fngk_/);
  t.match(vars['FNGATE_FUNCTION_ID'], /^[A-Za-z0-9._-]{1,128}$/);
  t.match(out, `function-id     ${vars['FNGATE_FUNCTION_ID']}`);
  t.match(out, `API key         ${vars['FNGATE_API_KEY']}`);

  // The example paths, as printed (relative to where fngate was started: the repo root).
  const pythonPath = /^ *python3 (\S+)/m.exec(out)?.[1];
  const nodePath = /^ *node (\S+)/m.exec(out)?.[1];
  const grpcurlScript = /^ *(\S*grpcurl\.sh)$/m.exec(out)?.[1];
  t.equal(pythonPath && resolve(REPO_ROOT, pythonPath), join(REPO_ROOT, 'examples/python/greeter_client.py'));
  t.equal(nodePath && resolve(REPO_ROOT, nodePath), join(REPO_ROOT, 'examples/node/greeter_client.mjs'));
  t.equal(grpcurlScript && resolve(REPO_ROOT, grpcurlScript), join(REPO_ROOT, 'examples/grpcurl.sh'));

  const env = cleanEnv({ ...vars, PATH: `${join(REPO_ROOT, '.cache/bin')}:${process.env['PATH'] ?? ''}` });
  /** The session ids an example printed as "(nvcf-reqid: ID)". */
  const reqids = (text: string): string[] => [...text.matchAll(/\(nvcf-reqid: ([^)]*)\)/g)].map((x) => x[1] as string);

  const node = await run(process.execPath, [resolve(REPO_ROOT, nodePath ?? '')], { env });
  t.equal(node.code, 0, `node example exits 0\n${node.stdout}${node.stderr}`);
  t.match(node.stdout, /^SayHello: Hello, fngate!$/m);
  t.equal(node.stdout.match(/^SayHelloStream: /gm)?.length, 3, 'node: 3 stream replies');
  t.match(node.stdout, /^Chat: .*Alice/m);
  t.match(node.stdout, /^Chat: .*Bob/m);
  const nodeIds = reqids(node.stdout);
  t.equal(nodeIds.length, 3, `node: an nvcf-reqid per call: ${nodeIds.join(', ')}`);
  t.ok(nodeIds.every((id) => SESSION_ID.test(id)), 'node: each is a session id');
  t.equal(new Set(nodeIds).size, 1, 'node: one channel, one session');

  const py = await run(PYTHON, [resolve(REPO_ROOT, pythonPath ?? '')], { env });
  t.equal(py.code, 0, `python example exits 0\n${py.stdout}${py.stderr}`);
  t.match(py.stdout, /^SayHello: Hello, fngate!$/m);
  t.equal(py.stdout.match(/^SayHelloStream: /gm)?.length, 3, 'python: 3 stream replies');
  t.match(py.stdout, /^Chat: .*Alice/m);
  t.match(py.stdout, /^Chat: .*Bob/m);
  const pyIds = reqids(py.stdout);
  t.equal(pyIds.length, 3, `python: an nvcf-reqid per call: ${pyIds.join(', ')}`);
  t.ok(pyIds.every((id) => SESSION_ID.test(id)), 'python: each is a session id');
  t.equal(new Set(pyIds).size, 1, 'python: one channel, one session');
  t.not(pyIds[0], nodeIds[0], 'another client, another session');

  const sh = await run('bash', [resolve(REPO_ROOT, grpcurlScript ?? '')], { env });
  t.equal(sh.code, 0, `grpcurl.sh exits 0\n${sh.stdout}${sh.stderr}`);
  t.match(sh.stdout, /"message": "Hello, fngate!"/);
  t.equal(sh.stdout.match(/^== /gm)?.length, 3, 'grpcurl.sh: three calls');
  const shIds = reqids(sh.stdout);
  t.equal(shIds.length, 3, `grpcurl.sh: an nvcf-reqid per call: ${shIds.join(', ')}`);
  t.ok(shIds.every((id) => SESSION_ID.test(id)), 'grpcurl.sh: each is a session id');

  // The grpcurl command printed above the examples works as printed, too.
  const printed = /^ *(grpcurl -plaintext[\s\S]*?helloworld\.Greeter\/SayHello)$/m.exec(out)?.[1];
  if (printed === undefined) throw new Error(`no grpcurl command in the instructions:\n${out}`);
  const direct = await run('bash', ['-c', printed], { env });
  t.equal(direct.code, 0, `the printed grpcurl command works\n${direct.stdout}${direct.stderr}`);
  t.match(direct.stdout, /"message": "Hello, world!"/);

  t.same(local.logLines().filter((l) => l['level'] === 'error'), [], 'nothing logged at level error');
});
