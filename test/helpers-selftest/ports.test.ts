// test/helpers/ports.ts: ports for programs that must be told theirs in advance come from below
// the kernel's ephemeral range, each reserved by a file naming this process, and are free.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reservePort } from '../helpers/ports.ts';

t.test('distinct, below the ephemeral range, reserved for this process, bindable', async (t) => {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  const ports = [await reservePort(), await reservePort(), await reservePort('0.0.0.0')];
  t.equal(new Set(ports).size, 3, `three different ports: ${ports.join(', ')}`);
  for (const port of ports) {
    t.ok(port >= 10_000 && port < low, `${port} is below the ephemeral range (${low})`);
    const file = join(tmpdir(), 'fngate-ports', String(port));
    t.equal(readFileSync(file, 'utf8'), String(process.pid), `${port} reserved by this process`);
  }
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(ports[0], '127.0.0.1', resolve));
  t.pass(`${ports[0]} can be listened on`);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  t.ok(existsSync(join(tmpdir(), 'fngate-ports', String(ports[0]))), 'the reservation stays while the process lives');
});
