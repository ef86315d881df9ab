// `--session-key-file`: the secrets that seal session ids, one per line; the first seals,
// all of them open (rotation: add the new secret on top everywhere, drop the old one after
// --session-linger). Re-read when it changes, as a mounted Secret is updated in place. This
// source only reads the secrets, in file order; serve turns them into the keys sessions seal with.
import { textFileSource } from './text-file-source.ts';

/** Shortest secret accepted: 32 characters of a random string carry well over 128 bits. */
const MIN_SECRET_LENGTH = 32;

/**
 * Reads a session key file's text: one secret per line, blank lines and `#` comments skipped,
 * each at least MIN_SECRET_LENGTH characters. Throws naming the line that is wrong.
 */
export function parseSessionSecrets(text: string, origin: string): string[] {
  const secrets: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.length < MIN_SECRET_LENGTH) {
      throw new Error(`${origin}:${i + 1}: session key is ${line.length} characters; at least ${MIN_SECRET_LENGTH} are needed`);
    }
    secrets.push(line);
  }
  if (secrets.length === 0) throw new Error(`${origin}: no session key in the file (one secret per line, at least ${MIN_SECRET_LENGTH} characters)`);
  return secrets;
}

/** The key file: read at start-up, then watched; a bad edit is logged and the secrets in use stay. */
export const sessionKeyFile = textFileSource({
  label: '--session-key-file',
  parse: parseSessionSecrets,
  unreadableMessage: 'session key file unreadable; keeping the keys in use',
  invalidMessage: 'session key file rejected; keeping the keys in use',
  loadedMessage: 'session keys loaded',
  count: (secrets) => secrets.length,
});
