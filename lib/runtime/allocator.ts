// Which malloc this process runs on, for the start-up log. The image preloads mimalloc
// (Dockerfile, LD_PRELOAD): chosen when node:http2's C++ allocated for every stream and read and
// glibc's malloc cost an eighth of the CPU per RPC (docs/performance.md). The log line lets an
// operator see whether the preload took.
import { readFileSync } from 'node:fs';

const PRELOADABLE = [
  ['mimalloc', '/libmimalloc'],
  ['jemalloc', '/libjemalloc'],
  ['tcmalloc', '/libtcmalloc'],
] as const;

/** "mimalloc", "jemalloc" or "tcmalloc" when one is mapped into the process, else "system". */
export function allocatorInUse(mapsPath = '/proc/self/maps'): string {
  let maps: string;
  try {
    maps = readFileSync(mapsPath, 'utf8');
  } catch {
    return 'system'; // Not Linux: no preload either.
  }
  for (const [name, file] of PRELOADABLE) if (maps.includes(file)) return name;
  return 'system';
}
