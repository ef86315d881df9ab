// lib/h2/hpack against RFC 7541 Appendix C (every example, with the dynamic table size after
// each block), the decoding errors section 5 and 6 name, the header-list limit, and the encoder's
// own choices (size updates, never-indexed fields, indexing what repeats).
import t from 'tap';
import { HpackDecoder, HpackError } from '../../lib/h2/hpack/decoder.ts';
import { HpackEncoder } from '../../lib/h2/hpack/encoder.ts';
import { huffmanDecode, huffmanEncode, huffmanLength } from '../../lib/h2/hpack/huffman.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const pairs = (flat: readonly string[] | null): Array<[string, string]> => {
  const out: Array<[string, string]> = [];
  for (let i = 0; flat && i < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
};
const flat = (list: ReadonlyArray<readonly [string, string]>): string[] => list.flatMap(([n, v]) => [n, v]);
const BIG = 1 << 20;

const REQ1: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']];
const REQ2: Array<[string, string]> = [...REQ1, ['cache-control', 'no-cache']];
const REQ3: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']];
const DATE1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const RES1: Array<[string, string]> = [[':status', '302'], ['cache-control', 'private'], ['date', DATE1], ['location', 'https://www.example.com']];
const RES2: Array<[string, string]> = [[':status', '307'], ['cache-control', 'private'], ['date', DATE1], ['location', 'https://www.example.com']];
const RES3: Array<[string, string]> = [
  [':status', '200'],
  ['cache-control', 'private'],
  ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
  ['location', 'https://www.example.com'],
  ['content-encoding', 'gzip'],
  ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
];

const EXAMPLES: ReadonlyArray<{ name: string; tableSize: number; blocks: ReadonlyArray<{ bytes: string; fields: Array<[string, string]>; size: number }> }> = [
  {
    name: 'C.3 requests without Huffman',
    tableSize: 4096,
    blocks: [
      { bytes: '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', fields: REQ1, size: 57 },
      { bytes: '8286 84be 5808 6e6f 2d63 6163 6865', fields: REQ2, size: 110 },
      { bytes: '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65', fields: REQ3, size: 164 },
    ],
  },
  {
    name: 'C.4 requests with Huffman',
    tableSize: 4096,
    blocks: [
      { bytes: '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', fields: REQ1, size: 57 },
      { bytes: '8286 84be 5886 a8eb 1064 9cbf', fields: REQ2, size: 110 },
      { bytes: '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf', fields: REQ3, size: 164 },
    ],
  },
  {
    name: 'C.5 responses without Huffman, a 256-octet table (evictions)',
    tableSize: 256,
    blocks: [
      {
        bytes:
          '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        fields: RES1,
        size: 222,
      },
      { bytes: '4803 3330 37c1 c0bf', fields: RES2, size: 222 },
      {
        bytes:
          '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31',
        fields: RES3,
        size: 215,
      },
    ],
  },
  {
    name: 'C.6 responses with Huffman, a 256-octet table (evictions)',
    tableSize: 256,
    blocks: [
      {
        bytes: '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
        fields: RES1,
        size: 222,
      },
      { bytes: '4883 640e ffc1 c0bf', fields: RES2, size: 222 },
      {
        bytes:
          '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
        fields: RES3,
        size: 215,
      },
    ],
  },
];

t.test('RFC 7541 Appendix C: every example decodes to its fields, with the table size after each block', async (t) => {
  for (const example of EXAMPLES) {
    const decoder = new HpackDecoder(example.tableSize);
    example.blocks.forEach((block, i) => {
      t.same(pairs(decoder.decode(hex(block.bytes), BIG)), block.fields, `${example.name}, block ${i + 1}`);
      t.equal(decoder.tableSize, block.size, `${example.name}, block ${i + 1}: table holds ${block.size} octets`);
    });
  }
});

t.test('RFC 7541 C.2: one field of each representation', async (t) => {
  const cases: Array<[string, Array<[string, string]>, number]> = [
    ['400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572', [['custom-key', 'custom-header']], 55],
    ['040c 2f73 616d 706c 652f 7061 7468', [[':path', '/sample/path']], 0],
    ['1008 7061 7373 776f 7264 0673 6563 7265 74', [['password', 'secret']], 0],
    ['82', [[':method', 'GET']], 0],
  ];
  for (const [bytes, fields, size] of cases) {
    const decoder = new HpackDecoder();
    t.same(pairs(decoder.decode(hex(bytes), BIG)), fields, bytes);
    t.equal(decoder.tableSize, size, `${bytes}: table ${size}`);
  }
});

