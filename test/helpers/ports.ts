// A TCP port for a program that must be told its port before it starts (the grpc-go interop
// server, the benchmark's proxies). Our own servers listen on port 0 and read the address back;
// these cannot. "Bind 0, read, close, reuse" races: the kernel may hand the same ephemeral port
// to anyone in between. So ports come from below the kernel's ephemeral range, which it never
// hands out for port 0, and each is reserved with an exclusively created file, so no two of our
// processes take the same one; a port that something else holds fails the bind check and is
// skipped. Reservations go with the process.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const FIRST = 10_000;
const RESERVATIONS = join(tmpdir(), 'fngate-ports');
const held: string[] = [];
let next = -1;

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > FIRST + 1000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

process.once('exit', () => {
  for (const path of held) rmSync(path, { force: true });
});

/** Creates the reservation file (with our pid); a file left by a process that is gone is taken over. */
function claim(path: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      return true;
    } catch {
      const owner = Number(readFileSync(path, 'utf8') || 0);
      if (owner > 0 && alive(owner)) return false;
      rmSync(path, { force: true });
    }
  }
  return false;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A port free on `host` now and reserved for this process. */
export async function reservePort(host = '127.0.0.1'): Promise<number> {
  mkdirSync(RESERVATIONS, { recursive: true });
  const span = ephemeralLow() - FIRST;
  // Processes start at different points (by pid), so they rarely even look at the same ports.
  if (next < 0) next = (process.pid * 97) % span;
  for (let tried = 0; tried < span; tried++) {
    const port = FIRST + (next++ % span);
    const path = join(RESERVATIONS, String(port));
    if (!claim(path)) continue; // another live process of ours has it
    if (await canBind(port, host)) {
      held.push(path);
      return port;
    }
    rmSync(path, { force: true });
  }
  throw new Error(`no free port between ${FIRST} and ${FIRST + span}`);
}
