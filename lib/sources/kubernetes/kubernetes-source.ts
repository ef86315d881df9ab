// `--kubernetes`: Functions, EndpointSlices and API-key Secrets watched through the API
// server fill the registry; the replica holding the Lease writes Function status. All I/O with
// the cluster is here; the data plane only ever reads the registry.
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Secret,
} from '@kubernetes/client-node';
import { hostname } from 'node:os';
import { ManifestError, parseFunctionManifest } from '../../registry/function-manifest.ts';
import type { Registry, ServiceEndpointLookup } from '../../registry/registry.ts';
import type { FunctionSpec } from '../../registry/types.ts';
import type { ReplicaRank } from '../../sessions/cap-share.ts';
import type { Logger } from '../../telemetry/log.ts';
import { KEY_SECRET_SELECTOR } from '../../registry/api-key-format.ts';
import { apiKeysFromSecrets } from './api-key-secrets.ts';
import { endpointLookup } from './endpoint-index.ts';
import { desiredStatus, sameStatus, type FunctionCondition, type FunctionState } from './function-status.ts';
import { LeaseElector, statusOf } from './lease.ts';
import { ReplicaMembership, type SessionCountExchange } from './replica-membership.ts';
import { ScaledObjects, type ScalableFunction } from './scaled-objects.ts';
import { WatchedCollection } from './watched-collection.ts';

const GROUP = 'fngate.dev';
const VERSION = 'v1alpha1';
const PLURAL = 'functions';
const LEASE_NAME = 'fngate-status-writer';

export interface KubernetesSourceOptions {
  readonly registry: Registry;
  /** Watch only this namespace (undefined: all namespaces). */
  readonly namespace: string | undefined;
  readonly log: Logger;
  /** Where the status-writer Lease lives (POD_NAMESPACE in a cluster). */
  readonly leaseNamespace: string;
  /** This replica's Lease identity (POD_NAME in a cluster). */
  readonly identity: string;
  /** Defaults to KUBECONFIG / ~/.kube/config / in-cluster service account. */
  readonly kubeConfig?: KubeConfig;
  /** Lease timing (tests shorten it). */
  readonly leaseDurationSec?: number;
  readonly leaseRenewMs?: number;
  /** Where this process stands among the gateway processes sharing endpoint session caps. */
  readonly onRank: (rank: ReplicaRank) => void;
  /** This process's session counts to publish, and where the other replicas' go. */
  readonly sessionCounts?: SessionCountExchange | undefined;
  /** Where KEDA reaches this gateway's external scaler (--scaler-address); written into ScaledObjects. */
  readonly scalerAddress?: string | undefined;
}

interface FunctionObject extends KubernetesObject {
  spec?: unknown;
  status?: { conditions?: FunctionCondition[] } & Record<string, unknown>;
}

export class KubernetesSource {
  readonly #opts: KubernetesSourceOptions;
  readonly #custom: CustomObjectsApi;
  readonly #functions: WatchedCollection<FunctionObject>;
  readonly #slices: WatchedCollection<V1EndpointSlice>;
  readonly #secrets: WatchedCollection<V1Secret>;
  readonly #lease: LeaseElector;
  readonly #members: ReplicaMembership;
  readonly #scaledObjects: ScaledObjects;
  #lookup: ServiceEndpointLookup = () => [];
  /** ns/name -> what routing made of the object, for status. */
  #states = new Map<string, { object: FunctionObject; state: FunctionState }>();
  #writing = false;
  #writeAgain = false;
  readonly #fieldManager: string;

