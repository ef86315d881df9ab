// What authentication and telemetry cost per RPC at steady state, measured in process on the
// gateway's own code (Authenticator, GatewayTelemetry), and set against the CPU a whole
// forwarded RPC costs (fngate's CPU µs/RPC from the latest `make bench` result, or
// BENCH_RPC_CPU_US). A benchmark, not a test: it prints figures, it asserts nothing.
//   node bench/overhead.ts            (make bench-overhead)
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Authenticator } from '../lib/auth/authenticator.ts';
import { createJwtVerifier } from '../lib/auth/jwt.ts';
import { Registry } from '../lib/registry/registry.ts';
import { silentLogger } from '../lib/telemetry/log.ts';
import { createTelemetry } from '../lib/telemetry/telemetry.ts';
import type { ForwardedRpc, SessionInfo } from '../lib/telemetry/events.ts';
import { createHash } from 'node:crypto';

const N = Number(process.env['BENCH_OVERHEAD_N'] ?? 200_000);

/** CPU µs per call of fn, over N calls after a warm-up (user + system time of this process). */
function cpuPerCall(fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(N, 20_000); i++) fn(i);
  const start = process.cpuUsage();
  for (let i = 0; i < N; i++) fn(i);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / N;
}

async function authCosts(): Promise<{ apiKey: number; jwt: number }> {
  const registry = new Registry();
  const key = 'fngk_bench_key_0123456789abcdef0123456789abcdef';
  registry.replaceApiKeys([{ name: 'bench', sha256: createHash('sha256').update(key).digest('hex'), functions: '*' }]);

  const dir = mkdtempSync(join(tmpdir(), 'fngate-overhead-'));
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));
  const verifier = await createJwtVerifier({ jwksFile, log: silentLogger });
  const token = await new SignJWT({ functions: '*' })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setSubject('bench')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey);
  const auth = new Authenticator(registry, verifier);
  await auth.authenticate(`Bearer ${token}`); // first verification fills the cache

  // A request's header is a fresh string each time, as it is off the wire.
  const keyHeader = `Bearer ${key}`;
  const jwtHeader = `Bearer ${token}`;
  const apiKey = cpuPerCall((i) => auth.authenticate(i % 2 ? keyHeader.slice(0) : `${keyHeader}`));
  const jwt = cpuPerCall(() => auth.authenticate(`${jwtHeader}`));
  verifier.close();
  return { apiKey, jwt };
}

async function telemetryCost(withAccessLogAndTracer: boolean): Promise<number> {
  const env: Record<string, string> = withAccessLogAndTracer
    ? { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }
    : {};
  const telemetry = await createTelemetry({
    log: silentLogger,
    env,
    accessLog: withAccessLogAndTracer ? '/dev/null' : 'off',
    accessLogSample: 1,
    sessions: { byEndpoint: () => new Map(), processes: () => 1, byVersion: () => [] },
  });
  const session: SessionInfo = { id: '6e8f1b3e0c2d9a41', functionId: 'fn-bench', versionId: 'v1', endpoint: { key: '127.0.0.1:1' } };
  const headers = { ':path': '/bench.Bench/Unary', ':method': 'POST', 'content-type': 'application/grpc' };
  const cost = cpuPerCall(() => {
    const upstream = Object.entries(headers).flat();
    const now = performance.now();
    const trace = telemetry.rpcStarting(headers, upstream, session);
    const rpc: ForwardedRpc = {
      session,
      path: headers[':path'],
      subject: 'bench',
      status: 0,
      startedAt: now,
      firstByteAt: now,
      endedAt: now,
      bytesIn: 10,
      bytesOut: 10,
      upstreamError: undefined,
      trace,
    };
    telemetry.rpcForwarded(rpc);
  });
  await telemetry.shutdown();
  return cost;
}

/** fngate's CPU µs per RPC at saturation: env, or the median of the newest bench result. */
function rpcCpuUs(): { value: number; from: string } | undefined {
  const fromEnv = process.env['BENCH_RPC_CPU_US'];
  if (fromEnv) return { value: Number(fromEnv), from: 'BENCH_RPC_CPU_US' };
  const dir = new URL('./results/', import.meta.url);
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch {
    return undefined;
  }
  for (const file of files.reverse()) {
    const text = readFileSync(new URL(file, dir), 'utf8');
    const match = /"fngate"[\s\S]*?"cpuUsPerRpc"\s*:\s*\{[^}]*"median"\s*:\s*([0-9.]+)/.exec(text);
    if (match?.[1]) return { value: Number(match[1]), from: `bench/results/${file}` };
  }
  return undefined;
}

const auth = await authCosts();
const metricsOnly = await telemetryCost(false);
const everything = await telemetryCost(true);
const rpc = rpcCpuUs();
const share = (us: number): string => (rpc ? `${((100 * us) / rpc.value).toFixed(2)}%` : 'n/a');
const rows: Array<[string, number]> = [
  ['auth: API key (cached by key set)', auth.apiKey],
  ['auth: JWT (cached until exp)', auth.jwt],
  ['telemetry: metrics (always on)', metricsOnly],
  ['telemetry: metrics + access log + tracing sampled off', everything],
];
console.log(`# per-RPC cost of auth and telemetry (${N} calls each, CPU µs per call)`);
console.log(`whole RPC through fngate: ${rpc ? `${rpc.value} µs (${rpc.from})` : 'unknown: run make bench or set BENCH_RPC_CPU_US'}`);
console.log('| part | CPU µs per RPC | share of an RPC |');
console.log('|---|--:|--:|');
for (const [name, us] of rows) console.log(`| ${name} | ${us.toFixed(3)} | ${share(us)} |`);
process.exit(0);
