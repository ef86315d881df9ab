// Shared set-up for the Kubernetes-mode end-to-end tests (test/kube/*.test.ts): a real API
// server with the Function CRD applied, the helm chart's RBAC (ClusterRole + Lease Role) and
// ServiceAccount rendered by `helm template` and applied, a kubeconfig whose user is that
// ServiceAccount's token, and `fngate serve --kubernetes` started under it. So a verb the
// chart lacks (or the gateway starts to need) shows up as a failing test here.
//
//   const env = await startKubeEnv(t);
//   const b = await startEchoBackend({ name: 'a', host: endpointAddress() });
//   await env.apply(endpointSlice('greeter-a', { service: 'greeter', port: { name: 'grpc', port: b.port }, addresses: [ready()] }));
//   await env.apply(functionObject('greeter', { functionId: 'fn-greeter', ... }));
//   const gw = await env.startGateway('gw-a');
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { closeServer, startEchoBackend } from './backend.ts';
import type { EchoBackend } from './backend.ts';
import { echoClient } from './echo-client.ts';
import type { CallResult, EchoClient, MetadataRecord } from './echo-client.ts';
import type { GatewayProcess } from './gateway.ts';
import { CHART_DIR, HELM_BIN, helmEnv } from './helm.ts';
import { endpointAddress, startKubeApiServer } from './kube.ts';
import type { KubeApiServer } from './kube.ts';
import { sleep } from './wait.ts';

// gateway.ts checks at import that dist/ is built and current; it is imported only when a
// gateway is started, so the CRD tests run on an unbuilt tree too.
const gatewayHelpers = (): Promise<typeof import('./gateway.ts')> => import('./gateway.ts');

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CRD_FILE = join(REPO_ROOT, 'deploy/helm/fngate/crds/function.yaml');
export { CHART_DIR, HELM_BIN };

/** The namespace the chart is "installed" in: ServiceAccount, Lease Role, the Lease itself. */
export const RELEASE_NS = 'fngate-system';
/** Release name `fngate`: the chart's fullname, ServiceAccount and ClusterRole are `fngate`. */
export const RELEASE = 'fngate';
export const LEASE_NAME = 'fngate-status-writer';

export { Status } from '../../lib/grpc/status.ts';

/** Enough of a tap Test to register cleanups. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

// ---------------------------------------------------------------- objects

export interface FunctionVersion {
  versionId: string;
  service?: { name: string; port: string | number };
  endpoints?: string[];
  scaleTargetRef?: { kind?: string; name: string; minReplicas?: number; maxReplicas?: number };
}

export interface FunctionSpecInput {
  functionId?: string;
  activeVersion?: string;
  maxSessionsPerEndpoint?: number;
  scaling?: { holdTimeout?: string; maxPendingSessions?: number; targetSessionsPerEndpoint?: number };
  versions?: FunctionVersion[];
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

/** A Function (docs/reference.md, Functions) as the API takes it. */
export function functionObject(name: string, spec: FunctionSpecInput, namespace = 'default'): KubeObject {
  return { apiVersion: 'fngate.dev/v1alpha1', kind: 'Function', metadata: { name, namespace }, spec };
}

/** One version backed by Service `service` on `port` (name or number). */
export const serviceVersion = (versionId: string, service: string, port: string | number): FunctionVersion => ({ versionId, service: { name: service, port } });

export interface SliceEndpoint {
  address: string;
  /** undefined: the condition is left out (the API's rule: unset means ready). */
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

/** A hand-made EndpointSlice of Service `service` (no controller makes them here). */
export function endpointSlice(
  name: string,
  opts: { service: string; namespace?: string; port: { name?: string; port: number }; endpoints: SliceEndpoint[] },
): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: opts.namespace ?? 'default', labels: { 'kubernetes.io/service-name': opts.service } },
    addressType: 'IPv4',
    ports: [{ ...(opts.port.name === undefined ? {} : { name: opts.port.name }), port: opts.port.port, protocol: 'TCP' }],
    endpoints: opts.endpoints.map((e) => {
      const conditions: Record<string, boolean> = {};
      if (e.ready !== undefined) conditions['ready'] = e.ready;
      if (e.serving !== undefined) conditions['serving'] = e.serving;
      if (e.terminating !== undefined) conditions['terminating'] = e.terminating;
      return { addresses: [e.address], conditions };
    }),
  };
}

