// Which gateway processes share the endpoints' session caps: each announces itself with a
// Lease of its own (label fngate.dev/replica), renewed every few seconds, and watches the
// others'. Live members, sorted by identity, give this process its rank (index, count),
// from which the sessions layer takes its share of every maxSessionsPerEndpoint.
//
// The same Lease carries the process's session counts per function version (annotation
// fngate.dev/sessions), written with every renewal and, when they change, within a moment, so
// each replica's KEDA scaler can answer with the sum over all of them.
import { V1MicroTime, type CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { ReplicaRank } from '../../sessions/cap-share.ts';
import type { Logger } from '../../telemetry/log.ts';
import { statusOf } from './lease.ts';
import { WatchedCollection } from './watched-collection.ts';

const REPLICA_LABEL = 'fngate.dev/replica';
const SELECTOR = `${REPLICA_LABEL}=true`;
export const SESSIONS_ANNOTATION = 'fngate.dev/sessions';
/** Changed counts are written this long after the first change: a burst becomes one write. */
const PUBLISH_DELAY_MS = 100;

/** "functionId/versionId" -> [open, waiting] sessions. */
export type VersionCounts = ReadonlyMap<string, readonly [number, number]>;

/** What this process publishes of its sessions, and where the others' counts go. */
export interface SessionCountExchange {
  own(): VersionCounts;
  onOwnChange(listener: () => void): () => void;
  /** The counts of every other live process, by identity. */
  setPeers(peers: ReadonlyMap<string, VersionCounts>): void;
}

export interface MembershipOptions {
  readonly api: CoordinationV1Api;
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  /** This process (POD_NAME, with the worker number under --workers). */
  readonly identity: string;
  readonly durationSec: number;
  readonly renewMs: number;
  readonly log: Logger;
  readonly onChange: (rank: ReplicaRank) => void;
  /** Session counts to publish and to receive; none: counts are not exchanged. */
  readonly sessions?: SessionCountExchange | undefined;
}

export class ReplicaMembership {
  readonly #opts: MembershipOptions;
  readonly #name: string;
  readonly #leases: WatchedCollection<V1Lease>;
  #rank: ReplicaRank | undefined;
  /** This process's Lease as last written (undefined: read it before the next write). */
  #own: V1Lease | undefined;
  /** Whether our own last renewal succeeded: without it, others' expiry says nothing. */
  #renewed = false;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Writes of this process's Lease, one after another (renewals and count changes). */
  #writes: Promise<void> = Promise.resolve();
  #publishTimer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  /** The peers' counts were last seen while our own renewal failed: say so once. */
  #staleLogged = false;

  constructor(opts: MembershipOptions) {
    this.#opts = opts;
    this.#name = leaseName(opts.identity);
    const { api, namespace } = opts;
    this.#leases = new WatchedCollection<V1Lease>({
      name: 'replica leases',
      kubeConfig: opts.kubeConfig,
      path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
      labelSelector: SELECTOR,
      list: () => api.listNamespacedLease({ namespace, labelSelector: SELECTOR }),
      onChange: () => this.#recompute(),
      log: opts.log,
    });
  }

  /** Announces this process and resolves once the other members have been listed. */
  async start(): Promise<void> {
    await this.#renew();
    await this.#leases.start();
    this.#recompute();
    this.#schedule();
    this.#unsubscribe = this.#opts.sessions?.onOwnChange(() => this.#countsChanged());
  }

  #countsChanged(): void {
    if (this.#stopped || this.#publishTimer !== undefined) return;
    this.#publishTimer = setTimeout(() => {
      this.#publishTimer = undefined;
      void this.#queueRenew();
    }, PUBLISH_DELAY_MS);
  }

  /** Renews (and publishes the counts) after any write in flight. */
  #queueRenew(): Promise<void> {
    this.#writes = this.#writes.then(() => (this.#stopped ? undefined : this.#renew()));
    return this.#writes;
  }

  /** Leaves: the Lease is deleted, so the others take up this process's shares at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    clearTimeout(this.#publishTimer);
    this.#unsubscribe?.();
    this.#leases.stop();
    try {
      await this.#opts.api.deleteNamespacedLease({ name: this.#name, namespace: this.#opts.namespace });
    } catch {
      // Best effort: it expires by itself.
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.#queueRenew().then(() => {
        this.#recompute();
        this.#schedule();
      });
    }, this.#opts.renewMs);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    try {
      // Nobody else writes this Lease: after the first read, each renewal is one replace of
      // the object the last write returned. A conflict or a deletion clears it, so the next
      // renewal reads again.
      this.#own = await this.#write(this.#own ?? (await this.#read()));
      this.#renewed = true;
    } catch (err) {
      // API server unreachable: keep the membership last seen rather than count others out.
      this.#own = undefined;
      this.#renewed = false;
      this.#opts.log.debug('replica lease renewal failed', { lease: this.#name, error: (err as Error).message });
    }
  }

  async #read(): Promise<V1Lease | undefined> {
    try {
      return await this.#opts.api.readNamespacedLease({ name: this.#name, namespace: this.#opts.namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  /** Creates this process's Lease, or renews `lease`; resolves with the object as written. */
  #write(lease: V1Lease | undefined): Promise<V1Lease> {
    const { api, namespace, identity, durationSec } = this.#opts;
    const name = this.#name;
    const spec = { holderIdentity: identity, leaseDurationSeconds: durationSec, renewTime: new V1MicroTime() };
    const counts = this.#opts.sessions?.own();
    const annotations = counts === undefined ? undefined : { [SESSIONS_ANNOTATION]: JSON.stringify(Object.fromEntries(counts)) };
    if (lease === undefined) {
      return api.createNamespacedLease({ namespace, body: { metadata: { name, labels: { [REPLICA_LABEL]: 'true' }, annotations }, spec } });
    }
    lease.spec = { ...lease.spec, ...spec };
    if (annotations) lease.metadata = { ...lease.metadata, annotations: { ...lease.metadata?.annotations, ...annotations } };
    return api.replaceNamespacedLease({ name, namespace, body: lease });
  }

  #recompute(): void {
    if (!this.#renewed && this.#rank !== undefined) {
      // Cut off from the API server: the others' counts are the last seen; they stand until it answers.
      if (!this.#staleLogged) this.#opts.log.warn('replica lease renewal failing: the other replicas\' session counts may be stale');
      this.#staleLogged = true;
      return;
    }
    this.#staleLogged = false;
    const now = Date.now();
    const members = new Set<string>([this.#opts.identity]);
    const peerCounts = new Map<string, VersionCounts>();
    for (const lease of this.#leases.objects()) {
      const holder = lease.spec?.holderIdentity;
      const renewed = lease.spec?.renewTime;
      const duration = lease.spec?.leaseDurationSeconds;
      if (holder === undefined || renewed === undefined || duration === undefined) continue;
      if (new Date(renewed).getTime() + duration * 1000 < now) continue;
      members.add(holder);
      if (holder !== this.#opts.identity) peerCounts.set(holder, parseCounts(lease.metadata?.annotations?.[SESSIONS_ANNOTATION]));
    }
    this.#opts.sessions?.setPeers(peerCounts);
    const sorted = [...members].sort();
    const rank = { index: sorted.indexOf(this.#opts.identity), count: sorted.length };
    if (rank.index === this.#rank?.index && rank.count === this.#rank.count) return;
    this.#rank = rank;
    this.#opts.log.info('gateway processes sharing endpoint session caps', { ...rank, members: sorted.length <= 20 ? sorted : undefined });
    this.#opts.onChange(rank);
  }
}

/** A peer's published counts; anything malformed counts as nothing (never a failure). */
function parseCounts(text: string | undefined): VersionCounts {
  const out = new Map<string, readonly [number, number]>();
  if (text === undefined) return out;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) return out;
    for (const [key, value] of Object.entries(parsed)) {
      if (Array.isArray(value) && value.length === 2 && value.every((n) => Number.isSafeInteger(n) && n >= 0)) out.set(key, [value[0], value[1]]);
    }
  } catch {
    // A hand-edited or foreign annotation: ignored.
  }
  return out;
}

/** A Lease name (DNS subdomain) for an identity. */
function leaseName(identity: string): string {
  const safe = identity.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return `fngate-replica-${safe}`.slice(0, 253);
}
