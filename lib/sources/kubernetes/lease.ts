// Leader election on a coordination.k8s.io Lease, so that of several gateway replicas only
// one writes Function status. Optimistic concurrency (resourceVersion) settles races: a
// replica leads only after its create or update of the Lease succeeded.
import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../../telemetry/log.ts';

export interface LeaseOptions {
  readonly api: CoordinationV1Api;
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly durationSec: number;
  readonly renewMs: number;
  readonly log: Logger;
  /** Called when this replica starts or stops leading. */
  readonly onChange: (leading: boolean) => void;
}

export class LeaseElector {
  readonly #opts: LeaseOptions;
  #leading = false;
  #lastRenew = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: LeaseOptions) {
    this.#opts = opts;
  }

  get leading(): boolean {
    return this.#leading;
  }

  start(): void {
    void this.#tick();
  }

  /** Stops renewing; a leader gives the Lease up so another replica need not wait it out. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (!this.#leading) return;
    this.#set(false);
    const { api, name, namespace, identity } = this.#opts;
    try {
      const lease = await api.readNamespacedLease({ name, namespace });
      if (lease.spec?.holderIdentity === identity) {
        lease.spec.holderIdentity = undefined;
        lease.spec.renewTime = undefined;
        await api.replaceNamespacedLease({ name, namespace, body: lease });
      }
    } catch {
      // Best effort: the Lease expires by itself.
    }
  }

  async #tick(): Promise<void> {
    try {
      this.#set(await this.#tryAcquire());
    } catch (err) {
      // API server unreachable: a leader keeps leading until its Lease would have expired.
      if (this.#leading && performance.now() - this.#lastRenew > this.#opts.durationSec * 1000) this.#set(false);
      this.#opts.log.debug('lease renewal failed', { lease: this.#opts.name, error: (err as Error).message });
    }
    if (!this.#stopped) {
      this.#timer = setTimeout(() => void this.#tick(), this.#opts.renewMs);
      this.#timer.unref();
    }
  }

  async #tryAcquire(): Promise<boolean> {
    const { api, name, namespace, identity, durationSec } = this.#opts;
    const now = new V1MicroTime();
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      await api.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: durationSec, acquireTime: now, renewTime: now, leaseTransitions: 0 },
        },
      });
      return this.#renewed();
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity;
    const renewedAt = spec.renewTime ? new Date(spec.renewTime).getTime() : 0;
    const expired = !holder || renewedAt + (spec.leaseDurationSeconds ?? durationSec) * 1000 < Date.now();
    if (holder !== identity && !expired) return false;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: durationSec,
      renewTime: now,
      ...(holder === identity ? {} : { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
    };
    try {
      await api.replaceNamespacedLease({ name, namespace, body: lease });
    } catch (err) {
      if (statusOf(err) === 409) return false; // another replica won this round
      throw err;
    }
    return this.#renewed();
  }

  #renewed(): boolean {
    this.#lastRenew = performance.now();
    return true;
  }

  #set(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#opts.log.info(leading ? 'status writer lease acquired' : 'status writer lease lost', {
      lease: `${this.#opts.namespace}/${this.#opts.name}`,
      identity: this.#opts.identity,
    });
    this.#opts.onChange(leading);
  }
}

/** HTTP status of a client-node ApiException, if that is what `err` is. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}
