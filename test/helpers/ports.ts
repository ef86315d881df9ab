// A TCP port for a program that must be told its port before it starts (kube-apiserver, the
// grpc-go interop server, the benchmark's proxies). Our own servers listen on port 0 and read
// the address back; these cannot. "Listen on 0, close, reuse the number" races: the kernel may
// hand that port to any other socket in between. Here nothing can take it:
// - ports come from below the kernel's ephemeral range, which it never hands out for port 0 or
//   for an outgoing connection;
// - each is locked among our processes by a Unix socket in Linux's abstract namespace
//   ("\0fngate-port-N"): the kernel lets one process at a time bind that name and frees it when
//   the process ends, however it ends, so no two test processes get the same port and no stale
//   lock is left behind;
// - a port that another program holds fails a bind check and is skipped.
// A port stays reserved until this process exits, so a server restarted on it gets it back.
import { readFileSync } from 'node:fs';
import net from 'node:net';

const FIRST = 10_000;
const locks: net.Server[] = [];
let next = -1;

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > FIRST + 1000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/** The abstract socket name that locks `port` among fngate's test processes. */
export function portLockName(port: number): string {
  return `\0fngate-port-${port}`;
}

/** Binds the port's lock; undefined if another process holds it. */
function lock(port: number): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(undefined));
    server.listen(portLockName(port), () => {
      server.unref(); // the lock does not keep the process alive
      resolve(server);
    });
  });
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** A port free on `host` now and reserved for this process until it exits. */
export async function reservePort(host = '127.0.0.1'): Promise<number> {
  const span = ephemeralLow() - FIRST;
  // Processes start at different points (by pid), so they rarely even look at the same ports.
  if (next < 0) next = (process.pid * 97) % span;
  for (let tried = 0; tried < span; tried++) {
    const port = FIRST + (next++ % span);
    const held = await lock(port);
    if (held === undefined) continue; // another of our processes has it
    if (await canBind(port, host)) {
      locks.push(held);
      return port;
    }
    held.close();
  }
  throw new Error(`no free port between ${FIRST} and ${FIRST + span}`);
}
