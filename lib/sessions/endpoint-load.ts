// How many live sessions each endpoint holds on this gateway process, and the pinning policy
// built on it: a new session goes to the ready endpoint holding the fewest.
import type { Endpoint } from '../registry/types.ts';

export class EndpointLoad {
  readonly #counts = new Map<string, number>();

  count(endpointKey: string): number {
    return this.#counts.get(endpointKey) ?? 0;
  }

  acquire(endpointKey: string): void {
    this.#counts.set(endpointKey, this.count(endpointKey) + 1);
  }

  release(endpointKey: string): void {
    const n = this.count(endpointKey) - 1;
    if (n > 0) this.#counts.set(endpointKey, n);
    else this.#counts.delete(endpointKey);
  }

  /**
   * The endpoint with the fewest sessions that is under its limit (`limitOf(key)`; none:
   * unlimited); ties go to the earliest in the list. undefined when every endpoint is full.
   */
  pickFewest(endpoints: readonly Endpoint[], limitOf: ((endpointKey: string) => number) | undefined): Endpoint | undefined {
    let best: Endpoint | undefined;
    let bestCount = Infinity;
    for (const endpoint of endpoints) {
      const n = this.count(endpoint.key);
      if (n < bestCount && (limitOf === undefined || n < limitOf(endpoint.key))) {
        best = endpoint;
        bestCount = n;
      }
    }
    return best;
  }

  /** endpoint key -> sessions, for metrics and debugging. */
  snapshot(): ReadonlyMap<string, number> {
    return this.#counts;
  }
}
