// Large transfers through the real gateway (docs/reference.md, Clients: "the gateway never parses
// or buffers whole messages, so there is no request or response size limit and a slow reader
// slows its sender instead of filling the gateway's memory"): a 256 MiB unary request, a 2 GiB
// client stream, a 1 GiB server stream to a fast reader and one to a slow reader, with the
// gateway process's resident memory (peak VmHWM and sampled VmRSS) under 150 MiB throughout
// (fngate's memory target; without the read-buffer reclaim it reached ~172 MiB).
import t from 'tap';
import type { Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEchoBackend } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { echoClient } from '../helpers/echo-client.ts';
import type { MetadataRecord } from '../helpers/echo-client.ts';
import { patternBytes } from '../helpers/echo-proto.ts';
import { randomKey, writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import { startGateway } from '../helpers/gateway.ts';
import type { GatewayProcess } from '../helpers/gateway.ts';
import { runPythonClient } from '../helpers/python.ts';

const MiB = 1 << 20;
const RSS_LIMIT = 150 * MiB;
const FUNCTION_ID = 'echo-large';
const KEY = randomKey();

const dir = t.testdir({});
const backend: EchoBackend = await startEchoBackend({ name: 'large-b1' });
writeFunctionsDir(join(dir, 'functions'), [
  { name: 'echo', functionId: FUNCTION_ID, activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [backend.address] }] },
]);
writeKeysFile(join(dir, 'keys.yaml'), [{ name: 'large-client', key: KEY, functions: [FUNCTION_ID] }]);
t.teardown(() => backend.stop(1000));

/**
 * A gateway of its own for each transfer, so that its peak RSS (VmHWM) is that transfer's.
 * tap puts its process-info loader into NODE_OPTIONS for every child: the gateway runs without
 * it, as in production.
 */
async function startOwnGateway(t: Test): Promise<GatewayProcess> {
  const gw = await startGateway([
    '--functions', join(dir, 'functions'),
    '--api-keys', join(dir, 'keys.yaml'),
    '--idle-timeout', '20s',
    '--session-linger', '2s',
    '--drain-timeout', '5s',
  ], { env: { NODE_OPTIONS: '' } });
  t.teardown(() => gw.stop());
  t.comment(`gateway RSS after start: ${mib(gw.rssBytes())}`);
  return gw;
}

const md: MetadataRecord = { authorization: `Bearer ${KEY}`, 'function-id': FUNCTION_ID };
const pyArgs = (gw: GatewayProcess): string[] => ['--target', gw.h2c, '-H', `authorization=Bearer ${KEY}`, '-H', `function-id=${FUNCTION_ID}`];

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

function rate(bytes: number, ms: number): string {
  return `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`;
}

/**
 * Bytes the gateway process has read with read(2)-like calls so far (/proc/PID/io rchar): with
 * the client sending next to nothing, this is what it took from the function's connection.
 * (Local helper: GatewayProcess exposes memory but not I/O counters.)
 */
function gatewayReadBytes(gw: GatewayProcess): number {
  const m = /^rchar:\s+(\d+)$/m.exec(readFileSync(`/proc/${gw.pid}/io`, 'utf8'));
  if (m === null) throw new Error(`no rchar in /proc/${gw.pid}/io`);
  return Number(m[1]);
}

/** Samples the gateway's VmRSS every 25 ms until stopped; returns the largest sample. */
function sampleRss(gw: GatewayProcess): { stop(): number } {
  let max = gw.rssBytes();
  const timer = setInterval(() => {
    max = Math.max(max, gw.rssBytes());
  }, 25);
  return {
    stop() {
      clearInterval(timer);
      max = Math.max(max, gw.rssBytes());
      return max;
    },
  };
}

/** VmHWM (the process's peak RSS so far) below the limit implies RSS never went above it. */
function checkMemory(t: Test, gw: GatewayProcess, sampledMax: number, label: string): void {
  const peak = gw.peakRssBytes();
  t.comment(`${label}: gateway RSS max sampled ${mib(sampledMax)}, peak (VmHWM) ${mib(peak)}`);
  t.ok(peak < RSS_LIMIT, `${label}: gateway peak RSS (VmHWM) under ${mib(RSS_LIMIT)} (${mib(peak)})`);
}

t.test('256 MiB unary request (grpcio)', async (t) => {
  const gw = await startOwnGateway(t);
  const size = 256 * MiB;
  const rss = sampleRss(gw);
  const started = performance.now();
  const { calls } = await runPythonClient([...pyArgs(gw), 'unary', '--payload-size', String(size)], { timeoutMs: 150_000 });
  const ms = performance.now() - started;
  const max = rss.stop();
  t.equal(calls.length, 1);
  t.match(calls[0], { code: 'OK', code_value: 0, backend: 'large-b1', received_messages: 1, replies: 1 });
  t.equal(calls[0]?.received_bytes, size, 'the function received every byte of the 256 MiB message');
  t.match(calls[0]?.backend_metadata, /^fngate-subject: large-client$/m, 'it went through the gateway');
  t.comment(`256 MiB unary: ${ms.toFixed(0)} ms, ${rate(size, ms)} (client process start included)`);
  checkMemory(t, gw, max, '256 MiB unary');
});

