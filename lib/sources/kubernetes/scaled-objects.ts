// One KEDA ScaledObject per Function version that names its workload (scaleTargetRef), kept by
// the replica that writes Function status: pointed at the gateway's external scaler
// (--scaler-address), owned by the Function so it goes with it, removed when the version no
// longer asks for it. What happened goes into the Function's Scaling condition.
import { PatchStrategy, setHeaderOptions, type CustomObjectsApi, type KubernetesObject } from '@kubernetes/client-node';
import type { FunctionSpec } from '../../registry/types.ts';
import type { Logger } from '../../telemetry/log.ts';
import { statusOf } from './lease.ts';

const KEDA_GROUP = 'keda.sh';
const KEDA_VERSION = 'v1alpha1';
const PLURAL = 'scaledobjects';
const MANAGED_LABEL = 'app.kubernetes.io/managed-by';
const MANAGED_BY = 'fngate';
const FUNCTION_LABEL = 'fngate.dev/function';
const SELECTOR = `${MANAGED_LABEL}=${MANAGED_BY}`;
/** While KEDA is missing (or the API refuses), look again this often: KEDA may be installed later. */
export const RECHECK_MS = 10_000;

/** The Scaling condition of a Function (absent when no version names a workload). */
export interface ScalingState {
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

/** A Function as the status writer knows it: its object (uid, namespace, name) and its parsed spec. */
export interface ScalableFunction {
  readonly object: KubernetesObject;
  readonly spec: FunctionSpec;
}

export interface ScaledObjectsOptions {
  readonly api: CustomObjectsApi;
  /** Where KEDA reaches the scaler; undefined: the gateway serves none, nothing is written. */
  readonly scalerAddress: string | undefined;
  readonly fieldManager: string;
  /** Watch only this namespace (undefined: all). */
  readonly namespace: string | undefined;
  readonly log: Logger;
  /** Ask for another pass later (KEDA missing, a write refused). */
  readonly recheck: () => void;
}

interface ScaledObject extends KubernetesObject {
  spec: Record<string, unknown>;
}

export class ScaledObjects {
  readonly #opts: ScaledObjectsOptions;
  /** "ns/name" -> the JSON last applied; a pass applies only what changed. */
  readonly #applied = new Map<string, string>();
  /** Whether the managed objects left by an earlier leader have been listed since we lead. */
  #listed = false;
  #recheck: NodeJS.Timeout | undefined;

  constructor(opts: ScaledObjectsOptions) {
    this.#opts = opts;
  }

  /** Leadership changed hands: what was applied before may have been changed by another replica. */
  reset(): void {
    this.#applied.clear();
    this.#listed = false;
  }

