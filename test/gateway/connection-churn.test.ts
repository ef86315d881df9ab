// Connection churn and young garbage (lib/runtime/young-garbage.ts): every closed client
// connection counts toward the gateway's next scavenge, so 300 short connections with a call
// each bring scavenges forced by fngate (reported by a preload, test/helpers/forced-gc-reporter.ts)
// though nothing near RECLAIM_BYTES is forwarded. Every call still gets its reply.
import t from 'tap';
import http2 from 'node:http2';
import { join } from 'node:path';
import { startEchoBackend } from '../helpers/backend.ts';
import { ECHO_PATHS, decodeEchoReply, encodeEchoRequest } from '../helpers/echo-proto.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { startGateway } from '../helpers/gateway.ts';
import { grpcFrame, parseGrpcFrames } from '../helpers/http2-raw.ts';
import { waitFor } from '../helpers/wait.ts';

const FN = 'fn-churn';
const CONNECTIONS = 300;

const dir = t.testdir({});
const b = await startEchoBackend({ name: 'churn' });
t.teardown(() => b.stop(1000));
writeFunctionsDir(join(dir, 'fns'), [{ name: 'churn', functionId: FN, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [b.address] }] }]);
const key = randomKey();
writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'churn', key, functions: [FN] }]);
const gw = await startGateway(['--functions', join(dir, 'fns'), '--api-keys', join(dir, 'keys.yaml')], {
  env: { NODE_OPTIONS: `--import=${new URL('../helpers/forced-gc-reporter.ts', import.meta.url).href}` },
});
t.teardown(() => gw.stop());

/** One connection, one unary call, closed; resolves with "<backend>:<bytes it received>". */
function callOnNewConnection(i: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${gw.h2c}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': ECHO_PATHS.Unary,
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization: `Bearer ${key}`,
      'function-id': FN,
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      const [frame] = parseGrpcFrames(Buffer.concat(chunks));
      if (frame === undefined) reject(new Error(`call ${i}: no reply message`));
      else {
        const reply = decodeEchoReply(frame);
        resolve(`${reply.backend}:${reply.received_bytes}`);
      }
    });
    req.end(grpcFrame(encodeEchoRequest({ payload: Buffer.from(`m${i}`) })));
  });
}

t.test('300 short connections: every call answered, and the gateway scavenges for their garbage', async (t) => {
  const forcedScavenges = (): number => gw.stdout().split('\n').filter((l) => l === 'forced scavenge').length;
  const before = forcedScavenges();
  const replies: string[] = [];
  for (let i = 0; i < CONNECTIONS; i += 10) {
    replies.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => callOnNewConnection(i + j)))));
  }
  t.same(replies, Array.from({ length: CONNECTIONS }, (_, i) => `churn:${`m${i}`.length}`), `${CONNECTIONS} connections, each call answered by the function`);
  // The last connections' close reaches the gateway just after their calls end.
  await waitFor(() => forcedScavenges() - before >= 2, 5000).catch(() => undefined);
  t.ok(forcedScavenges() - before >= 2, `the gateway forced a scavenge per 128 closed connections (${forcedScavenges() - before} seen)`);
  t.match(gw.stdout(), /^gc reporter on$/m, 'the reporter ran in the gateway (the check above reads its output)');
});
