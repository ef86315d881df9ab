// One kind of Kubernetes object, kept current by a client-node informer (list + watch), made
// resilient: an informer that fails is replaced after a backoff by a fresh one whose first act
// is a full list, so what changed during an outage (deletions included) is caught up. Until
// then the last known objects stay in place and the collection reports itself stale.
import { makeInformer, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../telemetry/log.ts';

export interface CollectionOptions<T extends KubernetesObject> {
  /** For logs: "functions", "endpointslices", "secrets". */
  readonly name: string;
  readonly kubeConfig: KubeConfig;
  /** Watch path, e.g. /apis/discovery.k8s.io/v1/endpointslices */
  readonly path: string;
  readonly list: () => Promise<KubernetesListObject<T>>;
  readonly labelSelector?: string;
  /** Called (coalesced, on a later tick) after any change to the set of objects. */
  readonly onChange: () => void;
  readonly log: Logger;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

type Informer = ReturnType<typeof makeInformer<KubernetesObject>>;

export class WatchedCollection<T extends KubernetesObject> {
  readonly #opts: CollectionOptions<T>;
  /** uid (or namespace/name) -> object */
  #objects = new Map<string, T>();
  #informer: Informer | undefined;
  #generation = 0;
  #synced = false;
  #staleSince: number | undefined;
  #failures = 0;
  #restart: NodeJS.Timeout | undefined;
  #changeQueued = false;
  #stopped = false;
  #firstSync: { resolve: () => void; promise: Promise<void> };

  constructor(opts: CollectionOptions<T>) {
    this.#opts = opts;
    let resolve = (): void => {};
    const promise = new Promise<void>((r) => (resolve = r));
    this.#firstSync = { resolve, promise };
  }

  /** Starts watching; resolves once the first full list has arrived (retrying until it does). */
  start(): Promise<void> {
    this.#begin();
    return this.#firstSync.promise;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#restart) clearTimeout(this.#restart);
    void this.#informer?.stop();
    this.#informer = undefined;
  }

  objects(): IterableIterator<T> {
    return this.#objects.values();
  }

  /** When the view stopped being known current (performance.now() ms); undefined = current. */
  get staleSince(): number | undefined {
    return this.#staleSince;
  }

  #begin(): void {
    if (this.#stopped) return;
    const generation = ++this.#generation;
    const { kubeConfig, path, labelSelector } = this.#opts;
    const informer = makeInformer<KubernetesObject>(kubeConfig, path, () => this.#list(generation), labelSelector);
    const current = (): boolean => generation === this.#generation && !this.#stopped;
    const upsert = (obj: KubernetesObject): void => {
      if (current()) this.#set(obj as T);
    };
    informer.on('add', upsert);
    informer.on('update', upsert);
    informer.on('delete', (obj) => {
      if (current() && this.#objects.delete(keyOf(obj))) this.#changed();
    });
    informer.on('error', (err: unknown) => {
      if (current()) this.#failed(err);
    });
    this.#informer = informer;
    informer.start().catch((err: unknown) => {
      if (current()) this.#failed(err);
    });
  }

  /** The informer's list: a successful one replaces everything known (catching up deletions). */
  async #list(generation: number): Promise<KubernetesListObject<KubernetesObject>> {
    const result = await this.#opts.list();
    if (generation !== this.#generation || this.#stopped) return result;
    const next = new Map<string, T>();
    for (const item of result.items) next.set(keyOf(item), item);
    this.#objects = next;
    this.#failures = 0;
    if (this.#staleSince !== undefined) {
      this.#opts.log.info('kubernetes watch recovered', { resource: this.#opts.name, objects: next.size });
      this.#staleSince = undefined;
    }
    if (!this.#synced) {
      this.#synced = true;
      this.#firstSync.resolve();
    }
    this.#changed();
    return result;
  }

  #set(obj: T): void {
    this.#objects.set(keyOf(obj), obj);
    this.#changed();
  }

  #failed(err: unknown): void {
    if (this.#stopped || this.#restart) return;
    const first = this.#staleSince === undefined;
    this.#staleSince ??= performance.now();
    const { initialMs, maxMs } = this.#opts.backoff ?? { initialMs: 250, maxMs: 10_000 };
    const delay = Math.min(maxMs, initialMs * 2 ** this.#failures++);
    const fields = { resource: this.#opts.name, error: describe(err), retryInMs: delay };
    // One warning per outage, then debug: an unreachable API server must not flood the log.
    if (first) this.#opts.log.warn('kubernetes watch failed; routing on the last known state', fields);
    else this.#opts.log.debug('kubernetes watch still failing', fields);
    void this.#informer?.stop();
    this.#informer = undefined;
    this.#restart = setTimeout(() => {
      this.#restart = undefined;
      this.#begin();
    }, delay);
    this.#restart.unref();
  }

  #changed(): void {
    if (this.#changeQueued) return;
    this.#changeQueued = true;
    setImmediate(() => {
      this.#changeQueued = false;
      if (!this.#stopped) this.#opts.onChange();
    });
  }
}

function keyOf(obj: KubernetesObject): string {
  const { metadata } = obj;
  return metadata?.uid ?? `${metadata?.namespace ?? ''}/${metadata?.name ?? ''}`;
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null) {
    const { code, statusCode, message } = err as { code?: unknown; statusCode?: unknown; message?: unknown };
    return String(message ?? statusCode ?? code ?? JSON.stringify(err));
  }
  return String(err);
}
