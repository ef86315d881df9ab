// `--session-key-file`: the secrets that seal session ids, one per line; the first seals,
// all of them open (rotation: add the new secret on top everywhere, drop the old one after
// --session-linger). Re-read when it changes, as a mounted Secret is updated in place. This
// source only reads the secrets; serve turns them into the keys the sessions seal with.
import type { Logger } from '../../telemetry/log.ts';
import { readTextFile, watchTextFile, type Closable, type WatchTiming } from '../../files/watch.ts';

/** Shortest secret accepted: 32 characters of a random string carry well over 128 bits. */
const MIN_SECRET_LENGTH = 32;

/** The key file as read at start-up; its text goes to watchSessionSecrets so it is not read and applied twice. */
export interface LoadedSessionSecrets {
  /** In file order: the first seals. */
  readonly secrets: string[];
  readonly text: string;
}

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

/** Reads the key file at start-up; throws naming the file (and line) when it is unusable. */
export async function loadSessionSecrets(path: string): Promise<LoadedSessionSecrets> {
  const text = await readTextFile(path, '--session-key-file');
  return { secrets: parseSessionSecrets(text, path), text };
}

/**
 * Calls `onSecrets` with the secrets after the first read and each valid change, except for
 * `initialText` (what loadSessionSecrets read, already in use); a bad edit is logged and the
 * secrets in use stay.
 */
export function watchSessionSecrets(
  path: string,
  onSecrets: (secrets: string[]) => void,
  log: Logger,
  timing: WatchTiming = {},
  initialText?: string,
): Closable {
  return watchTextFile({
    path,
    timing,
    initialText,
    unreadableMessage: 'session key file unreadable; keeping the keys in use',
    invalidMessage: 'session key file rejected; keeping the keys in use',
    parse: (text) => parseSessionSecrets(text, path),
    apply: (secrets) => {
      onSecrets(secrets);
      log.info('session keys loaded', { file: path, keys: secrets.length });
    },
    log,
  });
}
