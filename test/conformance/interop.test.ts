// gRPC interop: grpc-go's interop client runs its 14 standard cases, plus the
// soak cases shortened, THROUGH fngate to grpc-go's interop server, over the h2c and the
// TLS listener. The client sends the NVCF metadata with --additional_metadata; the server
// is a Function's only endpoint. Binaries: `make conformance-tools` (make/conformance.mk).
import t from 'tap';
import { reservePort } from '../helpers/ports.ts';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { makeTlsCert, randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { REPO_ROOT, startTlsGateway } from '../helpers/gateway.ts';

const INTEROP_DIR = process.env['GRPC_INTEROP_DIR'] ?? join(REPO_ROOT, '.cache', 'grpc-interop');
const CLIENT = join(INTEROP_DIR, 'client');
const SERVER = join(INTEROP_DIR, 'server');
for (const bin of [CLIENT, SERVER]) {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`make conformance-tools\` (make test does)`);
}

const FN = 'grpc-interop';

/** The standard cases, in the order grpc's interop matrix lists them. */
const CASES = [
  'empty_unary',
  'large_unary',
  'client_streaming',
  'server_streaming',
  'ping_pong',
  'empty_stream',
  'timeout_on_sleeping_server',
  'cancel_after_begin',
  'cancel_after_first_response',
  'status_code_and_message',
  'special_status_message',
  'custom_metadata',
  'unimplemented_method',
  'unimplemented_service',
] as const;

/** Resolves once 127.0.0.1:port accepts a TCP connection; rejects if `child` exits first or after `timeoutMs`. */
async function waitForListener(port: number, child: ChildProcess, output: () => string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`interop server exited (${child.exitCode ?? child.signalCode}):\n${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`interop server not listening on ${port} within ${timeoutMs} ms:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface ClientRun {
  code: number | null;
  signal: string | null;
  ms: number;
  /** stdout + stderr, with the command line first. */
  output: string;
}

function runClient(args: string[], timeoutMs = 30_000): Promise<ClientRun> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(CLIENT, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const ms = Math.round(performance.now() - started);
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      const signal = err === null ? null : (err.signal ?? null);
      const timedOut = err !== null && err.killed ? `\n(killed after ${timeoutMs} ms)` : '';
      resolve({ code, signal, ms, output: `$ client ${args.join(' ')}\n${stdout}${stderr}${timedOut}` });
    });
  });
}

// --- the interop server, the Function, the key, the gateway ---------------------------------

const dir = t.testdir({});
const serverPort = await reservePort('0.0.0.0'); // it listens on all interfaces (:PORT)
let serverOutput = '';
const server = spawn(SERVER, [`-port=${serverPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
server.stdout?.setEncoding('utf8').on('data', (s: string) => (serverOutput += s));
server.stderr?.setEncoding('utf8').on('data', (s: string) => (serverOutput += s));
t.teardown(async () => {
  if (server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGKILL');
  await exited;
});
await waitForListener(serverPort, server, () => serverOutput);

writeFunctionsDir(join(dir, 'fns'), [
  { name: 'grpc-interop', functionId: FN, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [`127.0.0.1:${serverPort}`] }] },
]);
const key = randomKey();
writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'interop', key, functions: [FN] }]);
const cert = makeTlsCert(join(dir, 'tls'));
const gw = await startTlsGateway(t, dir, cert);

const portOf = (address: string): string => address.slice(address.lastIndexOf(':') + 1);

const METADATA = `authorization:Bearer ${key};function-id:${FN}`;

const TRANSPORTS = [
  { name: 'plaintext (h2c)', args: ['--server_host=127.0.0.1', `--server_port=${portOf(gw.h2c)}`] },
  {
    name: 'TLS',
    args: [
      '--server_host=127.0.0.1',
      `--server_port=${portOf(gw.tls)}`,
      '--use_tls',
      // use_test_ca: trust --ca_file (the self-signed cert) instead of the system roots.
      '--use_test_ca',
      `--ca_file=${cert.cert}`,
      '--server_host_override=localhost',
    ],
  },
] as const;

for (const transport of TRANSPORTS) {
  t.test(`interop cases over ${transport.name}`, async (t) => {
    const common = [...transport.args, `--additional_metadata=${METADATA}`];
    for (const testCase of CASES) {
      const run = await runClient([...common, `--test_case=${testCase}`]);
      t.equal(run.code, 0, `${testCase} (${run.ms} ms)`, { output: run.output, gatewayLogTail: gw.logs().slice(-4000) });
    }

    // Shortened soak: 10 iterations of large_unary-sized RPCs, on one channel (rpc_soak)
    // and on a new channel, i.e. a new gateway connection and session, each (channel_soak).
    // The latency bound is loose: this asserts correctness, not speed, on a shared machine.
    const soak = [
      '--soak_iterations=10',
      '--soak_max_failures=0',
      '--soak_per_iteration_max_acceptable_latency_ms=5000',
      '--soak_overall_timeout_seconds=30',
    ];
    for (const testCase of ['rpc_soak', 'channel_soak']) {
      const run = await runClient([...common, ...soak, `--test_case=${testCase}`], 45_000);
      const summary = /soak test successes: (\d+) \/ (\d+)/.exec(run.output);
      t.equal(run.code, 0, `${testCase}: ${summary ? `${summary[1]}/${summary[2]} iterations` : 'no summary'} (${run.ms} ms)`, {
        output: run.output,
        gatewayLogTail: gw.logs().slice(-4000),
      });
    }

    // The control: the same client without the NVCF metadata is refused, so the cases above
    // did go through the gateway (and passed only because the interop server answered them).
    const bare = await runClient([...transport.args, '--test_case=empty_unary']);
    t.not(bare.code, 0, 'without --additional_metadata the call fails');
    t.match(bare.output, /code = Unauthenticated/, 'with UNAUTHENTICATED from the gateway', { output: bare.output });
  });
}
