// serve's one shutdown routine, in process: a drain and a start-up that fails half-way both
// leave nothing of the gateway running: no listener, and no watcher that still reacts to a
// changed Functions or keys file.
import t, { type Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { loadConfig } from '../../lib/config/load.ts';
import { startServe } from '../../lib/serve/serve.ts';
import { captureLog, type CapturedLog } from '../sources/changes.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

const fn = (id: string): string => `apiVersion: fngate.dev/v1alpha1
kind: Function
metadata: { name: ${id} }
spec:
  functionId: ${id}
  activeVersion: v1
  versions:
    - versionId: v1
      endpoints: ["127.0.0.1:1"]
`;

const files = { functions: { 'a.yaml': fn('a') }, 'keys.yaml': 'keys: []\n' };

/** A file-mode gateway's flags: every listener on a free port, a watched Functions directory and keys file. */
function flags(dir: string): string[] {
  return ['--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--functions', join(dir, 'functions'), '--api-keys', join(dir, 'keys.yaml'), '--access-log', 'off'];
}

/** Handles that keep the process up (listeners); fs requests in flight end by themselves. */
const handles = (): string[] => process.getActiveResourcesInfo().filter((kind) => !kind.startsWith('FSReq') && kind !== 'CloseReq').sort();

/** A closed listener's handle goes a tick after its close callback. */
async function handlesBack(t: Test, expected: string[]): Promise<void> {
  await waitFor(() => JSON.stringify(handles()) === JSON.stringify(expected), 2000).catch(() => {});
  t.same(handles(), expected, 'no listener of the gateway is left');
}

/** Edits both watched files; resolves true if a watcher logged a reload within `ms`. */
async function reloadSeen(dir: string, captured: CapturedLog, ms: number): Promise<boolean> {
  const from = captured.lines.length;
  await writeFile(join(dir, 'functions', `f${from}.yaml`), fn(`f${from}`));
  await writeFile(join(dir, 'keys.yaml'), `keys: [] # ${from}\n`);
  const reloaded = (): boolean => captured.lines.slice(from).some((l) => l.msg === 'functions file loaded' || l.msg === 'api keys loaded');
  await waitFor(reloaded, ms).catch(() => {});
  return reloaded();
}

t.test('a drain stops every listener and file watcher', async (t) => {
  const dir = t.testdir(files);
  const captured = captureLog();
  const before = handles();
  const running = await startServe(loadConfig(flags(dir), {}), captured.log);
  t.not(running.admin, running.h2c, 'each address by name');
  t.equal(running.tls, null, 'no TLS files, no TLS listener');
  t.ok(await reloadSeen(dir, captured, 3000), 'while it runs, an edited file is read again');
  await running.drain();
  await running.drain(); // a second signal's drain waits on the first
  await handlesBack(t, before);
  t.notOk(await reloadSeen(dir, captured, 1000), 'after the drain, nothing watches the files');
});

t.test('a start-up that fails at the admin listener closes what it had opened', async (t) => {
  const dir = t.testdir(files);
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const captured = captureLog();
  const before = handles();
  const config = loadConfig([...flags(dir), '--admin', `127.0.0.1:${port}`], {});
  await t.rejects(startServe(config, captured.log), { message: `cannot listen on 127.0.0.1:${port}: address already in use` });
  await handlesBack(t, before);
  await sleep(200); // past the watchers' debounce, had they been left running
  t.notOk(await reloadSeen(dir, captured, 1000), 'nothing watches the files');
});
