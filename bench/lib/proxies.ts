// The contenders: how each is configured, started (pinned to the proxy core, one worker or
// thread) and stopped. Every one listens on 127.0.0.1 and forwards to the same backend.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { reservePort } from '../../test/helpers/ports.ts';
import { start, stop, waitForOutput, waitForPort, type Started } from './proc.ts';

/** The default field, in the order they run. */
export const PROXIES = ['direct', 'fngate', 'envoy', 'haproxy', 'nginx'] as const;
/** Also available (BENCH_PROXIES): the bare node:http2 pass-through (bench/tools/node-bare-proxy.ts),
 * with header objects or with Node 24's raw header arrays. */
export const EXTRA_PROXIES = ['node-bare', 'node-bare-raw'] as const;
export type ProxyName = (typeof PROXIES)[number] | (typeof EXTRA_PROXIES)[number];

export interface ProxyContext {
  /** fngate's built entry (dist/cmd/fngate.js, or BENCH_FNGATE). */
  readonly fngateEntry: string;
  /** Scratch directory of this run (configs, fngate's Function and keys files). */
  readonly work: string;
  readonly backendPort: number;
  /** `taskset -c` list for the proxy, or undefined. */
  readonly cpus: string | undefined;
  readonly idleTimeoutS: number;
  /** fngate's Function directory and keys file (written once per run). */
  readonly functionsDir: string;
  readonly keysFile: string;
  /** Extra Node flags for fngate (BENCH_FNGATE_NODE_FLAGS, e.g. --cpu-prof). */
  readonly fngateNodeFlags: readonly string[];
  /** fngate's LD_PRELOAD, as the image sets it ("" for glibc's malloc; BENCH_FNGATE_MALLOC). */
  readonly fngatePreload: string;
  /** The tools found for this run. */
  readonly bin: { readonly envoy: string; readonly haproxy: string; readonly nginx: string };
  readonly nginxVersion: string;
  /** Connection limit for HAProxy and nginx: what the open-files limit allows. */
  readonly maxConn: number;
  readonly fdLimit: number;
}

export interface RunningProxy {
  readonly name: ProxyName;
  /** Where clients connect (host:port). */
  readonly target: string;
  /** The proxy process (root of its tree); undefined for direct. */
  readonly proc: Started | undefined;
  stop(): Promise<void>;
}

const CONFIGS = new URL('../configs/', import.meta.url).pathname;

/** Fills a template's {{NAME}}s; every placeholder must be known. */
export function render(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{\{([A-Z0-9_]+)\}\}/g, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`config template: no value for {{${key}}}`);
    return String(value);
  });
}

let instance = 0;

export async function startProxy(name: ProxyName, ctx: ProxyContext): Promise<RunningProxy> {
  if (name === 'direct') {
    return { name, target: `127.0.0.1:${ctx.backendPort}`, proc: undefined, stop: async () => {} };
  }
  const port = await reservePort();
  const dir = join(ctx.work, `${name}-${++instance}`);
  mkdirSync(dir, { recursive: true });
  const values = { LISTEN_PORT: port, BACKEND_PORT: ctx.backendPort, IDLE_TIMEOUT_S: ctx.idleTimeoutS, DIR: dir, MAXCONN: ctx.maxConn, NOFILE: ctx.fdLimit };
  let proc: Started;
  switch (name) {
    case 'fngate': {
      const admin = await reservePort();
      proc = start(ctx.cpus, process.execPath, [
        ...ctx.fngateNodeFlags,
        ctx.fngateEntry,
        'serve',
        '--listen', `127.0.0.1:${port}`,
        '--admin', `127.0.0.1:${admin}`,
        '--functions', ctx.functionsDir,
        '--api-keys', ctx.keysFile,
        '--idle-timeout', `${ctx.idleTimeoutS}s`,
        '--drain-timeout', '2s',
        '--workers', '1',
        // The idle-memory figure opens 10,000 connections from one address.
        '--max-connections-per-ip', '0',
      ], { cwd: dir, env: { ...process.env, LD_PRELOAD: ctx.fngatePreload } });
      await waitForOutput(proc, (out) => out.includes('"fngate listening"'), 20_000, 'fngate');
      // A preload that did not take (library not found) only warns; measure what was asked.
      const allocator = /"allocator":"(\w+)"/.exec(proc.output())?.[1];
      const wanted = ctx.fngatePreload === '' ? 'system' : 'mimalloc';
      if (allocator !== wanted) {
        throw new Error(`fngate runs on ${allocator ?? 'an unreported'} allocator, not ${wanted} (LD_PRELOAD=${ctx.fngatePreload}); \`make bench-tools\` installs libmimalloc2.0`);
      }
      break;
    }
    case 'node-bare':
    case 'node-bare-raw': {
      const script = new URL('../tools/node-bare-proxy.ts', import.meta.url).pathname;
      proc = start(ctx.cpus, process.execPath, [script, String(port), `127.0.0.1:${ctx.backendPort}`, name === 'node-bare' ? 'objects' : 'raw'], { cwd: dir });
      await waitForOutput(proc, (out) => out.includes('listening'), 20_000, name);
      break;
    }
    case 'envoy': {
      const admin = await reservePort();
      const config = join(dir, 'envoy.yaml');
      writeFileSync(config, render(readFileSync(join(CONFIGS, 'envoy.yaml'), 'utf8'), { ...values, ADMIN_PORT: admin }));
      proc = start(ctx.cpus, ctx.bin.envoy, [
        '-c', config, '--concurrency', '1', '--disable-hot-restart', '--log-level', 'warn',
      ], { cwd: dir });
      await waitForPort(proc, '127.0.0.1', port, 30_000, 'envoy');
      break;
    }
    case 'haproxy': {
      const config = join(dir, 'haproxy.cfg');
      writeFileSync(config, render(readFileSync(join(CONFIGS, 'haproxy.cfg'), 'utf8'), values));
      proc = start(ctx.cpus, ctx.bin.haproxy, ['-db', '-f', config], { cwd: dir });
      await waitForPort(proc, '127.0.0.1', port, 15_000, 'haproxy');
      break;
    }
    case 'nginx': {
      const config = join(dir, 'nginx.conf');
      // http2_max_requests is obsolete from 1.19.7 (keepalive_requests covers HTTP/2 too).
      const old = versionBelow(ctx.nginxVersion, [1, 19, 7]);
      writeFileSync(config, render(readFileSync(join(CONFIGS, 'nginx.conf'), 'utf8'), {
        ...values,
        USER_LINE: process.getuid?.() === 0 ? 'user root;' : '',
        HTTP2_MAX_REQUESTS_LINE: old ? 'http2_max_requests 100000000;' : '# http2_max_requests: obsolete since 1.19.7, keepalive_requests applies',
      }));
      proc = start(ctx.cpus, ctx.bin.nginx, ['-p', dir, '-c', config, '-e', 'stderr'], { cwd: dir });
      await waitForPort(proc, '127.0.0.1', port, 15_000, 'nginx');
      break;
    }
  }
  return { name, target: `127.0.0.1:${port}`, proc, stop: () => stop(proc, name === 'fngate' ? 8000 : 5000) };
}

function versionBelow(version: string, than: [number, number, number]): boolean {
  const parts = version.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const a = parts[i] ?? 0;
    const b = than[i] as number;
    if (a !== b) return a < b;
  }
  return false;
}
