// A map for long-lived collections whose keys come and go all the time (the gateway's
// connections, the sessions bound to an endpoint), kept in arrays with each key carrying its
// own position.
//
// Why not Map or Set: when their hash table grows or shrinks, V8 replaces it and leaves the old
// table holding its entries and a link to the new one. In a long-lived Map the old table is
// old-generation garbage, freed only by a full collection; until then every scavenge treats
// what it points to as alive. Under connection churn that kept nearly every closed connection
// (sockets, HTTP/2 state, HPACK tables) alive long enough to be promoted: ~8 KB a connection,
// scavenges twice as long (docs/performance.md). An array whose slot is emptied when a key
// leaves keeps nothing it no longer holds.

/** A key of at most one SlotMap: `slot` is its position there, -1 when in none. */
export interface Slotted {
  slot: number;
}

export class SlotMap<K extends Slotted, V> {
  readonly #keys: K[] = [];
  readonly #values: V[] = [];

  get size(): number {
    return this.#keys.length;
  }

  has(key: K): boolean {
    return key.slot >= 0 && this.#keys[key.slot] === key;
  }

  get(key: K): V | undefined {
    return this.has(key) ? this.#values[key.slot] : undefined;
  }

  set(key: K, value: V): void {
    if (this.has(key)) {
      this.#values[key.slot] = value;
      return;
    }
    if (key.slot >= 0) throw new Error('SlotMap: the key is in another SlotMap');
    key.slot = this.#keys.length;
    this.#keys.push(key);
    this.#values.push(value);
  }

  /** Removes `key` (the last entry takes its slot); false if it was not here. */
  delete(key: K): boolean {
    if (!this.has(key)) return false;
    const at = key.slot;
    const lastKey = this.#keys.pop() as K;
    const lastValue = this.#values.pop() as V;
    if (lastKey !== key) {
      this.#keys[at] = lastKey;
      this.#values[at] = lastValue;
      lastKey.slot = at;
    }
    key.slot = -1;
    return true;
  }

  /** The keys now, as a copy: entries may leave while the caller goes through them. */
  keys(): K[] {
    return this.#keys.slice();
  }

  /** The entries now, as a copy. */
  entries(): Array<[K, V]> {
    return this.#keys.map((key, i) => [key, this.#values[i] as V]);
  }

  /** Any one key (the first), or undefined when empty. */
  first(): K | undefined {
    return this.#keys[0];
  }
}
