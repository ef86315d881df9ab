// python-hyper's hpack (test/python/hpack_peer.py) as an independent HPACK: one long-lived
// process per test file, one JSON line per request and per answer.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PYTHON } from './python.ts';

const PEER_PY = fileURLToPath(new URL('../python/hpack_peer.py', import.meta.url));

export type FieldList = Array<[string, string]>;
export type EncodeStep = { tableSize: number } | { fields: FieldList; huffman?: boolean };

export interface HpackPeer {
  /** Decodes the blocks in order with one decoder allowing a table of `tableSize`; a string on error. */
  decode(tableSize: number, blocks: Buffer[]): Promise<FieldList[] | string>;
  /** Encodes the steps in order with one encoder. */
  encode(steps: EncodeStep[]): Promise<Buffer[]>;
  close(): void;
}

export function startHpackPeer(): HpackPeer {
  const child = spawn(PYTHON, [PEER_PY], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: Array<(line: string) => void> = [];
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.(line));
  child.stdin.on('error', () => {}); // a peer that died fails the next request instead
  const ask = (req: unknown): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null) return reject(new Error(`hpack_peer.py exited with ${child.exitCode}`));
      waiting.push((line) => resolve(JSON.parse(line) as Record<string, unknown>));
      child.stdin.write(JSON.stringify(req) + '\n');
    });
  return {
    async decode(tableSize, blocks) {
      const answer = await ask({ op: 'decode', tableSize, blocks: blocks.map((b) => b.toString('hex')) });
      return typeof answer['error'] === 'string' ? answer['error'] : (answer['lists'] as FieldList[]);
    },
    async encode(steps) {
      const answer = await ask({ op: 'encode', steps });
      if (typeof answer['error'] === 'string') throw new Error(`python hpack could not encode: ${answer['error']}`);
      return (answer['blocks'] as string[]).map((hex) => Buffer.from(hex, 'hex'));
    },
    close() {
      child.stdin.end();
    },
  };
}
