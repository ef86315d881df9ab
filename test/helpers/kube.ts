// A real Kubernetes API server for tests: runs $(CACHE)/bin/fngate-kube-apiserver (embedded
// etcd + kube-apiserver, RBAC on; test/kube/apiserver/main.go) as a child process and waits
// for its ready line; kubectl is $(CACHE)/bin/kubectl from the same release. Both are built
// by `make kube-tools`. No controllers run: tests create EndpointSlices, ServiceAccount
// tokens (`kubectl create token`) and the like themselves.
//
//   const kube = await startKubeApiServer({ tokens: [{ name: 'nobody', token: 't0k' }] });
//   t.teardown(() => kube.dispose());
//   await kube.kubectlOk(['apply', '-f', '-'], { input: yaml });
//   await kube.stop(); ...; await kube.start();   // same port, same data: same cluster
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { reservePort } from './ports.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Override with FNGATE_KUBE_APISERVER / FNGATE_KUBECTL. */
export const KUBE_APISERVER_BIN = process.env['FNGATE_KUBE_APISERVER'] ?? join(REPO_ROOT, '.cache/bin/fngate-kube-apiserver');
export const KUBECTL_BIN = process.env['FNGATE_KUBECTL'] ?? join(REPO_ROOT, '.cache/bin/kubectl');

/**
 * An IPv4 address of this machine that an EndpointSlice may hold. The API server rejects
 * loopback (127.0.0.0/8, ::1), link-local and unspecified addresses in EndpointSlices, so
 * backends that tests publish through hand-made EndpointSlices must listen on this address
 * (or 0.0.0.0), not on 127.0.0.1. FNGATE_TEST_ENDPOINT_IP overrides.
 */
export function endpointAddress(): string {
  const fromEnv = process.env['FNGATE_TEST_ENDPOINT_IP'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.')) return a.address;
    }
  }
  throw new Error('no non-loopback IPv4 address on this machine (EndpointSlices reject 127.0.0.1); set FNGATE_TEST_ENDPOINT_IP');
}

/** A static bearer token the API server accepts: user and uid `name`, in `groups`. */
export interface KubeToken {
  name: string;
  token: string;
  groups?: string[];
}

export interface KubeApiServerOpts {
  /** etcd data, certs, keys, tokens, kubeconfig. Default: a new temp dir, removed by dispose(). */
  dataDir?: string;
  /** HTTPS port on 127.0.0.1. Default: one from reservePort() (test/helpers/ports.ts), kept for restarts. */
  port?: number;
  /** Extra static tokens (the admin token, group system:masters, is always there). */
  tokens?: KubeToken[];
  /** Extra kube-apiserver flags, e.g. ['--v=2']. */
  apiserverArgs?: string[];
  /** How long to wait for the ready line, per start (default 180 s). */
  timeoutMs?: number;
}

export interface KubectlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface KubectlOpts {
  /** Written to kubectl's stdin (e.g. for `apply -f -`). */
  input?: string;
  /** Authenticate with this bearer token instead of the admin one. */
  token?: string;
  /** Use this kubeconfig instead of the admin one (e.g. from writeKubeconfig()). */
  kubeconfig?: string;
  /** Kill kubectl after this long (default 60 s). */
  timeoutMs?: number;
}