/**
 * The slice publishing one Echo backend (listening on endpointAddress()) as an endpoint of
 * `service`, port name `portName` (default `grpc`). One slice per backend: backends share the
 * one non-loopback address and differ by port, and a slice's ports apply to all its endpoints.
 */
export function backendSlice(
  backend: EchoBackend,
  service: string,
  opts: { ready?: boolean; portName?: string | null; namespace?: string; name?: string } = {},
): KubeObject {
  const portName = opts.portName === undefined ? 'grpc' : opts.portName;
  return endpointSlice(opts.name ?? `${service}-${backend.name}`, {
    service,
    ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
    port: { ...(portName === null ? {} : { name: portName }), port: backend.port },
    endpoints: [{ address: endpointAddress(), ready: opts.ready ?? true }],
  });
}

/**
 * Starts Echo backends on `host` (default endpointAddress(), which EndpointSlices accept),
 * all stopped at teardown.
 */
export function echoBackends(t: Teardown): (name: string, host?: string) => Promise<EchoBackend> {
  const backends: EchoBackend[] = [];
  t.teardown(async () => {
    await Promise.all(backends.map((b) => b.stop(1000)));
  });
  return async (name, host = endpointAddress()) => {
    const b = await startEchoBackend({ name, host });
    backends.push(b);
    return b;
  };
}

// ---------------------------------------------------------------- what the API returns

export interface ManagedField {
  manager: string;
  operation: string;
  subresource?: string;
  time?: string;
}

export interface FunctionCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

export interface FunctionResource {
  metadata: { name: string; namespace: string; generation: number; resourceVersion: string; uid: string; managedFields?: ManagedField[] };
  spec: FunctionSpecInput;
  status?: {
    observedGeneration?: number;
    versions?: Array<{ versionId: string; readyEndpoints: number }>;
    conditions?: FunctionCondition[];
  };
}

export interface LeaseResource {
  metadata: { resourceVersion: string; managedFields?: ManagedField[] };
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; acquireTime?: string; leaseTransitions?: number };
}

export const readyCondition = (fn: FunctionResource): FunctionCondition | undefined => fn.status?.conditions?.find((c) => c.type === 'Ready');

export const readyEndpointsOf = (fn: FunctionResource): Record<string, number> =>
  Object.fromEntries((fn.status?.versions ?? []).map((v) => [v.versionId, v.readyEndpoints]));

/** Managers of the status subresource (who wrote status), per managedFields. */
export const statusManagers = (fn: FunctionResource): string[] =>
  (fn.metadata.managedFields ?? []).filter((m) => m.subresource === 'status').map((m) => m.manager).sort();

/** True when the status reflects the current spec (the gateway has seen it) and `pred` holds. */
export const current = (fn: FunctionResource): boolean =>
  fn.status?.observedGeneration === fn.metadata.generation && readyCondition(fn)?.observedGeneration === fn.metadata.generation;

// ---------------------------------------------------------------- the environment

/** What the API server's audit log says about one request (Metadata level). */
export interface AuditEvent {
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string };
  objectRef?: { resource?: string; subresource?: string; apiGroup?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
}

