// lib/h2's server side against h2spec: every case of its generic, http2 and hpack sections, over
// h2c and over TLS (ALPN h2), on a small server built on ServerConnection (support/h2-server.ts).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTlsCert } from '../helpers/files.ts';
import { describe, runH2spec } from '../helpers/h2spec.ts';
import { startH2Server } from './support/h2-server.ts';

const dir = t.testdir({});
const cert = makeTlsCert(join(dir, 'tls'));

for (const useTls of [false, true]) {
  t.test(`h2spec against lib/h2 over ${useTls ? 'TLS' : 'h2c'}`, async (t) => {
    const server = await startH2Server(useTls ? { tls: { cert: readFileSync(cert.cert), key: readFileSync(cert.key) } } : {});
    t.teardown(() => server.close());
    const run = await runH2spec(server.address, useTls, join(dir, `lib-h2-${useTls ? 'tls' : 'h2c'}.xml`));
    const failed = run.cases.filter((c) => c.failed);
    t.comment(`${run.cases.length} cases, ${run.cases.length - failed.length} passed`);
    t.same(failed.map(describe), [], `every h2spec case passes (${run.cases.length})`);
    t.equal(run.cases.filter((c) => c.skipped).length, 0, 'none skipped');
    t.same(server.internalErrors, [], 'no handler threw');
  });
}
