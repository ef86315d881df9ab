// Fuzzing the HPACK decoder (lib/h2/hpack): arbitrary bytes, and valid blocks from the encoder
// with one octet changed, inserted or cut off. For any input the decoder returns a list (or
// null, over the limit) or throws HpackError, never another exception; it never keeps more than
// the header-list limit; and a decoder that refused a block is not used again (the connection
// is closed), so only state within one block matters.
//
// FUZZ_RUNS runs per property (2000 in `make test`, 200,000 in `make fuzz`); FUZZ_SEED replays.
import t from 'tap';
import fc from 'fast-check';
import { HpackDecoder, HpackError } from '../../lib/h2/hpack/decoder.ts';
import { HpackEncoder } from '../../lib/h2/hpack/encoder.ts';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 2000);
const SEED = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);
const params = { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) };
const LIMIT = 4096;

/** Decodes and checks the outcome; returns what it was, for counting. */
function decodeChecked(decoder: HpackDecoder, block: Buffer): 'list' | 'over' | 'error' {
  let out: string[] | null;
  try {
    out = decoder.decode(block, LIMIT);
  } catch (err) {
    if (err instanceof HpackError) return 'error';
    throw new Error(`not an HpackError: ${(err as Error).stack}`);
  }
  if (out === null) return 'over';
  let size = 0;
  for (let i = 0; i < out.length; i += 2) size += (out[i] as string).length + (out[i + 1] as string).length + 32;
  if (size > LIMIT) throw new Error(`kept ${size} octets of fields, over the ${LIMIT} limit`);
  if (out.some((s) => typeof s !== 'string')) throw new Error('a field that is not a string');
  return 'list';
}

t.test('arbitrary bytes: a list, null or HpackError', async (t) => {
  const seen = { list: 0, over: 0, error: 0 };
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 4 }), (blocks) => {
      const decoder = new HpackDecoder();
      for (const block of blocks) {
        const r = decodeChecked(decoder, Buffer.from(block));
        seen[r]++;
        if (r === 'error') break;
      }
    }),
    params,
  );
  t.comment(JSON.stringify(seen));
  t.ok(seen.list > 0 && seen.error > 0, 'both outcomes were reached');
});

const field = fc.tuple(
  fc.oneof(fc.constantFrom(':path', 'content-type', 'x-k', 'authorization', 'grpc-timeout'), fc.string({ minLength: 1, maxLength: 12 })),
  fc.oneof(fc.constantFrom('/a.B/C', 'application/grpc', 'v'), fc.string({ maxLength: 60 })),
);

t.test('valid blocks with one octet changed, inserted or cut off: a list, null or HpackError', async (t) => {
  const seen = { list: 0, over: 0, error: 0 };
  fc.assert(
    fc.property(
      fc.array(fc.array(field, { maxLength: 10 }), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      fc.integer({ min: 0, max: 255 }),
      fc.constantFrom('change', 'insert', 'cut'),
      fc.boolean(),
      (lists, at, octet, how, huffmanAll) => {
        const encoder = huffmanAll ? new HpackEncoder(undefined, 0) : new HpackEncoder();
        const blocks = lists.map((l) => encoder.encode(l.flat()));
        const victim = at % blocks.length;
        const block = blocks[victim] as Buffer;
        const i = block.length === 0 ? 0 : (at >> 3) % block.length;
        blocks[victim] =
          how === 'change' ? Buffer.concat([block.subarray(0, i), Buffer.from([octet]), block.subarray(i + 1)]) : how === 'insert' ? Buffer.concat([block.subarray(0, i), Buffer.from([octet]), block.subarray(i)]) : block.subarray(0, i);
        const decoder = new HpackDecoder();
        for (const b of blocks) {
          const r = decodeChecked(decoder, b);
          seen[r]++;
          if (r === 'error') break;
        }
      },
    ),
    params,
  );
  t.comment(JSON.stringify(seen));
  t.ok(seen.list > 0 && seen.error > 0, 'both outcomes were reached');
});
