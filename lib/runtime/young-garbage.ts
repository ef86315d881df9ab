// Frees the data plane's native garbage while it is young. Two kinds pile up:
// - what reads and their forwarding leave behind: fresh read buffers where a socket does not
//   read into reused ones (TLS client connections), and even where it does, the views and write
//   requests of every forwarded chunk (without these scavenges a 1 GiB stream on reused
//   buffers still peaked ~25 MiB higher);
// - a closed connection's sessions (client side and the session's upstream), whose native
//   memory V8 holds as external memory until their objects are collected.
// Both die young, but a proxy allocates so little JavaScript that scavenges are rare, so V8
// only sees external memory growing and frees it with full mark-compacts: 20-35 per GiB
// forwarded, and ~5 a second under connection churn. A scavenge every RECLAIM_BYTES of
// either frees them for a fraction of that (docs/performance.md, measured on node:http2: 1 GiB
// streams ~50% faster with peak RSS ~105 MiB instead of ~155; 10-15% more new connections a
// second). lib/h2 counts every socket read and every joined header block here.
//
// V8's gc() is reached by setting --expose-gc at run time and taking gc from a new context
// (the main context was made before the flag); if that ever stops working, reclaiming is off
// and forwarding is unaffected. That changes a V8 flag of the whole process, so it happens only
// when `fngate serve` asks (setUpProcess), never on import: until then counting costs an add.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Bytes of young native garbage (forwarded, or closed connections' share) between scavenges.
 * Each scavenge of a proxy's small young generation costs ~0.1-0.3 ms; at 4 MiB a 1 GiB stream
 * pays 256 of them and peaks ~15 MiB lower than at 16 MiB, at the same throughput.
 */
export const RECLAIM_BYTES = 4 << 20;
/** Closed client connections between scavenges (a connection's share of RECLAIM_BYTES). */
export const CONNECTIONS_PER_RECLAIM = 128;
const CONNECTION_BYTES = RECLAIM_BYTES / CONNECTIONS_PER_RECLAIM;

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

let scavenge: Gc | undefined;
let sinceLast = 0;

/** Turns reclaiming on (idempotent); false when this V8 offers no way to scavenge. */
export function enableYoungGarbageReclaim(): boolean {
  scavenge ??= scavenger();
  return scavenge !== undefined;
}

/** Counts `n` bytes forwarded; runs a scavenge once RECLAIM_BYTES have gone by. */
export function forwarded(n: number): void {
  sinceLast += n;
  if (sinceLast < RECLAIM_BYTES || scavenge === undefined) return;
  sinceLast = 0;
  scavenge({ type: 'minor' });
}

/** Counts a client connection that closed (with its upstream). */
export function connectionClosed(): void {
  forwarded(CONNECTION_BYTES);
}
