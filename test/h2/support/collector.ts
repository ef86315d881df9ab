// Collects what one lib/h2 stream receives (headers, trailers, body, the code it closed with)
// for tests that play the layer above.
import type { StreamHandler } from '../../../lib/h2/stream.ts';

export interface Outcome {
  headers: string[] | undefined;
  trailers: string[] | undefined;
  body: Buffer[];
  code: number | null | undefined;
}

/** Collects a response; `consume` false leaves the data unconsumed (the window stays shut). */
export function collector(consume = true): { handler: StreamHandler; outcome: Outcome; done: Promise<Outcome> } {
  const outcome: Outcome = { headers: undefined, trailers: undefined, body: [], code: undefined };
  let resolve!: (o: Outcome) => void;
  const done = new Promise<Outcome>((r) => (resolve = r));
  const handler: StreamHandler = {
    onHeaders(_s, fields) {
      // The first block is the response; a later one is trailers.
      if (outcome.headers === undefined) outcome.headers = fields;
      else outcome.trailers = fields;
    },
    onData(stream, data) {
      outcome.body.push(Buffer.from(data));
      if (consume) stream.consume(data.length);
    },
    onClose(_s, code) {
      outcome.code = code;
      resolve(outcome);
    },
    onWritable() {},
  };
  return { handler, outcome, done };
}
