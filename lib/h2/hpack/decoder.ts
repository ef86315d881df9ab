// HPACK decoding (RFC 7541 3, 5, 6): one header block at a time, straight from the Buffer it
// arrived in, into a flat [name, value, ...] list of latin1 strings (every octet round-trips).
import { ENTRY_OVERHEAD, HeaderTable } from './header-table.ts';
import { huffmanDecode } from './huffman.ts';
import { STATIC_LENGTH, STATIC_TABLE } from './static-table.ts';

/** SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 9113 6.5.2). */
export const DEFAULT_HEADER_TABLE_SIZE = 4096;

/** A block that cannot be decoded: the connection's HPACK state is lost (COMPRESSION_ERROR). */
export class HpackError extends Error {
  override readonly name = 'HpackError';
}

/** Integers past this are refused: no length, index or size we accept comes near it. */
const MAX_INTEGER = 2 ** 32 - 1;

export class HpackDecoder {
  readonly #table: HeaderTable;
  /** The SETTINGS_HEADER_TABLE_SIZE we advertised: a size update may not go above it. */
  #limit: number;
  #block: Buffer = EMPTY;
  #pos = 0;

  constructor(maxTableSize = DEFAULT_HEADER_TABLE_SIZE) {
    this.#limit = maxTableSize;
    this.#table = new HeaderTable(maxTableSize);
  }

  /** Our advertised SETTINGS_HEADER_TABLE_SIZE changed (and the peer acknowledged it). */
  setMaxTableSize(size: number): void {
    this.#limit = size;
    if (this.#table.maxSize > size) this.#table.setMaxSize(size);
  }

  /** The connection is gone: its table goes (nothing is decoded after this). */
  release(): void {
    this.#table.clear();
  }

  /** Octets the dynamic table holds now (RFC 7541 4.1). */
  get tableSize(): number {
    return this.#table.size;
  }

  /**
   * Decodes one whole header block. Returns [name0, value0, name1, value1, ...] in order; or
   * null when the header list (names + values + 32 per field, RFC 9113 6.5.2) is over
   * `maxListSize`: the block is still decoded to its end, so the dynamic table stays in step
   * with the peer's, but no more fields are kept. Throws HpackError on malformed input; a single
   * string longer than `maxListSize` is one too (it cannot be kept, and is not worth decoding).
   */
  decode(block: Buffer, maxListSize: number): string[] | null {
    this.#block = block;
    this.#pos = 0;
    const table = this.#table;
    const fields: string[] = [];
    let listSize = 0;
    let over = false;
    let first = true;
    try {
      while (this.#pos < block.length) {
        const b = block[this.#pos] as number;
        let name: string;
        let value: string;
        if (b & 0x80) {
          // Indexed field (6.1).
          const index = this.#integer(7);
          name = this.#name(index);
          value = index <= STATIC_LENGTH ? (STATIC_TABLE[index - 1] as readonly [string, string])[1] : table.value(index - STATIC_LENGTH);
        } else if (b & 0x40) {
          // Literal with incremental indexing (6.2.1).
          const index = this.#integer(6);
          name = index === 0 ? this.#string(maxListSize) : this.#name(index);
          value = this.#string(maxListSize);
          table.add(name, value);
        } else if (b & 0x20) {
          // Dynamic table size update (6.3): only at the start of a block (4.2).
          if (!first) throw new HpackError('dynamic table size update after the first field of a block');
          const size = this.#integer(5);
          if (size > this.#limit) throw new HpackError(`dynamic table size update to ${size}, above the ${this.#limit} allowed`);
          table.setMaxSize(size);
          continue;
        } else {
          // Literal without indexing (6.2.2) or never indexed (6.2.3): 4-bit prefix either way.
          const index = this.#integer(4);
          if (over) {
            // Nothing more is kept and nothing enters the table: skip the strings undecoded.
            if (index === 0) this.#skipString(maxListSize);
            else this.#name(index);
            this.#skipString(maxListSize);
            continue;
          }
          name = index === 0 ? this.#string(maxListSize) : this.#name(index);
          value = this.#string(maxListSize);
        }
        first = false;
        if (over) continue;
        listSize += name.length + value.length + ENTRY_OVERHEAD;
        if (listSize > maxListSize) over = true;
        else fields.push(name, value);
      }
    } finally {
      this.#block = EMPTY;
    }
    return over ? null : fields;
  }

  /** An integer with an N-bit prefix (5.1) at the current position. */
  #integer(prefixBits: number): number {
    const block = this.#block;
    const max = (1 << prefixBits) - 1;
    let value = (block[this.#pos++] as number) & max;
    if (value < max) return value;
    let factor = 1;
    for (;;) {
      if (this.#pos >= block.length) throw new HpackError('integer runs past the end of the block');
      const b = block[this.#pos++] as number;
      value += (b & 0x7f) * factor;
      if (value > MAX_INTEGER) throw new HpackError('integer too large');
      if ((b & 0x80) === 0) return value;
      factor *= 128;
    }
  }

  #name(index: number): string {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_LENGTH) return (STATIC_TABLE[index - 1] as readonly [string, string])[0];
    const dynamic = index - STATIC_LENGTH;
    if (dynamic > this.#table.length) throw new HpackError(`index ${index} is past the end of the table`);
    return this.#table.name(dynamic);
  }

  /** Steps over a string literal without decoding it (its bounds are still checked). */
  #skipString(maxLength: number): void {
    const block = this.#block;
    if (this.#pos >= block.length) throw new HpackError('string literal missing at the end of the block');
    const length = this.#integer(7);
    if (length > block.length - this.#pos) throw new HpackError('string literal runs past the end of the block');
    if (length > maxLength) throw new HpackError(`a string of ${length} octets, over the header list limit of ${maxLength}`);
    this.#pos += length;
  }

  /** A string literal (5.2), Huffman-coded or not. */
  #string(maxLength: number): string {
    const block = this.#block;
    if (this.#pos >= block.length) throw new HpackError('string literal missing at the end of the block');
    const huffman = ((block[this.#pos] as number) & 0x80) !== 0;
    const length = this.#integer(7);
    const start = this.#pos;
    if (length > block.length - start) throw new HpackError('string literal runs past the end of the block');
    if (length > maxLength) throw new HpackError(`a string of ${length} octets, over the header list limit of ${maxLength}`);
    this.#pos = start + length;
    if (!huffman) return block.toString('latin1', start, start + length);
    const s = huffmanDecode(block, start, length);
    if (s === undefined) throw new HpackError('invalid Huffman code');
    return s;
  }
}

const EMPTY = Buffer.alloc(0);