export interface KubeApiServer {
  /** `https://127.0.0.1:PORT`; the same after a restart. */
  readonly url: string;
  /** Admin kubeconfig (token user, the serving CA embedded); the same file after a restart. */
  readonly kubeconfig: string;
  readonly port: number;
  readonly dataDir: string;
  /** Admin bearer token (user admin, group system:masters). */
  readonly adminToken: string;
  /** PEM file of the CA that signed the serving certificate. */
  readonly caFile: string;
  /** Process id of the current run (-1 while stopped). */
  readonly pid: number;
  running(): boolean;
  /** stderr (klog, etcd) of all runs so far; the last 4 MiB. */
  logs(): string;
  /** Runs kubectl against this server (admin unless opts.token); never rejects on a non-zero exit. */
  kubectl(args: string[], opts?: KubectlOpts): Promise<KubectlResult>;
  /** Like kubectl(), but rejects (with stdout and stderr) unless kubectl exits 0; resolves with stdout. */
  kubectlOk(args: string[], opts?: KubectlOpts): Promise<string>;
  /** Writes a kubeconfig for this server that authenticates with `token`; returns `path`. */
  writeKubeconfig(path: string, token: string, namespace?: string): string;
  /** SIGTERM (SIGKILL after 40 s); resolves when the process has exited. Keeps the data dir. */
  stop(): Promise<void>;
  /** Starts again after stop(), on the same port with the same data dir. */
  start(): Promise<void>;
  /** stop() + start(). */
  restart(): Promise<void>;
  /** stop(), then removes the data dir if this helper created it. */
  dispose(): Promise<void>;
}

interface ReadyLine {
  ready: true;
  url: string;
  kubeconfig: string;
  port: number;
  dataDir: string;
  token: string;
  ca: string;
  pid: number;
}

interface Run {
  pid: number;
  exited: Promise<void>;
  done(): boolean;
  kill(sig: NodeJS.Signals): void;
}

const MAX_LOG = 4 << 20;

