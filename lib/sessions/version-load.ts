// How many sessions each function version holds on this process: open (bound to an endpoint)
// and waiting (held for room). The autoscaling signal: KEDA's scaler sums these over replicas.

export interface VersionSessions {
  readonly functionId: string;
  readonly versionId: string;
  open: number;
  waiting: number;
}

export class VersionLoad {
  /** "functionId\0versionId" -> counts; an entry goes when both reach 0. */
  readonly #byVersion = new Map<string, VersionSessions>();
  readonly #listeners = new Set<(functionId: string, versionId: string) => void>();

  /** Moves a version's counts by the deltas given. */
  add(functionId: string, versionId: string, open: number, waiting: number): void {
    const key = functionId + '\0' + versionId;
    let entry = this.#byVersion.get(key);
    if (entry === undefined) this.#byVersion.set(key, (entry = { functionId, versionId, open: 0, waiting: 0 }));
    entry.open += open;
    entry.waiting += waiting;
    if (entry.open === 0 && entry.waiting === 0) this.#byVersion.delete(key);
    for (const listener of this.#listeners) listener(functionId, versionId);
  }

  get(functionId: string, versionId: string): Readonly<VersionSessions> | undefined {
    return this.#byVersion.get(functionId + '\0' + versionId);
  }

  /** Versions with at least one open or waiting session. */
  entries(): IterableIterator<Readonly<VersionSessions>> {
    return this.#byVersion.values();
  }

  /** Called after every change, with the version that changed; returns the unsubscribe. */
  onChange(listener: (functionId: string, versionId: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