t.test('RFC 7541 C.1: integers with a 5-bit prefix, as dynamic table size updates', async (t) => {
  // 001xxxxx is a size update: C.1.1 (10) and C.1.2 (1337) carried in one.
  const decoder = new HpackDecoder(4096);
  t.same(decoder.decode(Buffer.from([0x2a]), BIG), [], '10 fits in the prefix');
  t.same(decoder.decode(Buffer.from([0x3f, 0x9a, 0x0a]), BIG), [], '1337 continues in two octets');
  t.throws(() => new HpackDecoder(1336).decode(Buffer.from([0x3f, 0x9a, 0x0a]), BIG), HpackError, '1337 is above a limit of 1336');
});

t.test('Huffman: the appendix strings, every octet, and the padding rules', async (t) => {
  const encodeHuffman = (s: string): Buffer => {
    const out = Buffer.alloc(huffmanLength(s));
    t.equal(huffmanEncode(s, out, 0), out.length);
    return out;
  };
  t.equal(encodeHuffman('www.example.com').toString('hex'), 'f1e3c2e5f23a6ba0ab90f4ff', 'C.4.1');
  t.equal(encodeHuffman('no-cache').toString('hex'), 'a8eb10649cbf', 'C.4.2');
  t.equal(encodeHuffman('custom-key').toString('hex'), '25a849e95ba97d7f', 'C.4.3');
  t.equal(encodeHuffman('foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1').toString('hex'), '94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007', 'C.6.3');
  let all = '';
  for (let i = 0; i < 256; i++) all += String.fromCharCode(i, 255 - i, i);
  const coded = encodeHuffman(all);
  t.equal(huffmanDecode(coded, 0, coded.length), all, 'every octet value round-trips');
  t.equal(huffmanDecode(Buffer.alloc(0), 0, 0), '', 'the empty string');
  // 'a' is 00011 (5 bits): padded with 111 it is one octet; padded with 0s it is not valid.
  t.equal(huffmanDecode(Buffer.from([0x1f]), 0, 1), 'a', 'padding of ones');
  t.equal(huffmanDecode(Buffer.from([0x18]), 0, 1), undefined, 'padding of zeros is refused');
  t.equal(huffmanDecode(Buffer.from([0x1f, 0xff]), 0, 2), undefined, 'padding longer than 7 bits is refused');
  t.equal(huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4), undefined, 'EOS (30 ones) inside a string is refused');
});

t.test('decoding errors: each a HpackError, none another exception', async (t) => {
  const bad: Array<[string, Buffer]> = [
    ['index 0', Buffer.from([0x80])],
    ['an index past the dynamic table', Buffer.from([0xbe])],
    ['an indexed name past the table', Buffer.from([0x7f, 0x00, 0x01, 0x61])],
    ['an integer that does not end', Buffer.from([0xff, 0x80, 0x80])],
    ['an integer over 2^32', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])],
    ['a string past the end of the block', Buffer.from([0x00, 0x05, 0x61])],
    ['a name with no value', Buffer.from([0x00, 0x01, 0x61])],
    ['a size update after a field', Buffer.from([0x82, 0x20])],
    ['a size update above the advertised size', Buffer.from([0x3f, 0xe2, 0x1f])],
    ['bad Huffman (EOS)', Buffer.from([0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x01, 0x61])],
  ];
  for (const [what, block] of bad) t.throws(() => new HpackDecoder().decode(block, BIG), HpackError, what);
});

