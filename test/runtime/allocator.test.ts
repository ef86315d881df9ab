// Which malloc the start-up line reports (lib/runtime/allocator.ts). The image's own preload is
// checked end to end by test/image/image.test.ts; here, the reading of a maps file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { allocatorInUse } from '../../lib/runtime/allocator.ts';

const dir = mkdtempSync(join(tmpdir(), 'fngate-maps-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function mapsWith(...libs: string[]): string {
  const file = join(dir, `maps-${libs.length}-${Math.random().toString(36).slice(2)}`);
  const line = (path: string, i: number) => `7f00000${i}000-7f00000${i}fff r-xp 00000000 08:01 ${1000 + i}   ${path}`;
  writeFileSync(file, ['/usr/bin/node', ...libs, '/usr/lib/x86_64-linux-gnu/libc.so.6', '[heap]'].map(line).join('\n'));
  return file;
}

t.equal(allocatorInUse(mapsWith('/usr/local/lib/fngate/libmimalloc.so.2')), 'mimalloc', 'the image\'s mimalloc');
t.equal(allocatorInUse(mapsWith('/usr/lib/x86_64-linux-gnu/libjemalloc.so.2')), 'jemalloc');
t.equal(allocatorInUse(mapsWith('/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4')), 'tcmalloc');
t.equal(allocatorInUse(mapsWith()), 'system', 'nothing preloaded: glibc\'s malloc');
t.equal(allocatorInUse(join(dir, 'no-such-file')), 'system', 'no /proc (not Linux): system');
// make test runs without LD_PRELOAD.
t.equal(allocatorInUse(), 'system', 'this test process, from /proc/self/maps');
