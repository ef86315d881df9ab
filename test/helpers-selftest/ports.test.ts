// test/helpers/ports.ts: ports for programs that must be told theirs in advance come from below
// the kernel's ephemeral range, each locked for this process by an abstract Unix socket, and are
// free.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { portLockName, reservePort } from '../helpers/ports.ts';

/** What another process gets when it tries to take the lock of `port`: 'EADDRINUSE' or 'free'. */
function lockFromAnotherProcess(port: number): string {
  const script = `const s = require('node:net').createServer();
s.once('error', (e) => { console.log(e.code); process.exit(0); });
s.listen(${JSON.stringify(portLockName(port))}, () => { console.log('free'); process.exit(0); });`;
  return execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim();
}

t.test('distinct, below the ephemeral range, reserved for this process, bindable', async (t) => {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  const ports = [await reservePort(), await reservePort(), await reservePort('0.0.0.0')];
  t.equal(new Set(ports).size, 3, `three different ports: ${ports.join(', ')}`);
  for (const port of ports) {
    t.ok(port >= 10_000 && port < low, `${port} is below the ephemeral range (${low})`);
    t.equal(lockFromAnotherProcess(port), 'EADDRINUSE', `${port} cannot be reserved by another process`);
  }
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(ports[0], '127.0.0.1', resolve));
  t.pass(`${ports[0]} can be listened on`);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  t.equal(lockFromAnotherProcess(ports[0]!), 'EADDRINUSE', 'the reservation stays while the process lives');
});

t.test('a port whose lock another process holds is skipped', async (t) => {
  // Hold the lock of every port this process would try next, as another test process would.
  const mine = await reservePort();
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(portLockName(mine + 1), resolve));
  t.teardown(() => taken.close());
  const after = await reservePort();
  t.not(after, mine + 1, `${mine + 1} is locked elsewhere; got ${after}`);
});
