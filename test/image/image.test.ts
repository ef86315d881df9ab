// The container image `make image` built (FNGATE_IMAGE), run by the engine that built it the
// way the chart runs it: its non-root user, a read-only root filesystem, every capability
// dropped, no new privileges, the chart's files mounted under /etc/fngate (config, Functions,
// keys, session key, TLS). Through the published ports: grpcio and grpc-js calls of all four
// kinds over h2c and TLS, /readyz and /metrics, mimalloc mapped in the gateway (PID 1). Then
// SIGTERM to the container: the stream in flight finishes, a new call gets UNAVAILABLE, and
// the container exits 0 well inside the drain time. Also: what the image must not hold, and
// the size of the layers fngate adds over its base.
import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEchoBackend } from '../helpers/backend.ts';
import { echoClient, type EchoClient } from '../helpers/echo-client.ts';
import { makeTlsCert, randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { endpointAddress } from '../helpers/kube.ts';
import { runPythonClient } from '../helpers/python.ts';
import { waitFor, waitForAsync } from '../helpers/wait.ts';

const IMAGE = process.env['FNGATE_IMAGE'];
if (IMAGE === undefined || IMAGE === '') throw new Error('FNGATE_IMAGE is not set: run `make image-test`, which builds the image first');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The engine `make image` used: Docker where its engine answers, else podman. */
const ENGINE = await new Promise<string>((resolve) => execFile('docker', ['info'], (err) => resolve(err ? 'podman' : 'docker')));

function engine(args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(ENGINE, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

async function engineOk(args: string[], timeoutMs?: number): Promise<string> {
  const r = await engine(args, timeoutMs);
  if (r.code !== 0) throw new Error(`${ENGINE} ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

// ---------------------------------------------------------------- the chart's files

const dir = t.testdir({});
const etc = join(dir, 'etc-fngate');
const backend = await startEchoBackend({ name: 'in-image', host: endpointAddress() });
t.teardown(() => backend.stop(1000));
const key = randomKey();
writeKeysFile(join(etc, 'keys.yaml'), [{ name: 'image-test', key, functions: '*' }]);
writeFunctionsDir(join(etc, 'functions'), [{ name: 'echo', functionId: 'fn-echo', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [backend.address] }] }]);
mkdirSync(join(etc, 'session-key'), { recursive: true });
writeFileSync(join(etc, 'session-key', 'key'), `${randomKey()}\n`);
const cert = makeTlsCert(join(etc, 'tls'));
// As the chart's ConfigMap has it, with local Functions and keys in place of --kubernetes.
writeFileSync(
  join(etc, 'config.yaml'),
  [
    'listen: 0.0.0.0:10081',
    'tls-listen: 0.0.0.0:10443',
    `tls-cert: /etc/fngate/tls/${cert.cert.split('/').pop()}`,
    `tls-key: /etc/fngate/tls/${cert.key.split('/').pop()}`,
    'admin: 0.0.0.0:9090',
    'session-key-file: /etc/fngate/session-key/key',
    'drain-timeout: 20s',
    'idle-timeout: 30s',
    'functions: /etc/fngate/functions',
    'api-keys: /etc/fngate/keys.yaml',
    '',
  ].join('\n'),
);
// Mounted Secrets and ConfigMaps are readable by the pod's user; uid 1000 is not this test's.
(function openUp(path: string): void {
  chmodSync(path, statSync(path).isDirectory() ? 0o755 : 0o644);
  if (statSync(path).isDirectory()) for (const entry of readdirSync(path)) openUp(join(path, entry));
})(dir);

// ---------------------------------------------------------------- the container

const name = `fngate-image-test-${process.pid}`;
const started = await engine([
  'run', '-d', '--name', name,
  ...(ENGINE === 'podman' ? ['--runtime', 'runc'] : []),
  '--read-only', '--cap-drop=ALL', '--security-opt', 'no-new-privileges',
  // The chart's securityContext: runAsNonRoot with the image's user; env as the Deployment sets it.
  '--user', '1000:1000',
  '-e', 'POD_NAMESPACE=fngate-system', '-e', 'POD_NAME=fngate-image-test',
  '-v', `${etc}:/etc/fngate:ro`,
  '-p', '127.0.0.1::10081', '-p', '127.0.0.1::10443', '-p', '127.0.0.1::9090',
  IMAGE,
  'serve', '--config', '/etc/fngate/config.yaml',
]);
if (started.code !== 0) throw new Error(`${ENGINE} run: ${started.stderr}`);
t.teardown(async () => {
  await engine(['rm', '-f', name]);
});

const logs = async (): Promise<string> => {
  const r = await engine(['logs', name]);
  return r.stdout + r.stderr;
};
const port = async (inner: number): Promise<string> => (await engineOk(['port', name, `${inner}/tcp`])).trim().split('\n')[0] as string;
await waitForAsync(async () => (await logs()).includes('"fngate listening"'), 30_000, 'the gateway in the container listening');
const h2c = await port(10081);
const tls = await port(10443);
const admin = await port(9090);
const md = { authorization: `Bearer ${key}`, 'function-id': 'fn-echo' };
const clients: EchoClient[] = [];
t.teardown(() => {
  for (const c of clients) c.close();
});

t.test('the process runs as the chart runs it', async (t) => {
  const status = await engineOk(['exec', name, 'cat', '/proc/1/status']);
  t.match(status, /^Uid:\s+1000\s+1000\s+1000\s+1000$/m, 'PID 1 runs as uid 1000');
  t.match(status, /^CapEff:\s+0+$/m, 'with no capabilities');
  t.match(status, /^NoNewPrivs:\s+1$/m, 'and no new privileges');
  t.match(await engineOk(['exec', name, 'cat', '/proc/1/cmdline']), /node\0\/app\/dist\/cmd\/fngate\.js\0serve/, 'PID 1 is the gateway itself');
  t.match(await engineOk(['exec', name, 'cat', '/proc/1/maps']), /libmimalloc\.so\.2/, 'mimalloc is mapped in the gateway');
  t.match(await logs(), /"allocator":"mimalloc"/, 'and the start-up line says so');
  const write = await engine(['exec', name, 'sh', '-c', 'echo x > /app/x']);
  t.not(write.code, 0, 'the root filesystem is read-only');
});

t.test('grpc-js: all four kinds over h2c and TLS', async (t) => {
  for (const [label, client] of [
    ['h2c', echoClient(h2c)],
    ['TLS', echoClient(tls, { tls: { ca: cert.ca, serverName: 'localhost' } })],
  ] as const) {
    clients.push(client);
    const unary = await client.unary(md, { payload: Buffer.from('hi') });
    t.equal(unary.status, 0, `${label} unary: ${unary.details}`);
    t.equal(unary.reply?.backend, 'in-image');
    t.equal((await client.serverStream(md, { count: 3 })).replyCount, 3, `${label} server stream`);
    t.equal((await client.clientStream(md, [{ payload: Buffer.alloc(1000) }, { payload: Buffer.alloc(2000) }])).reply?.received_bytes, 3000, `${label} client stream`);
    t.equal((await client.bidi(md, [{ payload: Buffer.from('a') }, { payload: Buffer.from('b') }])).replyCount, 2, `${label} bidi`);
  }
});

t.test('grpcio: all four kinds', async (t) => {
  const args = ['--target', h2c, '-H', `authorization=Bearer ${key}`, '-H', 'function-id=fn-echo'];
  const runs = await Promise.all([
    runPythonClient([...args, 'unary', '--calls', '2']),
    runPythonClient([...args, 'client-stream', '--total-bytes', '100000', '--chunk-size', '10000']),
    runPythonClient([...args, 'server-stream', '--count', '4', '--reply-size', '100']),
    runPythonClient([...args, 'bidi', '--count', '3', '--payload-size', '10']),
    runPythonClient(['--target', tls, '--tls-ca', cert.cert, '--tls-server-name', 'localhost', '-H', `authorization=Bearer ${key}`, '-H', 'function-id=fn-echo', 'unary', '--calls', '1']),
  ]);
  t.same(runs.flatMap((r) => r.calls.map((c) => c.code)), ['OK', 'OK', 'OK', 'OK', 'OK', 'OK']);
});

t.test('admin: /readyz and /metrics', async (t) => {
  t.equal((await fetch(`http://${admin}/readyz`)).status, 200);
  const metrics = await (await fetch(`http://${admin}/metrics`)).text();
  t.match(metrics, /^fngate_client_connections_accepted_total \d+/m);
});

t.test('what the image must not hold', async (t) => {
  const probe = async (path: string): Promise<boolean> => (await engine(['exec', name, 'test', '-e', path])).code === 0;
  for (const path of ['/app/node_modules/typescript', '/app/node_modules/tap', '/app/node_modules/fast-check', '/app/node_modules/node', '/app/test', '/app/lib', '/app/bench', '/root/.npm', '/home/node/.npm', '/usr/bin/gcc', '/usr/bin/cc', '/usr/bin/make']) {
    t.notOk(await probe(path), `no ${path}`);
  }
  const declarations = await engineOk(['exec', name, 'sh', '-c', "find /app/node_modules -name '*.d.ts' -o -name '*.map' | wc -l"]);
  t.equal(declarations.trim(), '0', 'no TypeScript declarations or source maps');
  // Every module of dist/lib loads with only the production dependencies.
  const loaded = await engineOk([
    'exec', name, 'node', '--input-type=module', '-e',
    "import { readdirSync } from 'node:fs'; let n = 0; for (const f of readdirSync('/app/dist/lib', { recursive: true })) if (String(f).endsWith('.js')) { await import('/app/dist/lib/' + f); n++; } console.log(n);",
  ]);
  t.ok(Number(loaded) > 50, `${loaded.trim()} dist/lib modules import`);
});

t.test('the layers fngate adds over its base', async (t) => {
  const history = (await engineOk(['history', '--no-trunc', '--format', '{{.Size}}\t{{.CreatedBy}}', IMAGE])).trim().split('\n');
  // Layers are listed newest first; the base's own start at its ADD of the root filesystem.
  const ours = history.slice(0, history.findIndex((l) => /ADD file:/.test(l)));
  const bytes = (size: string): number => {
    const m = /^([\d.]+)\s*([kMG]?B)/.exec(size);
    return m === null ? 0 : Number(m[1]) * ({ B: 1, kB: 1e3, MB: 1e6, GB: 1e9 } as Record<string, number>)[m[2] as string]!;
  };
  const total = ours.reduce((n, l) => n + bytes(l.split('\t')[0] as string), 0);
  t.comment(`layers fngate adds: ${(total / 1e6).toFixed(1)} MB`);
  for (const l of ours) if (bytes(l.split('\t')[0] as string) > 1e5) t.comment(`  ${l.split('\t')[0]}  ${(l.split('\t')[1] ?? '').slice(0, 90)}`);
  const weights = await engineOk(['exec', name, 'sh', '-c', 'cd /app/node_modules && du -sk @*/* [!@]* 2>/dev/null | sort -rn | head -8']);
  t.comment(`heaviest production packages (KiB):\n${weights.trim()}`);
  t.ok(total < 60e6, `under 60 MB (${(total / 1e6).toFixed(1)} MB)`);
});

t.test('SIGTERM: the stream in flight finishes, new calls get UNAVAILABLE, exit 0', async (t) => {
  const client = echoClient(h2c);
  clients.push(client);
  let replies = 0;
  const inFlight = client.serverStream({ ...md, 'x-echo-sleep-ms': '300' }, { count: 6 }, { onReply: () => void replies++ });
  await waitFor(() => replies >= 1, 10_000, 'the stream under way');
  const signalledAt = Date.now();
  await engineOk(['kill', '--signal', 'TERM', name]);
  await waitForAsync(async () => (await logs()).includes('"draining"'), 10_000, 'the gateway draining');
  const lateClient = echoClient(h2c);
  clients.push(lateClient);
  const late = await lateClient.unary(md).catch(() => undefined);
  t.equal(late?.status, 14, `a new call during the drain: UNAVAILABLE (${late?.details})`);
  const r = await inFlight;
  t.equal(r.status, 0, `the stream in flight finished: ${r.details}`);
  t.equal(r.replyCount, 6, 'with all its replies');
  const exit = (await engineOk(['wait', name], 60_000)).trim();
  t.equal(exit, '0', 'the container exited 0');
  t.ok(Date.now() - signalledAt < 20_000, `within the drain timeout (${Date.now() - signalledAt} ms)`);
});
