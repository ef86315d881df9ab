// A session key file for a gateway under test, so the test can open the nvcf-reqid tokens the
// gateway hands out. Tokens are resealed once a session's reseal period has passed, so two
// tokens of one session may differ: "same session" means the same sid inside them.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SessionKeyRing } from '../../lib/sessions/session-token.ts';

export interface SessionKeys {
  /** The file, for --session-key-file. */
  path: string;
  /**
   * The short session id inside a token the gateway sent; for anything else a marker unequal
   * to every other, so "same session" never holds for two missing or foreign ids.
   */
  sidOf(token: unknown): string;
}

/** Writes `<dir>/session.key` with one random secret. */
export function writeSessionKeys(dir: string): SessionKeys {
  const secret = randomBytes(32).toString('hex');
  const path = join(dir, 'session.key');
  writeFileSync(path, `${secret}\n`);
  const ring = SessionKeyRing.fromSecrets([secret]);
  let notIds = 0;
  const sidOf = (token: unknown): string =>
    (typeof token === 'string' ? ring.open(token)?.sid : undefined) ?? `(not a session id: ${String(token)}, #${++notIds})`;
  return { path, sidOf };
}
