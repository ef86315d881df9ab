// Frees node:http2's socket-read buffers while they are young. Every socket read gets a fresh
// 64 KiB ArrayBuffer and the DATA chunks forwarded are slices of it; they are garbage as soon
// as written, but a proxy allocates so little JavaScript that scavenges are rare, so V8 only
// sees them as growing external memory and frees them with full mark-compacts (20-35 per GiB
// forwarded, each marking the whole heap). A scavenge every RECLAIM_BYTES forwarded frees them
// for a fraction of that: 1 GiB streams ran ~50% faster with peak RSS ~105 MiB instead of ~155
// (docs/performance.md). Unary traffic forwards few bytes and so almost never triggers one.
//
// V8's gc() is reached by setting --expose-gc at run time and taking gc from a new context
// (the main context was made before the flag); if that ever stops working, reclaiming is off
// and forwarding is unaffected.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Bytes forwarded (both directions, all streams) between scavenges. */
const RECLAIM_BYTES = 16 << 20;

type Gc = (options: { type: 'minor' }) => void;

function scavenger(): Gc | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    return typeof gc === 'function' ? (gc as Gc) : undefined;
  } catch {
    return undefined;
  }
}

const scavenge = scavenger();
let sinceLast = 0;

/** Counts `n` bytes forwarded; runs a scavenge once RECLAIM_BYTES have gone by. */
export function forwarded(n: number): void {
  sinceLast += n;
  if (sinceLast < RECLAIM_BYTES || scavenge === undefined) return;
  sinceLast = 0;
  scavenge({ type: 'minor' });
}
