// HPACK's dynamic table (RFC 7541 2.3.2, 4): newest entry first, sized by name + value + 32
// octets per entry, oldest entries evicted to stay within the maximum. A ring buffer, so adding
// and evicting move no entries.

/** What RFC 7541 4.1 adds to an entry's name and value lengths. */
export const ENTRY_OVERHEAD = 32;

const INITIAL_SLOTS = 16;
const NO_ENTRIES: string[] = [];

export class HeaderTable {
  /** Octets in use, as RFC 7541 4.1 counts them. */
  size = 0;
  maxSize: number;
  // Allocated on the first entry, so an idle connection's tables cost nothing; always a power
  // of two long, for the ring's mask.
  #names: string[] = NO_ENTRIES;
  #values: string[] = NO_ENTRIES;
  /** Ring position of the oldest entry, and how many there are. */
  #oldest = 0;
  #count = 0;

  constructor(maxSize: number) {
    this.maxSize = maxSize;
  }

  get length(): number {
    return this.#count;
  }

  /** Name of dynamic index `i` (1 = newest); the caller has checked 1 <= i <= length. */
  name(i: number): string {
    return this.#names[this.#slot(i)] as string;
  }

  value(i: number): string {
    return this.#values[this.#slot(i)] as string;
  }

  /**
   * Where the newest entry with this name and value is: its dynamic index; failing that, minus
   * the dynamic index of the newest entry with this name; 0 if neither. A scan, newest first:
   * a table holds a few dozen entries (4096 octets at 32 a piece at most 128), and a scan
   * allocates nothing, where maps by name and value cost a new connection a Map per name.
   */
  find(name: string, value: string): number {
    const names = this.#names;
    const values = this.#values;
    const mask = names.length - 1;
    let nameOnly = 0;
    for (let i = 1; i <= this.#count; i++) {
      const slot = (this.#oldest + this.#count - i) & mask;
      if (names[slot] !== name) continue;
      if (values[slot] === value) return i;
      if (nameOnly === 0) nameOnly = -i;
    }
    return nameOnly;
  }

  /** Adds a field; one larger than the whole table empties it and is not added (RFC 7541 4.4). */
  add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    this.#evictTo(this.maxSize - size);
    if (size > this.maxSize) return; // the eviction above emptied the table
    if (this.#count === this.#names.length) this.#grow();
    const slot = (this.#oldest + this.#count) & (this.#names.length - 1);
    this.#names[slot] = name;
    this.#values[slot] = value;
    this.#count++;
    this.size += size;
  }

  /** Drops every entry at once, without eviction order (the connection is gone). */
  clear(): void {
    this.#names = NO_ENTRIES;
    this.#values = NO_ENTRIES;
    this.#oldest = 0;
    this.#count = 0;
    this.size = 0;
  }

  /** A new maximum (a size update, or a SETTINGS change): evicts down to it. */
  setMaxSize(maxSize: number): void {
    this.maxSize = maxSize;
    this.#evictTo(maxSize);
  }

  #slot(i: number): number {
    return (this.#oldest + this.#count - i) & (this.#names.length - 1);
  }

  #evictTo(target: number): void {
    const mask = this.#names.length - 1;
    while (this.#count > 0 && this.size > Math.max(0, target)) {
      const slot = this.#oldest;
      const name = this.#names[slot] as string;
      const value = this.#values[slot] as string;
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
      this.#names[slot] = '';
      this.#values[slot] = '';
      this.#oldest = (slot + 1) & mask;
      this.#count--;
    }
  }

  #grow(): void {
    const n = this.#names.length;
    const names = new Array<string>(n === 0 ? INITIAL_SLOTS : n * 2);
    const values = new Array<string>(names.length);
    for (let i = 0; i < this.#count; i++) {
      names[i] = this.#names[(this.#oldest + i) & (n - 1)] as string;
      values[i] = this.#values[(this.#oldest + i) & (n - 1)] as string;
    }
    this.#names = names;
    this.#values = values;
    this.#oldest = 0;
  }
}