  stop(): void {
    clearTimeout(this.#recheck);
  }

  /** Applies the desired ScaledObjects, deletes stray ones; the Scaling condition per "ns/name" of Function. */
  async sync(functions: readonly ScalableFunction[]): Promise<Map<string, ScalingState>> {
    const out = new Map<string, ScalingState>();
    const wanting = functions.filter((f) => f.spec.versions.some((v) => v.scaleTarget !== undefined));
    const { scalerAddress, log } = this.#opts;
    if (scalerAddress === undefined) {
      const state: ScalingState = {
        status: 'False',
        reason: 'ScalerNotServed',
        message: 'the gateway runs without --scaler-listen and --scaler-address (chart: scaler.enabled), so no ScaledObject is kept',
      };
      for (const f of wanting) out.set(keyOf(f.object), state);
      return out;
    }
    const desired = new Map<string, ScaledObject>();
    for (const f of wanting) for (const object of scaledObjectsFor(f, scalerAddress)) desired.set(keyOf(object), object);
    try {
      if (!this.#listed) await this.#adoptExisting();
      for (const [key, object] of desired) {
        const json = JSON.stringify(object);
        if (this.#applied.get(key) === json) continue;
        await this.#apply(object);
        this.#applied.set(key, json);
      }
      for (const key of [...this.#applied.keys()]) {
        if (desired.has(key)) continue;
        const [namespace = '', name = ''] = key.split('/');
        await this.#opts.api.deleteNamespacedCustomObject({ group: KEDA_GROUP, version: KEDA_VERSION, namespace, plural: PLURAL, name }).catch((err: unknown) => {
          if (statusOf(err) !== 404) throw err;
        });
        this.#applied.delete(key);
      }
    } catch (err) {
      const code = statusOf(err);
      const state: ScalingState =
        code === 404
          ? { status: 'False', reason: 'KedaNotInstalled', message: `KEDA's ScaledObject CRD (${PLURAL}.${KEDA_GROUP}) is not installed; install KEDA and the gateway wires scaling up` }
          : code === 403
            ? { status: 'False', reason: 'Forbidden', message: `the gateway may not manage ${PLURAL}.${KEDA_GROUP} (chart: scaler.enabled grants it)` }
            : { status: 'False', reason: 'ApplyFailed', message: `writing ScaledObjects failed: ${(err as Error).message}` };
      log.warn('keeping KEDA ScaledObjects failed; trying again later', { reason: state.reason, error: (err as Error).message });
      for (const f of wanting) out.set(keyOf(f.object), state);
      this.#scheduleRecheck();
      return out;
    }
    for (const f of wanting) {
      const names = f.spec.versions.filter((v) => v.scaleTarget).map((v) => `${v.versionId} -> ${scaledObjectName(f.spec.name, v.versionId)}`);
      out.set(keyOf(f.object), { status: 'True', reason: 'ScaledObjectsReady', message: `KEDA ScaledObjects kept for version(s) ${names.join(', ')}` });
    }
    return out;
  }

  /** The objects a previous leader left: remembered as applied, so strays get deleted. */
  async #adoptExisting(): Promise<void> {
    const { api, namespace } = this.#opts;
    const list = (await (namespace === undefined
      ? api.listClusterCustomObject({ group: KEDA_GROUP, version: KEDA_VERSION, plural: PLURAL, labelSelector: SELECTOR })
      : api.listNamespacedCustomObject({ group: KEDA_GROUP, version: KEDA_VERSION, namespace, plural: PLURAL, labelSelector: SELECTOR }))) as { items?: KubernetesObject[] };
    for (const item of list.items ?? []) this.#applied.set(keyOf(item), '(found)');
    this.#listed = true;
  }

  #apply(object: ScaledObject): Promise<unknown> {
    const namespace = object.metadata?.namespace ?? 'default';
    const name = object.metadata?.name ?? '';
    // Server-side apply: the gateway owns the fields it sets, and only those.
    return this.#opts.api.patchNamespacedCustomObject(
      { group: KEDA_GROUP, version: KEDA_VERSION, namespace, plural: PLURAL, name, body: object, fieldManager: this.#opts.fieldManager, force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }

  #scheduleRecheck(): void {
    if (this.#recheck !== undefined) return;
    this.#recheck = setTimeout(() => {
      this.#recheck = undefined;
      this.#opts.recheck();
    }, RECHECK_MS);
    this.#recheck.unref();
  }
}

function keyOf(object: KubernetesObject): string {
  return `${object.metadata?.namespace ?? 'default'}/${object.metadata?.name ?? ''}`;
}

/** `<function>-<version>`, lower-cased to a DNS subdomain and cut to its length limit. */
export function scaledObjectName(functionName: string, versionId: string): string {
  const version = versionId.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '') || 'v';
  return `${functionName}-${version}`.slice(0, 253).replace(/[^a-z0-9]+$/, '');
}

/** The ScaledObjects one Function wants: one per version with a scaleTargetRef. */
export function scaledObjectsFor(f: ScalableFunction, scalerAddress: string): ScaledObject[] {
  const { spec, object } = f;
  const out: ScaledObject[] = [];
  for (const version of spec.versions) {
    const target = version.scaleTarget;
    if (target === undefined) continue;
    out.push({
      apiVersion: `${KEDA_GROUP}/${KEDA_VERSION}`,
      kind: 'ScaledObject',
      metadata: {
        name: scaledObjectName(spec.name, version.versionId),
        namespace: spec.namespace,
        labels: { [MANAGED_LABEL]: MANAGED_BY, [FUNCTION_LABEL]: spec.name },
        ownerReferences: [
          { apiVersion: 'fngate.dev/v1alpha1', kind: 'Function', name: spec.name, uid: object.metadata?.uid ?? '', controller: true, blockOwnerDeletion: false },
        ],
      },
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: target.kind, name: target.name },
        minReplicaCount: target.minReplicas,
        maxReplicaCount: target.maxReplicas,
        // external-push: KEDA holds StreamIsActive open, so a first waiting session activates
        // the Deployment at once instead of at KEDA's next poll.
        triggers: [
          {
            type: 'external-push',
            metadata: { scalerAddress, functionId: spec.functionId, versionId: version.versionId },
          },
        ],
      },
    });
  }
  return out;
}
