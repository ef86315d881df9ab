// The container image (Dockerfile) without Docker: this machine has no container engine,
// so the test reads the Dockerfile and runs its steps itself, each stage in a scratch
// directory standing in for the stage's filesystem: COPY from the build context (filtered
// by .dockerignore's rules for the paths used) or from an earlier stage, WORKDIR, and every
// RUN verbatim with `sh -c` (no absolute paths allowed in a RUN, so nothing leaves the
// scratch directory). The final stage is then started the way the image's ENTRYPOINT and
// the chart's command start it: `--help`, `keys create`, `fngate local` answering a real
// gRPC call on the image's preloaded mimalloc, and every dist/lib module importing with ONLY
// the production dependencies.
// `make image-check` runs this file; `make image` builds the real image where Docker is.
import t from 'tap';
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const DOCKERFILE = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
const DOCKERIGNORE = readFileSync(join(REPO, '.dockerignore'), 'utf8');
const work = mkdtempSync(join(tmpdir(), 'fngate-image-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

// ---------------------------------------------------------------- the Dockerfile

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | undefined;
  steps: Instruction[];
}

function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  // Join continuation lines, drop comments and blanks.
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) pending += `${line.slice(0, -1)} `;
    else {
      lines.push(pending + line);
      pending = '';
    }
  }
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+(.*)$/s.exec(line);
    if (m === null) throw new Error(`Dockerfile: cannot read "${line}"`);
    const op = (m[1] ?? '').toUpperCase();
    const rest = m[2] ?? '';
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (f === null) throw new Error(`Dockerfile: FROM ${rest}`);
      const from = (f[1] ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args.get(a ?? b ?? '') ?? '');
      stages.push({ from, name: f[2], steps: [] });
    } else if (op === 'ARG' && stages.length === 0) {
      const [k, v = ''] = rest.split('=', 2);
      args.set(k ?? '', v);
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) throw new Error(`Dockerfile: ${op} before FROM`);
      stage.steps.push({ op, args: rest });
    }
  }
  return { args, stages };
}

const { stages } = parseDockerfile(DOCKERFILE);
const final = stages.at(-1);
if (final === undefined) throw new Error('Dockerfile: no stage');
const stepsOf = (stage: Stage, op: string): string[] => stage.steps.filter((s) => s.op === op).map((s) => s.args);