export async function startKubeApiServer(opts: KubeApiServerOpts = {}): Promise<KubeApiServer> {
  for (const bin of [KUBE_APISERVER_BIN, KUBECTL_BIN]) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`make kube-tools\` first`);
  }
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'fngate-kube-'));
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const port = opts.port ?? (await reservePort());
  let logs = '';
  let current: Run | null = null;
  let ready: ReadyLine | null = null;

  const baseArgs = (): string[] => {
    const args = ['--data-dir', dataDir, '--secure-port', String(port)];
    for (const tk of opts.tokens ?? []) {
      if (/[:,\s"]/.test(tk.name) || /[,\s"]/.test(tk.token)) throw new Error(`bad token ${JSON.stringify(tk)}`);
      args.push('--token', `${tk.name}:${tk.token}${tk.groups?.length ? `:${tk.groups.join(',')}` : ''}`);
    }
    // Open watches (a gateway's informers) would otherwise hold a stop for 30 s.
    const extra = opts.apiserverArgs ?? [];
    const grace = extra.some((a) => a.startsWith('--shutdown-watch-termination-grace-period')) ? [] : ['--shutdown-watch-termination-grace-period=2s'];
    args.push('--', ...grace, ...extra);
    return args;
  };

  const launch = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(KUBE_APISERVER_BIN, baseArgs(), { cwd: dataDir, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let done = false;
      let settled = false;
      const killOnExit = (): void => {
        child.kill('SIGKILL');
      };
      process.on('exit', killOnExit);
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(`fngate-kube-apiserver ${why}\n--- stderr (tail) ---\n${logs.slice(-20_000)}--- stdout ---\n${stdout}`));
      };
      const timer = setTimeout(() => fail(`not ready within ${timeoutMs} ms`), timeoutMs);
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        logs += chunk;
        if (logs.length > MAX_LOG) logs = logs.slice(-MAX_LOG / 2);
      });
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        stdout += chunk;
        if (settled) return;
        for (const text of stdout.split('\n').slice(0, -1)) {
          if (!text.startsWith('{')) continue;
          let line: unknown;
          try {
            line = JSON.parse(text);
          } catch {
            continue;
          }
          if (typeof line === 'object' && line !== null && (line as { ready?: unknown }).ready === true) {
            settled = true;
            clearTimeout(timer);
            ready = line as ReadyLine;
            resolve();
            return;
          }
        }
      });
      const exited = new Promise<void>((res) => {
        child.once('close', (code, signal) => {
          done = true;
          process.off('exit', killOnExit);
          fail(`exited (code ${code}, signal ${signal}) before it was ready`);
          res();
        });
        child.once('error', (err) => {
          logs += `spawn failed: ${err.message}\n`;
          done = true;
          process.off('exit', killOnExit);
          fail('could not be started');
          res();
        });
      });
      current = { pid: child.pid ?? -1, exited, done: () => done, kill: (sig) => child.kill(sig) };
    });

  const stop = async (): Promise<void> => {
    const run = current;
    if (run === null) return;
    if (!run.done()) {
      run.kill('SIGTERM');
      const timer = setTimeout(() => run.kill('SIGKILL'), 40_000);
      await run.exited;
      clearTimeout(timer);
    }
    current = null;
  };

  const start = async (): Promise<void> => {
    if (current !== null && !(current as Run).done()) throw new Error('fngate-kube-apiserver is already running');
    await launch();
  };

  const need = (): ReadyLine => {
    if (ready === null) throw new Error('fngate-kube-apiserver never became ready');
    return ready;
  };

  const kubectl = (args: string[], kopts: KubectlOpts = {}): Promise<KubectlResult> =>
    new Promise<KubectlResult>((resolve) => {
      const r = need();
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'KUBECONFIG') env[k] = v;
      env['KUBERC'] = 'off'; // no user preferences (~/.kube/kuberc)
      const full = ['--kubeconfig', kopts.kubeconfig ?? r.kubeconfig, '--cache-dir', join(dataDir, 'kubectl-cache')];
      if (kopts.token !== undefined) full.push('--token', kopts.token);
      const child = spawn(KUBECTL_BIN, [...full, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8');
      child.stderr.setEncoding('utf8');
      child.stdout.on('data', (c: string) => (stdout += c));
      child.stderr.on('data', (c: string) => (stderr += c));
      const timer = setTimeout(() => {
        stderr += `\n(killed after ${kopts.timeoutMs ?? 60_000} ms)`;
        child.kill('SIGKILL');
      }, kopts.timeoutMs ?? 60_000);
      child.once('error', (err) => {
        stderr += `spawn failed: ${err.message}\n`;
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
      child.stdin.on('error', () => {}); // kubectl may exit before reading it all
      child.stdin.end(kopts.input ?? '');
    });

  try {
    await launch();
  } catch (err) {
    if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }

  return {
    get url() {
      return need().url;
    },
    get kubeconfig() {
      return need().kubeconfig;
    },
    get port() {
      return port;
    },
    dataDir,
    get adminToken() {
      return need().token;
    },
    get caFile() {
      return need().ca;
    },
    get pid() {
      return current !== null && !current.done() ? current.pid : -1;
    },
    running: () => current !== null && !current.done(),
    logs: () => logs,
    kubectl,
    kubectlOk: async (args, kopts) => {
      const r = await kubectl(args, kopts);
      if (r.code !== 0) {
        throw new Error(`kubectl ${args.join(' ')} exited ${r.code}\n--- stderr ---\n${r.stderr}--- stdout ---\n${r.stdout}`);
      }
      return r.stdout;
    },
    writeKubeconfig: (path, token, namespace = 'default') => {
      const r = need();
      const ca = readFileSync(r.ca).toString('base64');
      mkdirSync(dirname(path), { recursive: true });
      const tmp = join(dirname(path), `.tmp-${randomBytes(6).toString('hex')}`);
      writeFileSync(
        tmp,
        stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'fngate-test', cluster: { server: r.url, 'certificate-authority-data': ca } }],
          users: [{ name: 'user', user: { token } }],
          contexts: [{ name: 'fngate-test', context: { cluster: 'fngate-test', user: 'user', namespace } }],
          'current-context': 'fngate-test',
        }),
        { mode: 0o600 },
      );
      renameSync(tmp, path);
      return path;
    },
    stop,
    start,
    restart: async () => {
      await stop();
      await start();
    },
    dispose: async () => {
      await stop();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
