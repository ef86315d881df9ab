// Open and waiting sessions per function version over every gateway replica: this process's
// own counts, live, plus what the other replicas last published (Kubernetes: their replica
// Leases). What KEDA's scaler answers with, whichever replica it asks.
import type { VersionLoad } from '../sessions/version-load.ts';

export interface SessionCount {
  readonly open: number;
  readonly waiting: number;
}

/** Another replica's counts: "functionId/versionId" -> [open, waiting]. */
export type PeerCounts = ReadonlyMap<string, readonly [number, number]>;

const NONE: SessionCount = Object.freeze({ open: 0, waiting: 0 });

export function countKey(functionId: string, versionId: string): string {
  // Function and version ids are A-Za-z0-9._- only, so '/' cannot occur in either.
  return `${functionId}/${versionId}`;
}

export class SessionTotals {
  readonly #own: VersionLoad;
  /** peer identity -> its counts */
  #peers = new Map<string, PeerCounts>();
  readonly #listeners = new Set<(key: string) => void>();

  constructor(own: VersionLoad) {
    this.#own = own;
    own.onChange((functionId, versionId) => this.#changed(countKey(functionId, versionId)));
  }

  /** Sessions of a version over all replicas. */
  of(functionId: string, versionId: string): SessionCount {
    const own = this.#own.get(functionId, versionId);
    const key = countKey(functionId, versionId);
    let open = own?.open ?? 0;
    let waiting = own?.waiting ?? 0;
    for (const counts of this.#peers.values()) {
      const c = counts.get(key);
      if (c !== undefined) {
        open += c[0];
        waiting += c[1];
      }
    }
    return open === 0 && waiting === 0 ? NONE : { open, waiting };
  }

  /** Called after every change of this process's own counts. */
  onOwnChange(listener: () => void): () => void {
    return this.#own.onChange(listener);
  }

  /** This process's counts, as it publishes them for the others. */
  own(): PeerCounts {
    const out = new Map<string, readonly [number, number]>();
    for (const v of this.#own.entries()) out.set(countKey(v.functionId, v.versionId), [v.open, v.waiting]);
    return out;
  }

  /** What the other live replicas published now (a replica gone or expired is left out). */
  setPeers(peers: ReadonlyMap<string, PeerCounts>): void {
    const before = this.#peers;
    this.#peers = new Map(peers);
    const keys = new Set<string>();
    for (const counts of [...before.values(), ...peers.values()]) for (const key of counts.keys()) keys.add(key);
    for (const key of keys) {
      let changed = false;
      for (const id of new Set([...before.keys(), ...peers.keys()])) {
        const a = before.get(id)?.get(key);
        const b = peers.get(id)?.get(key);
        if (a?.[0] !== b?.[0] || a?.[1] !== b?.[1]) changed = true;
      }
      if (changed) this.#changed(key);
    }
  }

  /** Calls `listener` with "functionId/versionId" whenever that version's total may have changed; returns the unsubscribe. */
  onChange(listener: (key: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(key: string): void {
    for (const listener of this.#listeners) listener(key);
  }
}
