// The static Huffman code of HPACK string literals (RFC 7541 5.2 and Appendix B), both ways.
//
// The code is canonical: codes are handed out in order of length, and within a length in order
// of symbol. So the appendix is fully described by one length per symbol, kept below as one
// character each ('0' + length); the codes follow from them at load. Decoding runs a table
// built from the same lengths: one state per inner node of the code tree, four input bits per
// step, at most one symbol out per step (no code is shorter than five bits).

/** Code length of symbols 0-255 and EOS (256), as String.fromCharCode(48 + length). */
const LENGTHS =
  '=GLLLLLLLHNLLNLLLLLLLLNLLLLLLLLL6::<=68;::8;8666555666666678?6<:=67777777777777777777777878=C=>6?56565666577666567655677777?;>=LDFDDFFFGFGGGGGHGHHFGHGGGGEFGFGGHFEDFFGGEGFFHEFGGEEFEGFGGDFFFGFFGJJDCFGFIJJJKKJHICEJKKJKHEEJJLKKKDHDEFEEGFFIIHHJGJKJJKKKKKLKKKKKJN';

const EOS = 256;
const SYMBOLS = 257;

/** Code and length of each symbol; codes are right-aligned (the low `length` bits). */
const codeOf = new Uint32Array(SYMBOLS);
const lengthOf = new Uint8Array(SYMBOLS);

{
  const order: number[] = [];
  for (let sym = 0; sym < SYMBOLS; sym++) {
    lengthOf[sym] = LENGTHS.charCodeAt(sym) - 48;
    order.push(sym);
  }
  order.sort((a, b) => (lengthOf[a] as number) - (lengthOf[b] as number) || a - b);
  let code = 0;
  let length = lengthOf[order[0] as number] as number;
  for (const sym of order) {
    const len = lengthOf[sym] as number;
    code *= 2 ** (len - length); // moving to a longer length appends zero bits
    length = len;
    codeOf[sym] = code;
    code++;
  }
}

// --- decoding -----------------------------------------------------------------------------
//
// States are the code tree's inner nodes (0 = the root). For state s and nibble n, one entry of
// DECODE holds: next state (bits 0-8), the symbol emitted (bits 9-16) if FLAG_EMIT, FLAG_FAIL if
// the nibble completes EOS (a decoding error, RFC 7541 5.2). ACCEPT[s] says that ending in
// state s is allowed: the bits since the last symbol are fewer than eight and all ones (the
// most significant bits of EOS, the only padding allowed).

const FLAG_EMIT = 1 << 17;
const FLAG_FAIL = 1 << 18;

const { DECODE, ACCEPT } = buildDecoder();

function buildDecoder(): { DECODE: Uint32Array; ACCEPT: Uint8Array } {
  // The tree as arrays: child[2 * node + bit] is an inner node id, or ~symbol for a leaf.
  const child: number[] = [0, 0];
  const depth: number[] = [0];
  const allOnes: boolean[] = [true];
  for (let sym = 0; sym < SYMBOLS; sym++) {
    const len = lengthOf[sym] as number;
    const code = codeOf[sym] as number;
    let node = 0;
    for (let i = len - 1; i > 0; i--) {
      const bit = Math.floor(code / 2 ** i) & 1;
      let next = child[2 * node + bit] as number;
      if (next === 0) {
        next = depth.length;
        depth.push((depth[node] as number) + 1);
        allOnes.push((allOnes[node] as boolean) && bit === 1);
        child.push(0, 0);
        child[2 * node + bit] = next;
      }
      node = next;
    }
    child[2 * node + (code & 1)] = ~sym;
  }
  const states = depth.length;
  const decode = new Uint32Array(states * 16);
  const accept = new Uint8Array(states);
  for (let s = 0; s < states; s++) {
    accept[s] = allOnes[s] && (depth[s] as number) < 8 ? 1 : 0;
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = s;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[2 * node + ((nibble >> i) & 1)] as number;
        if (next < 0) {
          const sym = ~next;
          if (sym === EOS) {
            entry = FLAG_FAIL;
            break;
          }
          entry = FLAG_EMIT | (sym << 9);
          node = 0;
        } else {
          node = next;
        }
      }
      decode[s * 16 + nibble] = entry & FLAG_FAIL ? FLAG_FAIL : entry | node;
    }
  }
  return { DECODE: decode, ACCEPT: accept };
}

/** Grows as needed; a decoded string is at most 8/5 of its encoded length. */
let scratch = Buffer.allocUnsafe(4096);

/**
 * Decodes `length` Huffman-coded octets of `src` from `start` into a latin1 string, or returns
 * undefined if they are not a valid encoding (EOS inside, padding longer than seven bits or not
 * all ones).
 */
export function huffmanDecode(src: Buffer, start: number, length: number): string | undefined {
  const max = Math.ceil((length * 8) / 5);
  if (scratch.length < max) scratch = Buffer.allocUnsafe(Math.max(max, scratch.length * 2));
  const out = scratch;
  let n = 0;
  let state = 0;
  const end = start + length;
  for (let i = start; i < end; i++) {
    const byte = src[i] as number;
    let e = DECODE[state * 16 + (byte >> 4)] as number;
    if (e & FLAG_FAIL) return undefined;
    if (e & FLAG_EMIT) out[n++] = (e >> 9) & 0xff;
    e = DECODE[(e & 0x1ff) * 16 + (byte & 0xf)] as number;
    if (e & FLAG_FAIL) return undefined;
    if (e & FLAG_EMIT) out[n++] = (e >> 9) & 0xff;
    state = e & 0x1ff;
  }
  if (!ACCEPT[state]) return undefined;
  return out.toString('latin1', 0, n);
}

/** Octets the Huffman encoding of `s` (latin1) takes, padding included. */
export function huffmanLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += lengthOf[s.charCodeAt(i) & 0xff] as number;
  return (bits + 7) >>> 3;
}

/**
 * Writes the Huffman encoding of `s` (latin1) into `dst` at `pos` (room for huffmanLength(s)
 * octets must be there), padded with ones; returns the position after it.
 */
export function huffmanEncode(s: string, dst: Buffer, pos: number): number {
  // `acc` holds `bits` pending bits (at most 7 between symbols); a code of more than 24 bits is
  // added in two parts so that acc never needs more than 31 bits.
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    let len = lengthOf[sym] as number;
    let code = codeOf[sym] as number;
    if (len > 24) {
      acc = (acc << (len - 8)) | (code >>> 8);
      bits += len - 8;
      while (bits >= 8) {
        bits -= 8;
        dst[pos++] = (acc >>> bits) & 0xff;
      }
      acc &= (1 << bits) - 1;
      code &= 0xff;
      len = 8;
    }
    acc = (acc << len) | code;
    bits += len;
    while (bits >= 8) {
      bits -= 8;
      dst[pos++] = (acc >>> bits) & 0xff;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) dst[pos++] = ((acc << (8 - bits)) | (0xff >>> bits)) & 0xff;
  return pos;
}