  constructor(opts: KubernetesSourceOptions) {
    this.#opts = opts;
    this.#fieldManager = `fngate/${opts.identity}`.slice(0, 128);
    const kc = opts.kubeConfig ?? defaultKubeConfig();
    const ns = opts.namespace;
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    const { log } = opts;
    const scope = (path: string): string => (ns === undefined ? path : path.replace(/\/([a-z]+)$/, `/namespaces/${ns}/$1`));

    this.#functions = new WatchedCollection<FunctionObject>({
      name: 'functions',
      kubeConfig: kc,
      path: scope(`/apis/${GROUP}/${VERSION}/${PLURAL}`),
      list: () =>
        (ns === undefined
          ? this.#custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })
          : this.#custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })) as Promise<
          KubernetesListObject<FunctionObject>
        >,
      onChange: () => this.#rebuildFunctions(),
      log,
    });
    this.#slices = new WatchedCollection<V1EndpointSlice>({
      name: 'endpointslices',
      kubeConfig: kc,
      path: scope('/apis/discovery.k8s.io/v1/endpointslices'),
      list: () => (ns === undefined ? discovery.listEndpointSliceForAllNamespaces() : discovery.listNamespacedEndpointSlice({ namespace: ns })),
      onChange: () => {
        this.#lookup = endpointLookup(this.#slices.objects());
        opts.registry.setServiceEndpoints(this.#lookup);
        this.#writeStatus();
      },
      log,
    });
    this.#secrets = new WatchedCollection<V1Secret>({
      name: 'secrets',
      kubeConfig: kc,
      path: scope('/api/v1/secrets'),
      labelSelector: KEY_SECRET_SELECTOR,
      list: () =>
        ns === undefined
          ? core.listSecretForAllNamespaces({ labelSelector: KEY_SECRET_SELECTOR })
          : core.listNamespacedSecret({ namespace: ns, labelSelector: KEY_SECRET_SELECTOR }),
      onChange: () => opts.registry.replaceApiKeys(apiKeysFromSecrets(this.#secrets.objects(), log), 'kubernetes'),
      log,
    });
    const coordination = kc.makeApiClient(CoordinationV1Api);
    this.#members = new ReplicaMembership({
      api: coordination,
      kubeConfig: kc,
      namespace: opts.leaseNamespace,
      identity: opts.identity,
      durationSec: opts.leaseDurationSec ?? 15,
      renewMs: opts.leaseRenewMs ?? 5000,
      log,
      onChange: opts.onRank,
      sessions: opts.sessionCounts,
    });
    this.#lease = new LeaseElector({
      api: coordination,
      namespace: opts.leaseNamespace,
      name: LEASE_NAME,
      identity: opts.identity,
      durationSec: opts.leaseDurationSec ?? 15,
      renewMs: opts.leaseRenewMs ?? 5000,
      log,
      onChange: (leading) => {
        // A new leader starts from what is in the cluster, not from what it applied before.
        this.#scaledObjects.reset();
        if (leading) this.#writeStatus();
      },
    });
    this.#scaledObjects = new ScaledObjects({
      api: this.#custom,
      scalerAddress: opts.scalerAddress,
      fieldManager: this.#fieldManager,
      namespace: ns,
      log,
      recheck: () => this.#writeStatus(),
    });
  }

  /** Starts watching; resolves when every collection (and the other gateway processes) has been listed once. */
  async start(): Promise<void> {
    await Promise.all([this.#functions.start(), this.#slices.start(), this.#secrets.start(), this.#members.start()]);
    this.#lease.start();
    this.#opts.log.info('kubernetes source synced', {
      namespace: this.#opts.namespace ?? '(all)',
      functions: this.#states.size,
    });
  }

  /** Seconds the view has been stale (a watch failing); 0 when current. */
  staleSeconds(): number {
    let since: number | undefined;
    for (const c of [this.#functions, this.#slices, this.#secrets]) {
      const s = c.staleSince;
      if (s !== undefined && (since === undefined || s < since)) since = s;
    }
    return since === undefined ? 0 : (performance.now() - since) / 1000;
  }

  async stop(): Promise<void> {
    this.#functions.stop();
    this.#slices.stop();
    this.#secrets.stop();
    this.#scaledObjects.stop();
    await Promise.all([this.#lease.stop(), this.#members.stop()]);
  }

  #rebuildFunctions(): void {
    const { registry, log } = this.#opts;
    const specs: FunctionSpec[] = [];
    const parsed = new Map<string, { object: FunctionObject; spec?: FunctionSpec; message?: string }>();
    for (const object of this.#functions.objects()) {
      const key = `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
      try {
        const spec = parseFunctionManifest(object, key);
        specs.push(spec);
        parsed.set(key, { object, spec });
      } catch (err) {
        // The CRD's schema should have refused it; an older CRD may not have.
        const message = err instanceof ManifestError ? err.message : String(err);
        if (this.#states.get(key)?.state.kind !== 'invalid') log.warn('invalid Function refused', { function: key, error: message });
        parsed.set(key, { object, message });
      }
    }
    registry.replaceFunctions(specs);
    const conflicts = new Map(registry.conflicts().map((c) => [c.functionId, c.origins]));
    const states = new Map<string, { object: FunctionObject; state: FunctionState }>();
    for (const [key, { object, spec, message }] of parsed) {
      let state: FunctionState;
      if (!spec) state = { kind: 'invalid', message: message ?? 'invalid' };
      else {
        const claims = conflicts.get(spec.functionId);
        state = claims ? { kind: 'conflict', spec, others: claims.filter((o) => o !== key) } : { kind: 'valid', spec };
      }
      states.set(key, { object, state });
    }
    this.#states = states;
    this.#writeStatus();
  }

  /** Leader only; one pass at a time, and a pass requested meanwhile runs after it. */
  #writeStatus(): void {
    if (!this.#lease.leading) return;
    if (this.#writing) {
      this.#writeAgain = true;
      return;
    }
    this.#writing = true;
    void this.#writePass().finally(() => {
      this.#writing = false;
      if (this.#writeAgain) {
        this.#writeAgain = false;
        this.#writeStatus();
      }
    });
  }

  async #writePass(): Promise<void> {
    const scalable: ScalableFunction[] = [];
    for (const { object, state } of this.#states.values()) if (state.kind === 'valid') scalable.push({ object, spec: state.spec });
    const scaling = await this.#scaledObjects.sync(scalable);
    for (const [key, { object, state }] of this.#states) {
      if (!this.#lease.leading) return;
      const status = desiredStatus(state, object.metadata?.generation, this.#lookup, object.status?.conditions, scaling.get(key));
      if (sameStatus(status, object.status)) continue;
      const namespace = object.metadata?.namespace ?? 'default';
      const name = object.metadata?.name ?? '';
      try {
        await this.#custom.patchNamespacedCustomObjectStatus(
          // The field manager names the replica, so managedFields show who wrote the status.
          { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { status }, fieldManager: this.#fieldManager },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
      } catch (err) {
        // 404: deleted meanwhile. Anything else: the next change or resync retries.
        if (statusOf(err) !== 404) this.#opts.log.warn('writing Function status failed', { function: key, error: (err as Error).message });
      }
    }
  }
}

function defaultKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}

/**
 * This process's Lease identity: POD_NAME in a cluster (else host and pid), with the worker
 * number under --workers, since every worker is a gateway process of its own.
 */
export function defaultIdentity(worker: number | undefined): string {
  const pod = process.env['POD_NAME'] ?? `${hostname()}-${process.pid}`;
  return worker === undefined ? pod : `${pod}-w${worker}`;
}