/** A .dockerignore pattern as a RegExp: `**` any number of directories, `*` and `?` within one. */
function globRe(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (pattern.startsWith('**/', i)) {
      re += '(?:.*/)?';
      i += 2;
    } else if (pattern.startsWith('**', i)) {
      re += '.*';
      i += 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * Whether .dockerignore keeps `path` (relative to the context) in the build context: the
 * last pattern matching the path or one of its parent directories decides ("!" keeps).
 */
function inContext(path: string): boolean {
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let kept = true;
  for (const raw of DOCKERIGNORE.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negate = line.startsWith('!');
    const re = globRe((negate ? line.slice(1) : line).replace(/\/$/, ''));
    if (prefixes.some((p) => re.test(p))) kept = negate;
  }
  return kept;
}

// ---------------------------------------------------------------- running it

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

// The image's node is Node 24, like the one running this test (node_modules/.bin/node); the
// repo's node_modules/.bin is kept off PATH so a step only finds what its stage installed.
const nodeBin = dirname(process.execPath);
const hostPath = (process.env['PATH'] ?? '').split(delimiter).filter((p) => !p.startsWith(join(REPO, 'node_modules')));
const npmDir = hostPath.find((p) => existsSync(join(p, 'npm')));
const PATH = [nodeBin, ...(npmDir === undefined ? [] : [npmDir]), ...hostPath].join(delimiter);

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}, timeoutMs = 600_000): Promise<Run> {
  return new Promise((resolve) => {
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('npm_') && !k.startsWith('TAP')) base[k] = v;
    const child = spawn(cmd, args, {
      cwd,
      env: { ...base, PATH, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Stage name or index -> its root directory (the stand-in for its filesystem). */
const roots = new Map<string, string>();
const rootOf = (stage: Stage, i: number): string => join(work, `stage-${i}${stage.name === undefined ? '' : `-${stage.name}`}`);
const inRoot = (root: string, abs: string): string => join(root, abs);

/** Executes one stage; returns its root and what it ended with (cwd, env, user, entrypoint). */
async function buildStage(t: Test, stage: Stage, i: number) {
  const root = rootOf(stage, i);
  mkdirSync(root, { recursive: true });
  let cwd = '/';
  const env: Record<string, string> = {};
  let user = '';
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  const abs = (p: string): string => (isAbsolute(p) ? p : join(cwd, p));
  for (const step of stage.steps) {
    switch (step.op) {
      case 'WORKDIR':
        cwd = abs(step.args);
        mkdirSync(inRoot(root, cwd), { recursive: true });
        break;
      case 'ENV': {
        const [k, v = ''] = step.args.split('=', 2);
        env[k ?? ''] = v;
        break;
      }
      case 'USER':
        user = step.args;
        break;
      case 'ENTRYPOINT':
        entrypoint = JSON.parse(step.args) as string[];
        break;
      case 'CMD':
        cmd = JSON.parse(step.args) as string[];
        break;
      case 'ARG':
      case 'EXPOSE':
        break;
      case 'COPY': {
        const words = step.args.split(/\s+/);
        const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
        const paths = words.filter((w) => !w.startsWith('--'));
        const dest = abs(paths.pop() ?? '');
        for (const src of paths) {
          let source: string;
          if (from === undefined) {
            t.ok(inContext(src), `COPY ${src}: in the build context (.dockerignore)`);
            source = join(REPO, src);
          } else {
            const fromRoot = roots.get(from);
            if (fromRoot === undefined) throw new Error(`COPY --from=${from}: no such stage before this one`);
            source = inRoot(fromRoot, src);
          }
          if (!existsSync(source)) throw new Error(`COPY ${src}: ${source} does not exist`);
          // Docker's rules: a directory's contents go to dest; a file goes into dest/ when
          // dest ends with "/", else becomes dest.
          const target = statSync(source).isDirectory() || !dest.endsWith('/') ? inRoot(root, dest) : join(inRoot(root, dest), src.split('/').pop() ?? '');
          mkdirSync(dirname(target), { recursive: true });
          cpSync(source, target, {
            recursive: true,
            // The context as Docker sees it: what .dockerignore drops never arrives.
            filter: (p) => from !== undefined || inContext(relative(REPO, p)),
          });
        }
        break;
      }
      case 'RUN': {
        t.notMatch(step.args, /(^|[\s=])\//, `RUN ${step.args}: no absolute paths (it runs in a scratch directory here)`);
        const r = await run('sh', ['-c', step.args], inRoot(root, cwd), env);
        t.equal(r.code, 0, `RUN ${step.args}\n${r.stderr.slice(-4000)}`);
        if (r.code !== 0) throw new Error(`RUN ${step.args} failed`);
        break;
      }
      default:
        throw new Error(`Dockerfile: ${step.op} is not known to this test; teach it, or keep the Dockerfile simple`);
    }
  }
  roots.set(stage.name ?? String(i), root);
  return { root, cwd, env, user, entrypoint, cmd };
}

// ---------------------------------------------------------------- checks

t.test('the Dockerfile: Node 24 bases, production dependencies only, non-root', async (t) => {
  for (const s of stages) t.match(s.from, /^(node:24([.-]|$)|gcr\.io\/distroless\/nodejs24)/, `FROM ${s.from}: Node 24`);
  t.ok(stages.length >= 2, 'multi-stage');
  const modules = final.steps.find((s) => s.op === 'COPY' && /\bnode_modules\b/.test(s.args));
  const depsStage = stages.find((s) => s.name === /--from=(\S+)/.exec(modules?.args ?? '')?.[1]);
  t.ok(depsStage, 'the final node_modules come from an earlier stage');
  t.match(stepsOf(depsStage ?? final, 'RUN').join('\n'), /npm ci\b.*--omit=dev/, 'that stage installs with npm ci --omit=dev');
  t.same(stepsOf(final, 'RUN'), [], 'nothing runs in the final stage (no build tools end up there)');
  const user = stepsOf(final, 'USER').at(-1) ?? '';
  t.match(user, /^[1-9]\d*(:\d+)?$/, 'a numeric non-root USER, so runAsNonRoot can check it');
  t.notOk(final.steps.some((s) => s.op === 'COPY' && /^\.\s/.test(s.args)), 'no COPY of the whole context');
  for (const p of ['node_modules', 'dist', '.cache', '.git', 'test', 'lib/x/node_modules']) t.notOk(inContext(p), `${p} is not in the build context`);
  for (const p of ['package.json', 'package-lock.json', 'protos/greeter.proto', 'lib/config/load.ts', 'cmd/fngate.ts']) t.ok(inContext(p), `${p} is`);
});

t.test('the image built without Docker runs fngate with production dependencies only', async (t) => {
  let last: Awaited<ReturnType<typeof buildStage>> | undefined;
  for (const [i, stage] of stages.entries()) last = await buildStage(t, stage, i);
  if (last === undefined) throw new Error('no stages');
  const { root, cwd, env, entrypoint, cmd } = last;
  const app = inRoot(root, cwd);
  t.same(entrypoint, ['node', '/app/dist/cmd/fngate.js'], 'ENTRYPOINT: the program the chart runs');
  t.same(cmd, ['serve', '--kubernetes'], 'CMD: the gateway in Kubernetes mode');
  t.equal(env['NODE_ENV'], 'production');

  // Only production dependencies: no dev package is in node_modules.
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const devOnly = Object.entries(lock.packages).filter(([path, p]) => path !== '' && p.dev === true).map(([path]) => path);
  t.ok(devOnly.includes('node_modules/typescript') && devOnly.includes('node_modules/tap'), 'the lock file marks dev packages');
  t.same(devOnly.filter((p) => existsSync(join(app, p))), [], 'no dev dependency in the image');
  t.ok(existsSync(join(app, 'node_modules/@kubernetes/client-node')), '@kubernetes/client-node is there');
  t.notOk(existsSync(join(app, 'node_modules/.bin/node')), 'no node@24 devDependency shim');
  for (const p of ['dist/cmd/fngate.js', 'protos/greeter.proto', 'package.json']) t.ok(existsSync(join(app, p)), p);
  t.notOk(existsSync(join(app, 'lib')) || existsSync(join(app, 'test')) || existsSync(join(app, 'tsconfig.json')), 'no sources, tests or build config');

  // The image preloads mimalloc from a file an earlier stage fetched; here that file is under
  // the stage root, so the path moves with it.
  const preload = env['LD_PRELOAD'] ?? '';
  t.match(preload, /^\/.*libmimalloc\.so\.2$/, 'LD_PRELOAD names the image\'s mimalloc');
  t.ok(existsSync(inRoot(root, preload)) && readFileSync(inRoot(root, preload)).subarray(0, 4).equals(Buffer.from('\x7fELF', 'latin1')), `${preload} is in the image, a shared object`);
  const imageEnv = { ...env, LD_PRELOAD: inRoot(root, preload) };

  const [node = 'node', program = ''] = entrypoint;
  const fngate = (args: string[], timeoutMs?: number) => run(node, [inRoot(root, program), ...args], app, imageEnv, timeoutMs);

  const help = await fngate(['--help']);
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /serve\s+run the gateway/);
  const serveHelp = await fngate(['serve', '--help']);
  t.equal(serveHelp.code, 0, serveHelp.stderr);
  t.match(serveHelp.stdout, /--kubernetes/);
  t.match(serveHelp.stdout, /--drain-timeout DURATION/);

  const key = await fngate(['keys', 'create', '--name', 'image-check', '--output', 'secret']);
  t.equal(key.code, 0, key.stderr);
  t.match(key.stdout, /kind: Secret/);
  t.match(key.stdout, /fngate\.dev\/api-key: "true"/);
  t.match(key.stderr, /fngk_/, 'the key itself, on stderr');

  // Every module of the gateway loads (imports resolve against production dependencies).
  const libFiles: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith('.js')) libFiles.push(join(dir, e.name));
    }
  };
  walk(join(app, 'dist/lib'));
  t.ok(libFiles.length > 20, `${libFiles.length} modules in dist/lib`);
  const importAll = `for (const f of ${JSON.stringify(libFiles.map((f) => pathToFileURL(f).href))}) await import(f);`;
  const imported = await run(node, ['--input-type=module', '-e', importAll], app, imageEnv);
  t.equal(imported.code, 0, `every dist/lib module imports:\n${imported.stderr}`);

  // The embedded default end to end: the Greeter backend (grpc-js, protos/) behind the
  // gateway, called through it with the printed key.
  const admin = await freePort();
  const listen = await freePort();
  const child = spawn(node, [inRoot(root, program), 'local', '--listen', `127.0.0.1:${listen}`, '--admin', `127.0.0.1:${admin}`], {
    cwd: app,
    env: { ...process.env, PATH, ...imageEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let errOut = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (errOut += c));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const deadline = Date.now() + 60_000;
  let ready = false;
  while (!ready && Date.now() < deadline && child.exitCode === null) {
    ready = await fetch(`http://127.0.0.1:${admin}/readyz`).then((r) => r.ok, () => false);
    if (!ready) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(ready, `fngate local is ready\n${errOut}`);
  const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8');
  t.ok(maps.includes(inRoot(root, preload)), 'the running gateway has the image\'s mimalloc mapped');
  t.match(out + errOut, /"msg":"fngate listening".*"allocator":"mimalloc"/, 'and says so in its start-up line');
  const apiKey = /fngk_[A-Za-z0-9_-]+/.exec(out)?.[0];
  t.ok(apiKey, 'fngate local printed a key');
  const grpcurl = join(REPO, '.cache/bin/grpcurl');
  if (apiKey !== undefined && existsSync(grpcurl)) {
    const call = await run(
      grpcurl,
      ['-plaintext', '-import-path', join(app, 'protos'), '-proto', 'greeter.proto', '-H', `authorization: Bearer ${apiKey}`, '-H', 'function-id: 6f1e2c1a-3b1d-4c55-9a8e-0f7c2d1b9e10', '-d', '{"name": "image"}', `127.0.0.1:${listen}`, 'helloworld.Greeter/SayHello'],
      app,
      {},
      30_000,
    );
    t.equal(call.code, 0, call.stderr);
    t.match(call.stdout, /image/, 'the Greeter answered through the gateway');
  } else if (apiKey !== undefined) {
    t.comment('grpcurl not built (make tools): skipping the call');
  }
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: drains and exits 0');
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
    });
  });
}
