// lib/h2 against python-hyper's `h2` as an independent peer, over real sockets, both sides:
// - h2 as a client of our server connection (test/python/h2_peer_client.py): a request with
//   trailers, a 3 MiB request (more than our windows: it moves only as we return window), a
//   request the client resets, a request after the reset, then our graceful GOAWAY;
// - h2 as a server for our client connection (test/python/h2_peer_server.py): an echoed body
//   larger than its 64 KiB windows, trailers, a server RST_STREAM, and a server GOAWAY whose
//   last stream id lets the stream below it finish and ends the one above as REFUSED_STREAM.
import t from 'tap';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ClientConnection } from '../../lib/h2/client-connection.ts';
import type { ConnectionHooks } from '../../lib/h2/connection.ts';
import { ErrorCode } from '../../lib/h2/constants.ts';
import { DEFAULT_LIMITS, newCounters } from '../../lib/h2/limits.ts';
import type { H2Stream } from '../../lib/h2/stream.ts';
import { PYTHON } from '../helpers/python.ts';
import { waitFor } from '../helpers/wait.ts';
import { collector } from './support/collector.ts';
import { startH2Server } from './support/h2-server.ts';

type TestT = Parameters<Parameters<typeof t.test>[0]>[0];

const script = (name: string): string => fileURLToPath(new URL(`../python/${name}`, import.meta.url));

/** Starts a python script; its stdout JSON lines land in `lines`. */
function runPython(name: string, args: string[]): { child: ChildProcess; lines: Array<Record<string, unknown>>; exited: Promise<number | null> } {
  const child = spawn(PYTHON, [script(name), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, lines, exited };
}

t.test('python h2 as a client: trailers, a body past the windows, a client reset, then our GOAWAY', async (t) => {
  const server = await startH2Server();
  t.teardown(() => server.close());
  const [host, port] = server.address.split(':') as [string, string];
  const peer = runPython('h2_peer_client.py', [host, port]);
  t.teardown(() => void peer.child.kill());

  // Streams 1, 5 and 7 are answered; 3 is reset by the client mid-request.
  await waitFor(() => peer.lines.filter((l) => 'stream' in l).length === 4, 30_000, 'four streams finished at the python client');
  for (const c of server.connections) c.close();
  t.equal(await peer.exited, 0, 'the python client exited cleanly');

  const byId = new Map(peer.lines.filter((l) => 'stream' in l).map((l) => [l['stream'] as number, l]));
  for (const id of [1, 5, 7]) {
    const s = byId.get(id)!;
    t.equal(s['status'], '200', `stream ${id}: 200`);
    t.equal(s['body_head'], 'hello from lib/h2\n', `stream ${id}: the body`);
    t.same(s['trailers'], [['x-trailer', 'done']], `stream ${id}: the trailers`);
    t.equal(s['reset'], null, `stream ${id}: not reset`);
  }
  t.equal(byId.get(3)?.['reset'], ErrorCode.CANCEL, 'stream 3 was the client reset');

  const bodies = server.requests.map((r) => r.body.length).sort((a, b) => a - b);
  t.same(bodies, [15, 60, 3 * 4096 * 256], 'the server read every answered request whole, 3 MiB included');
  t.ok(server.requests.every((r) => r.trailers?.join() === 'x-client-trailer,sent'), 'request trailers arrived');
  t.ok(server.requests.every((r) => r.fields[r.fields.indexOf(':path') + 1] === '/echo'), 'the request fields arrived');

  const ends = peer.lines.filter((l) => !('stream' in l));
  t.same(ends, [{ goaway: { last_stream_id: 7, error_code: ErrorCode.NO_ERROR } }, { closed: 'eof' }], 'GOAWAY(NO_ERROR, last 7), then the connection closed');
  t.same(server.internalErrors, [], 'no internal error');
});

const request = (path: string): string[] => [':method', 'POST', ':scheme', 'http', ':path', path, ':authority', 'peer', 'te', 'trailers'];

async function startPythonServer(t: TestT): Promise<number> {
  const peer = runPython('h2_peer_server.py', []);
  t.teardown(() => void peer.child.kill());
  await waitFor(() => peer.lines.length > 0, 30_000, 'h2_peer_server.py listening');
  return peer.lines[0]!['port'] as number;
}

function connect(t: TestT, port: number): { conn: ClientConnection; goaways: number[]; internalErrors: unknown[] } {
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => void socket.destroy());
  const goaways: number[] = [];
  const internalErrors: unknown[] = [];
  const hooks: ConnectionHooks = {
    onStream() {},
    onGoaway(last) {
      goaways.push(last);
    },
    onClose() {},
    onInternalError(_w, err) {
      internalErrors.push(err);
    },
    onStreamCountChanged() {},
  };
  return { conn: new ClientConnection(socket, DEFAULT_LIMITS, newCounters(), hooks), goaways, internalErrors };
}

t.test('python h2 as a server: echo past its windows with trailers, a server reset', async (t) => {
  const port = await startPythonServer(t);
  const { conn, internalErrors } = connect(t, port);
  const payload = Buffer.alloc(300_000);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;

  const echo = collector();
  const stream = conn.request(request('/echo'), false, echo.handler) as H2Stream;
  stream.writeData(payload.subarray(0, 1000));
  stream.writeData(payload.subarray(1000), true);
  const reset = collector();
  conn.request(request('/reset'), false, reset.handler);

  const r = await echo.done;
  t.equal(r.code, null, 'the echo ended cleanly');
  t.same(r.headers?.slice(0, 2), [':status', '200'], '200');
  t.ok(Buffer.concat(r.body).equals(payload), '300 000 octets (past python h2\'s 64 KiB windows) came back intact');
  t.same(r.trailers, ['grpc-status', '0', 'x-server-trailer', 'done'], 'the trailers');
  t.equal((await reset.done).code, ErrorCode.CANCEL, 'the server reset ended its stream with CANCEL');
  t.same(internalErrors, [], 'no internal error');
});

t.test('python h2 as a server: its GOAWAY lets the stream below finish, the one above is refused', async (t) => {
  const port = await startPythonServer(t);
  const { conn, goaways } = connect(t, port);
  const held = collector();
  conn.request(request('/hold'), true, held.handler);
  const trigger = collector();
  conn.request(request('/goaway'), true, trigger.handler);

  const [h, g] = await Promise.all([held.done, trigger.done]);
  t.same(goaways, [1], 'the GOAWAY named stream 1 as the last');
  t.equal(h.code, null, 'stream 1 (below the last stream id) ran to its end');
  t.equal(Buffer.concat(h.body).toString(), 'held', 'with its body');
  t.equal(g.code, ErrorCode.REFUSED_STREAM, 'stream 3 (above it) ended REFUSED_STREAM, safe to retry');
  t.equal(conn.available, false, 'the connection takes no new request');
});
