// HPACK encoding (RFC 7541 6): a flat [name, value, ...] list (latin1 strings) into one header
// block. What it indexes: fields that repeat from request to request on a connection (method,
// path, content-type, te, user-agent, gRPC's own metadata). What it does not: values that
// change with every request (tracing ids, timeouts, lengths), large values, and sensitive ones,
// which go out as never-indexed literals (RFC 7541 7.1.3) so that no intermediary stores them.
// Strings under 512 octets go out raw (netty's default; HAProxy and .NET never Huffman-code):
// coding saves a few octets of a field's first appearance on a connection, later ones being
// indexed, for CPU at both ends.
import { DEFAULT_HEADER_TABLE_SIZE } from './decoder.ts';
import { ENTRY_OVERHEAD, HeaderTable } from './header-table.ts';
import { huffmanEncode, huffmanLength } from './huffman.ts';
import { STATIC_FIELD_INDEX, STATIC_LENGTH, STATIC_NAME_INDEX } from './static-table.ts';

/** Fields never stored in a table, at either end. */
const SENSITIVE = new Set(['authorization', 'proxy-authorization']);
/** Cookies shorter than this are guessable enough to never index (RFC 7541 7.1.3). */
const SHORT_COOKIE = 20;
/**
 * Fields whose values are new on every request or response: indexing them only evicts. Not the
 * session id and its cookie: the gateway adds both to every response of a session, the same.
 */
const VOLATILE = new Set(['content-length', 'date', 'etag', 'grpc-timeout', 'traceparent', 'tracestate', 'last-modified', 'age']);
/** A value this large is not indexed: it would push out many small, repeating fields. */
const MAX_INDEXED_FIELD = 512;
/** Strings shorter than this go out raw (netty's default threshold). */
export const HUFFMAN_FROM = 512;

const Representation = {
  incremental: 0x40, // 6.2.1, 6-bit index prefix
  withoutIndexing: 0x00, // 6.2.2, 4-bit prefix
  neverIndexed: 0x10, // 6.2.3, 4-bit prefix
} as const;

// Every encoder writes its block here and copies the result out: encode() is synchronous, so one
// buffer serves the whole process and an idle connection holds none.
let scratch = Buffer.allocUnsafeSlow(1024);

export class HpackEncoder {
  readonly #table: HeaderTable;
  /** Size updates owed at the start of the next block (RFC 7541 4.2): the smallest, then the last. */
  #minPending = -1;
  readonly #huffmanFrom: number;
  #pos = 0;

  /** `huffmanFrom`: the shortest string Huffman-coded (when that is shorter); 0 codes every one. */
  constructor(maxTableSize = DEFAULT_HEADER_TABLE_SIZE, huffmanFrom = HUFFMAN_FROM) {
    this.#table = new HeaderTable(maxTableSize);
    this.#huffmanFrom = huffmanFrom;
  }

  /** The connection is gone: its table goes (nothing is encoded after this). */
  release(): void {
    this.#table.clear();
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE: the table follows, and the next block says so. */
  setMaxTableSize(size: number): void {
    this.#minPending = this.#minPending < 0 ? size : Math.min(this.#minPending, size);
    this.#table.setMaxSize(size);
  }

  /** Encodes a flat field list [name, value, ...] into one header block (a new Buffer). */
  encode(fields: readonly string[]): Buffer {
    this.#pos = 0;
    if (this.#minPending >= 0) {
      if (this.#minPending < this.#table.maxSize) this.#integer(this.#minPending, 5, 0x20);
      this.#integer(this.#table.maxSize, 5, 0x20);
      this.#minPending = -1;
    }
    for (let i = 0; i + 1 < fields.length; i += 2) this.#field(fields[i] as string, fields[i + 1] as string);
    return Buffer.from(scratch.subarray(0, this.#pos));
  }

  #field(name: string, value: string): void {
    const table = this.#table;
    const staticField = STATIC_FIELD_INDEX.get(name)?.get(value);
    if (staticField !== undefined) return this.#integer(staticField, 7, 0x80);
    const found = table.find(name, value);
    if (found > 0) return this.#integer(STATIC_LENGTH + found, 7, 0x80);
    const nameIndex = STATIC_NAME_INDEX.get(name) ?? (found < 0 ? STATIC_LENGTH - found : 0);
    let representation: number;
    if (SENSITIVE.has(name) || (name === 'cookie' && value.length < SHORT_COOKIE)) {
      representation = Representation.neverIndexed;
    } else if (VOLATILE.has(name) || name.length + value.length + ENTRY_OVERHEAD > Math.min(MAX_INDEXED_FIELD, table.maxSize)) {
      representation = Representation.withoutIndexing;
    } else {
      representation = Representation.incremental;
    }
    this.#integer(nameIndex, representation === Representation.incremental ? 6 : 4, representation);
    if (nameIndex === 0) this.#string(name);
    this.#string(value);
    if (representation === Representation.incremental) table.add(name, value);
  }

  /** An integer with an N-bit prefix (RFC 7541 5.1); `first` holds the bits above the prefix. */
  #integer(value: number, prefixBits: number, first: number): void {
    this.#reserve(6);
    const out = scratch;
    const max = (1 << prefixBits) - 1;
    if (value < max) {
      out[this.#pos++] = first | value;
      return;
    }
    out[this.#pos++] = first | max;
    let rest = value - max;
    while (rest >= 128) {
      out[this.#pos++] = (rest & 0x7f) | 0x80;
      rest = Math.floor(rest / 128);
    }
    out[this.#pos++] = rest;
  }

  /** A string literal (RFC 7541 5.2), Huffman-coded when it is long enough and that is shorter. */
  #string(s: string): void {
    const huffman = s.length < this.#huffmanFrom ? s.length : huffmanLength(s);
    if (huffman < s.length) {
      this.#integer(huffman, 7, 0x80);
      this.#reserve(huffman);
      this.#pos = huffmanEncode(s, scratch, this.#pos);
    } else {
      this.#integer(s.length, 7, 0);
      this.#reserve(s.length);
      this.#pos += scratch.write(s, this.#pos, 'latin1');
    }
  }

  #reserve(n: number): void {
    if (this.#pos + n <= scratch.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(scratch.length * 2, this.#pos + n));
    scratch.copy(grown, 0, 0, this.#pos);
    scratch = grown;
  }
}
