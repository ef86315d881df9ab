// --access-log: one JSON line per RPC, forwarded or refused, with the fields an operator needs,
// and never a token (not of a good key, a revoked one or a bad JWT-looking string) anywhere in
// anything the gateway writes. --access-log-sample drops successful calls only.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { echoClient, type MetadataRecord } from '../helpers/echo-client.ts';
import { randomKey } from '../helpers/files.ts';
import { startGateway, type GatewayProcess, type LogLine } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/wait.ts';
import { echoFunction } from './echo-function.ts';

const KEY = randomKey();
const OTHER_KEY = randomKey();
const { dir, echo, args: ARGS, sidOf } = await echoFunction(t, [
  { name: 'ci-pipeline', key: KEY, functions: ['fn-echo'] },
  { name: 'elsewhere', key: OTHER_KEY, functions: ['fn-nope'] },
]);
const GOOD: MetadataRecord = { authorization: `Bearer ${KEY}`, 'function-id': 'fn-echo' };
const UNKNOWN_KEY = randomKey();
const JWT_LIKE = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlLXNlY3JldA';
const SECRETS = [KEY, OTHER_KEY, UNKNOWN_KEY, JWT_LIKE];

const FORWARDED_FIELDS = [
  'time', 'request_id', 'session_id', 'subject', 'function_id', 'version_id', 'endpoint', 'method', 'status', 'duration_ms', 'bytes_in', 'bytes_out',
];

/** The traffic of every test here: 2 OK, 1 function error, 3 refused by the gateway. */
async function traffic(gw: GatewayProcess): Promise<string> {
  const client = echoClient(gw.h2c);
  try {
    let session = '';
    for (let i = 0; i < 2; i++) {
      const r = await client.unary(GOOD, { payload: Buffer.alloc(100) });
      if (r.status !== 0) throw new Error(`call failed: ${r.status} ${r.details}`);
      session = String(r.initial['nvcf-reqid']);
    }
    if ((await client.unary({ ...GOOD, 'x-echo-status': '9' })).status !== 9) throw new Error('expected status 9');
    if ((await client.unary({ authorization: `Bearer ${UNKNOWN_KEY}`, 'function-id': 'fn-echo' })).status !== 16) throw new Error('expected 16');
    if ((await client.unary({ authorization: `Bearer ${JWT_LIKE}`, 'function-id': 'fn-echo' })).status !== 16) throw new Error('expected 16');
    if ((await client.unary({ authorization: `Bearer ${OTHER_KEY}`, 'function-id': 'fn-echo' })).status !== 7) throw new Error('expected 7');
    return session;
  } finally {
    client.close();
  }
}

type TestT = Parameters<Parameters<typeof t.test>[0]>[0];

const rpcLines = (lines: LogLine[]): LogLine[] => lines.filter((l) => l['msg'] === 'rpc');

function checkNoSecrets(t: TestT, what: string, text: string): void {
  for (const secret of SECRETS) t.notOk(text.includes(secret), `${what}: no token (${secret.slice(0, 6)}...)`);
}

t.test('--access-log stderr: every RPC, with its fields, no token', async (t) => {
  const gw = await startGateway([...ARGS, '--access-log', 'stderr']);
  t.teardown(() => gw.stop());
  const session = await traffic(gw);
  await waitFor(() => rpcLines(gw.logLines()).length >= 6, 5000, 'six access log lines');
  const lines = rpcLines(gw.logLines());
  t.equal(lines.length, 6, 'one line per RPC');

  const ok = lines.filter((l) => l['status'] === 0);
  t.equal(ok.length, 2);
  for (const line of lines.filter((l) => l['rejected'] !== true)) {
    for (const f of FORWARDED_FIELDS) t.ok(f in line && line[f] !== null, `forwarded line has ${f}`);
  }
  const first = ok[0] as LogLine;
  t.match(first, {
    session_id: sidOf(session),
    subject: 'ci-pipeline',
    function_id: 'fn-echo',
    version_id: 'v1',
    endpoint: echo.address,
    method: '/fngate.test.Echo/Unary',
    status: 0,
    bytes_in: 5 + 2 + 100, // gRPC prefix, field tag and length, 100 payload bytes
  });
  t.ok(typeof first['duration_ms'] === 'number' && first['duration_ms'] > 0, 'duration_ms');
  t.ok(typeof first['bytes_out'] === 'number' && first['bytes_out'] > 0, 'bytes_out');
  t.ok(!Number.isNaN(Date.parse(String(first['time']))), 'time is a timestamp');
  const ids = new Set(lines.map((l) => l['request_id']));
  t.equal(ids.size, 6, 'a distinct request id per RPC');

  t.match(lines.find((l) => l['status'] === 9), { status_name: 'FAILED_PRECONDITION', session_id: sidOf(session) });
  const refused = lines.filter((l) => l['rejected'] === true);
  t.same(
    refused.map((l) => [l['status'], l['reason'], l['subject']]),
    [
      [16, 'unknown_key', null],
      [16, 'unknown_key', null],
      [7, null, 'elsewhere'],
    ],
    'refused calls: status, reason, subject',
  );
  for (const line of refused) for (const f of ['time', 'request_id', 'method', 'status', 'duration_ms']) t.ok(line[f] !== null && f in line, `refused line has ${f}`);

  await gw.stop();
  checkNoSecrets(t, 'stderr', gw.logs());
  checkNoSecrets(t, 'stdout', gw.stdout());
});

t.test('--access-log FILE with --access-log-sample 0: errors only', async (t) => {
  const file = join(dir, 'logs', 'access.log');
  // A directory that does not exist stops start-up, naming the flag.
  await t.rejects(startGateway([...ARGS, '--access-log', file], { timeoutMs: 10_000 }), /--access-log: cannot open/);
  const existing = join(dir, 'access.log');
  const gw = await startGateway([...ARGS, '--access-log', existing, '--access-log-sample', '0']);
  t.teardown(() => gw.stop());
  await traffic(gw);
  await gw.stop(); // drain flushes and closes the file
  const lines = readFileSync(existing, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as LogLine);
  t.same(
    lines.map((l) => l['status']),
    [9, 16, 16, 7],
    'successful calls sampled away, every error kept',
  );
  checkNoSecrets(t, 'access log file', readFileSync(existing, 'utf8'));
  checkNoSecrets(t, 'stderr', gw.logs());
  t.notOk(rpcLines(gw.logLines()).length, 'nothing on stderr');
});

t.test('off by default; bad values refused', async (t) => {
  const gw = await startGateway(ARGS);
  t.teardown(() => gw.stop());
  await traffic(gw);
  await gw.stop();
  t.equal(rpcLines(gw.logLines()).length, 0, 'no access log lines by default');
  t.notOk(gw.stdout().includes('"rpc"'), 'nothing on stdout either');
  await t.rejects(startGateway([...ARGS, '--access-log-sample', '1.5'], { timeoutMs: 10_000 }), /--access-log-sample: expected a number from 0 to 1/);
});