t.test('the header-list limit: over it is null, the table stays in step, the next block decodes', async (t) => {
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const big: Array<[string, string]> = Array.from({ length: 20 }, (_, i) => [`x-key-${i}`, 'v'.repeat(100)]);
  const blocks = [encoder.encode(flat(big)), encoder.encode(flat(big)), encoder.encode(flat(REQ3))];
  t.equal(decoder.decode(blocks[0] as Buffer, 1000), null, 'a list of 20 fields of ~140 octets is over 1000');
  t.equal(decoder.decode(blocks[1] as Buffer, 1000), null, 'again, now from the dynamic table');
  t.same(pairs(decoder.decode(blocks[2] as Buffer, 1000)), REQ3, 'the next block decodes');
  // A compression bomb: one 4000-octet entry, then a block referencing it 10,000 times.
  const bomb = new HpackDecoder();
  t.same(pairs(bomb.decode(Buffer.concat([Buffer.from([0x40, 0x01, 0x62, 0x7f, 0xa1, 0x1e]), Buffer.alloc(4000, 0x61)]), BIG)), [['b', 'a'.repeat(4000)]]);
  const refs = Buffer.alloc(10_000, 0xbe);
  const started = performance.now();
  t.equal(bomb.decode(refs, 65_536), null, '10,000 references to a 4 KB entry stop at a 64 KiB limit');
  t.comment(`decoded a 10,000-reference bomb in ${(performance.now() - started).toFixed(1)} ms`);
  t.throws(() => new HpackDecoder().decode(Buffer.concat([Buffer.from([0x00, 0x01, 0x61, 0x7f, 0xa1, 0x1e]), Buffer.alloc(4000)]), 1000), HpackError, 'one string over the limit');
});

t.test('the encoder: indexes what repeats, never indexes secrets, announces table size changes', async (t) => {
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const request = flat([[':method', 'POST'], [':scheme', 'http'], [':path', '/pkg.Svc/Method'], [':authority', 'fn.example'], ['content-type', 'application/grpc'], ['te', 'trailers'], ['authorization', 'Bearer secret-token'], ['grpc-timeout', '1S']]);
  const first = encoder.encode(request);
  const second = encoder.encode(request);
  t.same(decoder.decode(first, BIG), request, 'the first block decodes');
  t.same(decoder.decode(second, BIG), request, 'the second block decodes');
  t.ok(second.length < first.length / 2, `the second block is small (${first.length} -> ${second.length} octets)`);
  t.ok(second.includes(Buffer.from([0x10 | 0x0f, 23 - 15])), 'authorization goes out as a never-indexed literal (name index 23)');
  t.equal(encoder.encode(flat([['a', 'b']])).length > 0, true);
  encoder.setMaxTableSize(0);
  encoder.setMaxTableSize(100);
  const resized = encoder.encode(request);
  t.same([...resized.subarray(0, 3)], [0x20, 0x3f, 0x45], 'the next block starts with size updates to 0 (the smallest) and 100');
  t.same(decoder.decode(resized, BIG), request, 'and decodes');
});

t.test('the encoder: short strings raw, long ones Huffman-coded; a session id and its cookie repeat as one octet each', async (t) => {
  const decoder = new HpackDecoder();
  const short = 'application/grpc+proto';
  const long = 'abcdefghij'.repeat(60);
  // Literal without indexing, new name: 0x00, then the name and the value, each with its H bit.
  const hBits = (encoder: HpackEncoder, value: string): number[] => {
    const block = encoder.encode(['x-probe', value]);
    t.same(decoder.decode(block, BIG), ['x-probe', value], 'decodes');
    const nameFlag = (block[1] as number) & 0x80;
    const nameLength = (block[1] as number) & 0x7f;
    return [nameFlag, (block[2 + nameLength] as number) & 0x80];
  };
  // Values of 512 octets and more are not indexed, so each probe is a literal of its own.
  t.same(hBits(new HpackEncoder(), long), [0, 0x80], 'default: the 7-octet name raw, the 600-octet value Huffman-coded');
  t.same(hBits(new HpackEncoder(4096, 0), long), [0x80, 0x80], 'huffmanFrom 0: both coded');
  const fresh = new HpackEncoder();
  const block = fresh.encode(['content-type', short]);
  t.same([block[1]], [short.length], `a ${short.length}-octet value goes out raw (no H bit, its own length)`);
  t.equal(block.subarray(2).toString('latin1'), short);

  const encoder = new HpackEncoder();
  const responses = new HpackDecoder();
  const id = 'AgAAAAAAAAAB8s7dYm1kZ2JpcnN0dXZ3eHl6MDEyMzQ1Njc4OWFi';
  const response = [':status', '200', 'content-type', 'application/grpc', 'nvcf-reqid', id, 'set-cookie', `nvcf-request-id=${id}; Path=/; HttpOnly`];
  const first = encoder.encode(response);
  const second = encoder.encode(response);
  t.same(responses.decode(first, BIG), response);
  t.same(responses.decode(second, BIG), response);
  t.equal(second.length, 4, 'the second response is four indexed fields: the session id and its cookie are in the table');
});