t.test('2 GiB client stream in 1 MiB messages (grpcio)', async (t) => {
  const gw = await startOwnGateway(t);
  const total = 2048 * MiB;
  const rss = sampleRss(gw);
  const started = performance.now();
  const { calls } = await runPythonClient([...pyArgs(gw), 'client-stream', '--total-bytes', String(total), '--chunk-size', String(MiB)], { timeoutMs: 170_000 });
  const ms = performance.now() - started;
  const max = rss.stop();
  t.equal(calls.length, 1);
  t.match(calls[0], { code: 'OK', code_value: 0, backend: 'large-b1', replies: 1 });
  t.equal(calls[0]?.received_bytes, total, 'the function received exactly 2 GiB');
  t.equal(calls[0]?.received_messages, 2048, 'in 2048 messages');
  t.equal(backend.unexpectedPayloads, 0, 'every message arrived as the client sent it (the gateway reads into buffers it reads into again)');
  t.comment(`2 GiB client stream: ${ms.toFixed(0)} ms, ${rate(total, ms)}`);
  checkMemory(t, gw, max, '2 GiB client stream');
});

t.test('1 GiB server stream to a slow reader: the reader slows the function, the gateway stays small', async (t) => {
  const gw = await startOwnGateway(t);
  const c = echoClient(gw.h2c);
  t.teardown(() => c.close());
  const count = 1024;
  const PAUSE_AT = new Set([100, 400, 700]);
  const PAUSE_MS = 1500;
  const expected = patternBytes(MiB);
  const pauses: Array<{ at: number; readBytes: number; rssEnd: number }> = [];
  let wrongPayloads = 0;

  const rss = sampleRss(gw);
  const readBefore = gatewayReadBytes(gw);
  const started = performance.now();
  const r = await c.serverStream(md, { count, reply_size: MiB }, {
    keepReplies: false,
    onReply: async (reply, i) => {
      // Every reply compared: the gateway forwards the function's DATA as views of read buffers
      // it reads into again, and this reader keeps them queued in the gateway for long stalls.
      if (reply.payload.length !== MiB || reply.received_messages !== i + 1 || !reply.payload.equals(expected)) wrongPayloads++;
      if (!PAUSE_AT.has(i)) {
        // A slow reader: every reply costs it a timer tick.
        await new Promise((resolve) => setTimeout(resolve, 1));
        return;
      }
      // A long stall: without flow control end to end the gateway would read (and hold) what
      // the function produces meanwhile, hundreds of MiB at the rates measured here.
      const before = gatewayReadBytes(gw);
      await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
      pauses.push({ at: i, readBytes: gatewayReadBytes(gw) - before, rssEnd: gw.rssBytes() });
    },
  });
  const ms = performance.now() - started;
  const max = rss.stop();
  const read = gatewayReadBytes(gw) - readBefore;
  c.close();

  t.match(r, { status: 0, replyCount: count, replyBytes: count * MiB }, 'all 1 GiB arrived, then OK');
  t.equal(wrongPayloads, 0, 'every reply is 1 MiB of the expected bytes, in order');
  t.ok(read >= count * MiB, `the gateway read the whole stream from the function (${mib(read)})`);
  t.equal(pauses.length, PAUSE_AT.size);
  for (const p of pauses) {
    t.comment(`stall at reply ${p.at} for ${PAUSE_MS} ms: gateway read ${mib(p.readBytes)} from the function meanwhile; RSS ${mib(p.rssEnd)}`);
    t.ok(p.readBytes < 32 * MiB, `stall at reply ${p.at}: the gateway stopped reading from the function (${mib(p.readBytes)} in ${PAUSE_MS} ms)`);
  }
  t.comment(`1 GiB server stream, slow reader: ${ms.toFixed(0)} ms, ${rate(count * MiB, ms)}`);
  checkMemory(t, gw, max, '1 GiB server stream (slow reader)');
  await backend.waitFor(() => backend.active === 0);
  t.equal(backend.cancelled, 0, 'nothing was cancelled on the way');
});

t.test('1 GiB server stream to a fast reader (grpcio)', async (t) => {
  const gw = await startOwnGateway(t);
  const rss = sampleRss(gw);
  const started = performance.now();
  const { calls } = await runPythonClient([...pyArgs(gw), 'server-stream', '--count', '1024', '--reply-size', String(MiB)], { timeoutMs: 150_000 });
  const ms = performance.now() - started;
  const max = rss.stop();
  // The status and its details in the message, so that a failure says what ended the call.
  t.match(calls[0], { code: 'OK', code_value: 0, backend: 'large-b1', replies: 1024 }, `the call ended ${calls[0]?.code} (${calls[0]?.details}) after ${calls[0]?.replies} replies`);
  if (calls[0]?.code !== 'OK') t.comment(`the gateway's log: ${gw.logs().slice(-4000)}`);
  t.equal(calls[0]?.reply_bytes, 1024 * MiB, 'the client received exactly 1 GiB of payload');
  t.comment(`1 GiB server stream, fast reader: ${ms.toFixed(0)} ms, ${rate(1024 * MiB, ms)}`);
  checkMemory(t, gw, max, '1 GiB server stream (fast reader)');
});