export interface KubeEnv {
  readonly kube: KubeApiServer;
  /** Temp dir for kubeconfigs and the like (removed at teardown). */
  readonly work: string;
  /** Kubeconfig of the chart's ServiceAccount (fngate-system/fngate). */
  readonly gatewayKubeconfig: string;
  /** An API key (all functions) registered as a Secret made by `fngate keys create`. */
  readonly key: string;
  /** kubectl apply -f - (admin); rejects with kubectl's stderr on failure. */
  apply(...objects: KubeObject[]): Promise<string>;
  /** kubectl apply -f - (admin); never rejects. */
  tryApply(...objects: KubeObject[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** kubectl delete (admin, --wait=false); `kind/name` in `namespace`. */
  remove(namespace: string, ...resources: string[]): Promise<void>;
  /** kubectl patch --type merge. */
  patch(namespace: string, resource: string, patch: unknown): Promise<void>;
  /** GET of an API path (admin token), parsed; undefined on 404. */
  get<T>(path: string): Promise<T | undefined>;
  getFunction(name: string, namespace?: string): Promise<FunctionResource>;
  getLease(): Promise<LeaseResource | undefined>;
  /** Polls the Function until `pred` holds; rejects (with what was last seen) after `timeoutMs`. */
  waitForFunction(name: string, pred: (fn: FunctionResource) => boolean, what: string, opts?: { namespace?: string; timeoutMs?: number; gateways?: GatewayProcess[] }): Promise<FunctionResource>;
  /** Polls the Lease until `pred` holds. */
  waitForLease(pred: (lease: LeaseResource | undefined) => boolean, what: string, timeoutMs?: number): Promise<LeaseResource | undefined>;
  /**
   * `fngate serve --kubernetes` under the chart's ServiceAccount, POD_NAME `podName`,
   * POD_NAMESPACE fngate-system; stopped at teardown.
   */
  startGateway(podName: string, opts?: { args?: string[]; kubeconfig?: string; env?: Record<string, string>; timeoutMs?: number }): Promise<GatewayProcess>;
  /** `fngate keys create --output secret` applied to the cluster; resolves with the key. */
  createKeySecret(name: string, opts?: { functions?: string; namespace?: string }): Promise<string>;
  /**
   * Renders the chart's rbac.yaml + serviceaccount.yaml for `release` in `namespace` (default
   * fngate-system) with `values` (--set) and applies it; returns a kubeconfig for its ServiceAccount.
   */
  installChartRbac(release: string, values?: Record<string, string>, namespace?: string): Promise<string>;
  /** Creates the namespaces (apply: existing ones are fine). */
  namespaces(...names: string[]): Promise<void>;
  /** The audit log so far (opts.audit), requests of `username` only. */
  auditEvents(username: string): AuditEvent[];
}

export interface KubeEnvOpts {
  /** A '*' key Secret for the tests (default true; needs dist/ built). */
  key?: boolean;
  /** The chart's RBAC and ServiceAccount, and a kubeconfig for it (default true). */
  rbac?: boolean;
  /** An audit log of ServiceAccount requests, for env.auditEvents() (default false). */
  audit?: boolean;
}

function run(cmd: string, args: string[], env?: Record<string, string>, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', (err) => (stderr += `spawn failed: ${err.message}\n`));
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/** Resolves with the key printed by `fngate keys create` on stderr. */
export function keyFromCliStderr(stderr: string): string {
  const m = /^\s+(fngk_\S+)$/m.exec(stderr);
  if (m?.[1] === undefined) throw new Error(`no key in fngate keys create output:\n${stderr}`);
  return m[1];
}

/** `node dist/cmd/fngate.js keys create ...` (the built CLI). */
export async function fngateKeysCreate(args: string[]): Promise<{ secretYaml: string; key: string }> {
  const { FNGATE_ENTRY } = await gatewayHelpers();
  const r = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(process.execPath, [FNGATE_ENTRY, 'keys', 'create', ...args], { cwd: REPO_ROOT }, (err, stdout, stderr) =>
      err ? reject(new Error(`fngate keys create ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve({ stdout, stderr }),
    );
  });
  return { secretYaml: r.stdout, key: keyFromCliStderr(r.stderr) };
}

export async function startKubeEnv(t: Teardown, opts: KubeEnvOpts = {}): Promise<KubeEnv> {
  const work = mkdtempSync(join(tmpdir(), 'fngate-kube-e2e-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  // Open watches (the gateway's) would hold a SIGTERMed kube-apiserver until the helper's
  // 30 s shutdown limit: end them after 2 s instead, as a cluster's API server does on restart.
  const apiserverArgs: string[] = [];
  const auditLog = join(work, 'audit.log');
  if (opts.audit === true) {
    // Every request made by a ServiceAccount, at Metadata level (verb, resource, user, code).
    const policy = join(work, 'audit-policy.yaml');
    writeFileSync(
      policy,
      JSON.stringify({
        apiVersion: 'audit.k8s.io/v1',
        kind: 'Policy',
        omitStages: ['RequestReceived'],
        rules: [{ level: 'Metadata', userGroups: ['system:serviceaccounts'] }, { level: 'None' }],
      }),
    );
    apiserverArgs.push(`--audit-policy-file=${policy}`, `--audit-log-path=${auditLog}`, '--audit-log-mode=blocking', '--audit-log-format=json');
  }
  const kube = await startKubeApiServer({ apiserverArgs });
  t.teardown(() => kube.dispose());
  const gateways: GatewayProcess[] = [];
  t.teardown(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
  });
  const ca = readFileSync(kube.caFile);

  const kubectlOk = (args: string[], input?: string): Promise<string> => kube.kubectlOk(args, input === undefined ? {} : { input });
  const toInput = (objects: KubeObject[]): string => objects.map((o) => JSON.stringify(o)).join('\n');

  const get = <T>(path: string): Promise<T | undefined> =>
    new Promise<T | undefined>((resolve, reject) => {
      const req = https.request(`${kube.url}${path}`, { ca, headers: { authorization: `Bearer ${kube.adminToken}`, accept: 'application/json' }, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode === 404) resolve(undefined);
          else if (res.statusCode !== 200) reject(new Error(`GET ${path}: ${res.statusCode} ${body}`));
          else resolve(JSON.parse(body) as T);
        });
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)));
      req.on('error', reject);
      req.end();
    });

  const getFunction = async (name: string, namespace = 'default'): Promise<FunctionResource> => {
    const fn = await get<FunctionResource>(`/apis/fngate.dev/v1alpha1/namespaces/${namespace}/functions/${name}`);
    if (fn === undefined) throw new Error(`Function ${namespace}/${name} not found`);
    return fn;
  };
  const getLease = (): Promise<LeaseResource | undefined> => get<LeaseResource>(`/apis/coordination.k8s.io/v1/namespaces/${RELEASE_NS}/leases/${LEASE_NAME}`);

  const chartHelmEnv = helmEnv(work);

  const namespaces = async (...names: string[]): Promise<void> => {
    await kubectlOk(['apply', '-f', '-'], toInput(names.map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }))));
  };
  const installChartRbac = async (release: string, values: Record<string, string> = {}, namespace = RELEASE_NS): Promise<string> => {
    await namespaces(namespace);
    const args = ['template', release, CHART_DIR, '--namespace', namespace, '--show-only', 'templates/rbac.yaml', '--show-only', 'templates/serviceaccount.yaml'];
    for (const [k, v] of Object.entries(values)) args.push('--set', `${k}=${v}`);
    const r = await run(HELM_BIN, args, chartHelmEnv);
    if (r.code !== 0) throw new Error(`helm ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as KubeObject | null).filter((d): d is KubeObject => d !== null);
    const sa = docs.find((d) => d.kind === 'ServiceAccount');
    if (sa === undefined) throw new Error(`the chart rendered no ServiceAccount:\n${r.stdout}`);
    await kubectlOk(['apply', '-f', '-'], toInput(docs));
    const token = (await kubectlOk(['-n', sa.metadata.namespace ?? namespace, 'create', 'token', sa.metadata.name, '--duration=2h'])).trim();
    return kube.writeKubeconfig(join(work, `${release}.kubeconfig`), token);
  };

  // The CRD, as the chart ships it, applied with kubectl.
  await kubectlOk(['apply', '-f', CRD_FILE]);
  await kubectlOk(['wait', '--for=condition=Established', 'crd/functions.fngate.dev', '--timeout=60s']);
  const gatewayKubeconfig = opts.rbac === false ? '' : await installChartRbac(RELEASE);

  const createKeySecret = async (name: string, o: { functions?: string; namespace?: string } = {}): Promise<string> => {
    const { secretYaml, key } = await fngateKeysCreate(['--name', name, '--functions', o.functions ?? '*', '--output', 'secret', '--namespace', o.namespace ?? 'default']);
    await kubectlOk(['apply', '-f', '-'], secretYaml);
    return key;
  };
  const key = opts.key === false ? '' : await createKeySecret('tester');

  const env: KubeEnv = {
    kube,
    work,
    gatewayKubeconfig,
    key,
    apply: (...objects) => kubectlOk(['apply', '-f', '-'], toInput(objects)),
    tryApply: (...objects) => kube.kubectl(['apply', '-f', '-'], { input: toInput(objects) }),
    remove: async (namespace, ...resources) => {
      await kubectlOk(['-n', namespace, 'delete', '--wait=false', ...resources]);
    },
    patch: async (namespace, resource, p) => {
      await kubectlOk(['-n', namespace, 'patch', resource, '--type', 'merge', '-p', JSON.stringify(p)]);
    },
    get,
    getFunction,
    getLease,
    async waitForFunction(name, pred, what, o = {}) {
      const until = Date.now() + (o.timeoutMs ?? 15_000);
      let last: FunctionResource | undefined;
      let lastErr: unknown;
      for (;;) {
        try {
          last = await getFunction(name, o.namespace);
          if (pred(last)) return last;
        } catch (err) {
          lastErr = err;
        }
        if (Date.now() > until) {
          const logs = (o.gateways ?? gateways).map((g, i) => `--- gateway ${i} stderr (tail) ---\n${g.logs().slice(-6000)}`).join('\n');
          throw new Error(
            `${what}: not true within ${o.timeoutMs ?? 15_000} ms\nlast seen: ${JSON.stringify({ metadata: { generation: last?.metadata.generation, resourceVersion: last?.metadata.resourceVersion, managedFields: last?.metadata.managedFields?.map((m) => [m.manager, m.subresource]) }, spec: last?.spec, status: last?.status })}\n${lastErr === undefined ? '' : `last error: ${String(lastErr)}\n`}${logs}`,
          );
        }
        await sleep(100);
      }
    },
    async waitForLease(pred, what, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      let last: LeaseResource | undefined;
      for (;;) {
        last = await getLease().catch(() => undefined);
        if (pred(last)) return last;
        if (Date.now() > until) throw new Error(`${what}: not true within ${timeoutMs} ms; lease: ${JSON.stringify(last?.spec)}`);
        await sleep(100);
      }
    },
    async startGateway(podName, o = {}) {
      const { startGateway } = await gatewayHelpers();
      const gw = await startGateway(
        ['--kubernetes', '--idle-timeout', '60s', '--drain-timeout', '2s', '--session-linger', '2s', '--log-level', 'debug', ...(o.args ?? [])],
        {
          env: { KUBECONFIG: o.kubeconfig ?? gatewayKubeconfig, POD_NAMESPACE: RELEASE_NS, POD_NAME: podName, ...o.env },
          timeoutMs: o.timeoutMs ?? 30_000,
        },
      );
      gateways.push(gw);
      return gw;
    },
    createKeySecret,
    installChartRbac,
    namespaces,
    auditEvents(username) {
      let text = '';
      try {
        text = readFileSync(auditLog, 'utf8');
      } catch {
        return [];
      }
      return text
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as AuditEvent)
        .filter((e) => e.user.username === username);
    },
  };
  return env;
}

// ---------------------------------------------------------------- calls

/** Clients to one gateway, closed at teardown. */
export interface Clients {
  /** A new grpc-js channel: its own connection, so its own sessions. */
  client(): EchoClient;
  md(functionId: string, extra?: MetadataRecord): MetadataRecord;
  /** One unary call on a fresh connection (closed after). */
  once(functionId: string, extra?: MetadataRecord): Promise<CallResult>;
}

export function clients(t: Teardown, gw: GatewayProcess, key: string): Clients {
  const open: EchoClient[] = [];
  t.teardown(() => {
    for (const c of open) c.close();
  });
  const md = (functionId: string, extra: MetadataRecord = {}): MetadataRecord => ({ authorization: `Bearer ${key}`, 'function-id': functionId, ...extra });
  return {
    client() {
      const c = echoClient(gw.h2c);
      open.push(c);
      return c;
    },
    md,
    async once(functionId, extra) {
      const c = echoClient(gw.h2c);
      try {
        return await c.unary(md(functionId, extra), {}, { deadlineMs: 10_000 });
      } finally {
        c.close();
      }
    },
  };
}

export const reqid = (r: CallResult): string | undefined => (typeof r.initial['nvcf-reqid'] === 'string' ? r.initial['nvcf-reqid'] : undefined);
export const summary = (r: CallResult): string => `status ${r.status} ${JSON.stringify(r.details)} backend ${r.reply?.backend ?? '-'} reqid ${reqid(r) ?? '-'}`;

/** Live sessions the gateway holds per endpoint (`fngate_endpoint_sessions`). */
export async function sessionsByEndpoint(gw: GatewayProcess): Promise<Record<string, number>> {
  const { metricsText } = await gatewayHelpers();
  const out: Record<string, number> = {};
  for (const m of (await metricsText(gw)).matchAll(/^fngate_endpoint_sessions\{endpoint="([^"]+)"\} (\d+)$/gm)) out[m[1] ?? ''] = Number(m[2]);
  return out;
}

/** An async iterable fed by push(), for bidi streams whose messages a test sends one by one. */
export interface Pushable<T> extends AsyncIterable<T> {
  push(value: T): void;
  end(): void;
}

export function pushable<T>(): Pushable<T> {
  const queue: T[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  return {
    push(value) {
      queue.push(value);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (ended) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    },
  };
}

/** The gateway's readiness (admin /readyz status code). */
export async function readyz(gw: GatewayProcess): Promise<number> {
  return (await fetch(`http://${gw.admin}/readyz`)).status;
}

// ---------------------------------------------------------------- a partition

/**
 * A TCP proxy to the API server, for a gateway whose kubeconfig points at it (kubeconfigVia):
 * cut() severs every connection and refuses new ones (a network partition while the API
 * server stays up, so changes can be made meanwhile); heal() lets connections through again.
 */
export interface ApiProxy {
  readonly port: number;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startApiProxy(t: Teardown, targetPort: number): Promise<ApiProxy> {
  let open = true;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  };
  const server = net.createServer((client) => {
    track(client);
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const close = (): Promise<void> => closeServer(server, sockets);
  t.teardown(close);
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    heal() {
      open = true;
    },
    close,
  };
}

/** A copy of `kubeconfig` whose server is https://127.0.0.1:`port` (same CA and token). */
export function kubeconfigVia(kubeconfig: string, port: number, path: string): string {
  const doc = parse(readFileSync(kubeconfig, 'utf8')) as { clusters: Array<{ cluster: { server: string } }> };
  for (const c of doc.clusters) c.cluster.server = `https://127.0.0.1:${port}`;
  writeFileSync(path, stringify(doc), { mode: 0o600 });
  return path;
}
