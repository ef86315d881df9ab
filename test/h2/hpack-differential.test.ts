// lib/h2/hpack against an independent HPACK, python-hyper's `hpack` (test/python/hpack_peer.py),
// in both directions: random sequences of header lists on one connection (repeats that get
// indexed, every octet value in names and values, long values, Huffman on and off, table-size
// changes that evict) encoded by one side decode to the same lists on the other.
//
// FUZZ_RUNS / 4 sequences each way (500 in `make test`); FUZZ_SEED=<seed> replays a failure.
import t from 'tap';
import fc from 'fast-check';
import { HpackDecoder } from '../../lib/h2/hpack/decoder.ts';
import { HpackEncoder } from '../../lib/h2/hpack/encoder.ts';
import { startHpackPeer, type EncodeStep, type FieldList } from '../helpers/hpack-peer.ts';

const RUNS = Math.max(1, Math.round(Number(process.env['FUZZ_RUNS'] ?? 2000) / 4));
const SEED = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);
const params = { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) };
const TABLE = 4096;

const latin1 = (max: number): fc.Arbitrary<string> => fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: max });
const token = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_.'), minLength: 1, maxLength: 24 });
const name = fc.oneof(
  fc.constantFrom(':path', ':method', ':authority', 'content-type', 'te', 'grpc-timeout', 'authorization', 'cookie', 'user-agent', 'x-custom', 'traceparent', 'custom-key'),
  token,
  latin1(20).filter((s) => s.length > 0),
);
const value = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('', 'POST', '/pkg.Svc/Method', 'application/grpc', 'trailers', '1S', 'Bearer abc', 'a', 'custom-value') },
  { weight: 3, arbitrary: fc.string({ maxLength: 40 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')) },
  { weight: 2, arbitrary: latin1(80) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', 'e', '0', '1', '/'), minLength: 500, maxLength: 1500 }) },
);
const fields: fc.Arbitrary<FieldList> = fc.array(fc.tuple(name, value), { maxLength: 12 });
/** One connection's worth: header lists, with table-size changes between some of them. */
const sequence = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: fields.map((f) => ({ fields: f }) as EncodeStep) },
    { weight: 1, arbitrary: fc.constantFrom(0, 64, 256, 1000, TABLE).map((size) => ({ tableSize: size }) as EncodeStep) },
  ),
  { minLength: 1, maxLength: 10 },
);

const peer = startHpackPeer();
t.teardown(() => peer.close());

const listsOf = (steps: EncodeStep[]): FieldList[] => steps.flatMap((s) => ('fields' in s ? [s.fields] : []));
const pairs = (flat: string[] | null): FieldList => {
  const out: FieldList = [];
  for (let i = 0; flat && i < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
};

t.test('ours encodes (Huffman from its threshold, or for every string), python-hyper hpack decodes the same lists', async (t) => {
  let blocks = 0;
  await fc.assert(
    fc.asyncProperty(sequence, fc.boolean(), async (steps, huffmanAll) => {
      const encoder = huffmanAll ? new HpackEncoder(TABLE, 0) : new HpackEncoder();
      const encoded: Buffer[] = [];
      for (const step of steps) {
        if ('tableSize' in step) encoder.setMaxTableSize(step.tableSize);
        else encoded.push(encoder.encode(step.fields.flat()));
      }
      blocks += encoded.length;
      const decoded = await peer.decode(TABLE, encoded);
      if (typeof decoded === 'string') throw new Error(`python could not decode our blocks: ${decoded}`);
      const expected = listsOf(steps);
      if (JSON.stringify(decoded) !== JSON.stringify(expected)) {
        throw new Error(`python decoded ${JSON.stringify(decoded).slice(0, 400)}, expected ${JSON.stringify(expected).slice(0, 400)}`);
      }
    }),
    params,
  );
  t.pass(`${RUNS} sequences, ${blocks} blocks`);
});

t.test('python-hyper hpack encodes (Huffman on and off), ours decodes the same lists', async (t) => {
  let blocks = 0;
  await fc.assert(
    fc.asyncProperty(sequence, fc.boolean(), async (steps, huffman) => {
      const encoded = await peer.encode(steps.map((s) => ('fields' in s ? { ...s, huffman } : s)));
      blocks += encoded.length;
      const decoder = new HpackDecoder(TABLE);
      const decoded = encoded.map((block) => pairs(decoder.decode(block, 1 << 20)));
      const expected = listsOf(steps);
      if (JSON.stringify(decoded) !== JSON.stringify(expected)) {
        throw new Error(`we decoded ${JSON.stringify(decoded).slice(0, 400)}, expected ${JSON.stringify(expected).slice(0, 400)}`);
      }
    }),
    params,
  );
  t.pass(`${RUNS} sequences, ${blocks} blocks`);
});
