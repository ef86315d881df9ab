// maxSessionsPerEndpoint with several gateway processes (replicas, workers): each knows only
// its own sessions, so each enforces a share of every endpoint's cap, and the shares of all
// processes add up to the cap exactly. An endpoint's remainder (cap mod processes) goes to
// processes picked by the endpoint's hash, so with cap 1 the endpoints are dealt out among
// the processes instead of all landing on the first.

/** Where this process stands among the gateway processes that share endpoint caps. */
export interface ReplicaRank {
  /** 0-based position of this process in the sorted membership. */
  readonly index: number;
  /** Processes sharing the caps, this one included (>= 1). */
  readonly count: number;
}

export const SOLE_REPLICA: ReplicaRank = Object.freeze({ index: 0, count: 1 });

/**
 * Sessions this process may hold on `endpointKey` under a cap of `cap` (0 = unlimited, so
 * Infinity). May be 0: the endpoint's slots are all other processes' shares.
 */
export function capShare(cap: number, endpointKey: string, rank: ReplicaRank): number {
  if (cap === 0) return Infinity;
  const { index, count } = rank;
  if (count <= 1) return cap;
  const base = Math.floor(cap / count);
  const extra = cap % count;
  if (extra === 0) return base;
  // The processes at offsets 0..extra-1 from the endpoint's starting point take one more.
  const offset = (index - (spreadHash(endpointKey) % count) + count) % count;
  return offset < extra ? base + 1 : base;
}

/**
 * 32-bit FNV-1a with murmur3's final mix: stable across processes and releases (every replica
 * must compute the same), and the low bits spread, since only `hash % count` is used.
 */
function spreadHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
