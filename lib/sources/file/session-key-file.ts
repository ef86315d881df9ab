// `--session-key-file`: the secrets that seal session ids, one per line; the first seals,
// all of them open (rotation: add the new secret on top everywhere, drop the old one after
// --session-linger). Re-read when it changes, as a mounted Secret is updated in place.
import { parseSessionSecrets, SessionKeyRing } from '../../sessions/session-token.ts';
import type { Logger } from '../../telemetry/log.ts';
import { readTextFile, watchTextFile, type Closable, type WatchTiming } from '../../files/watch.ts';

/** The key file as read at start-up; its text goes to watchSessionKeys so it is not read and applied twice. */
export interface LoadedSessionKeys {
  readonly keys: SessionKeyRing;
  readonly text: string;
}

/** Reads the key file at start-up; throws naming the file (and line) when it is unusable. */
export async function loadSessionKeys(path: string): Promise<LoadedSessionKeys> {
  const text = await readTextFile(path, '--session-key-file');
  return { keys: SessionKeyRing.fromSecrets(parseSessionSecrets(text, path)), text };
}

/**
 * Calls `onKeys` with the key set after the first read and each valid change, except for
 * `initialText` (what loadSessionKeys read, already in use); a bad edit is logged and the
 * keys in use stay.
 */
export function watchSessionKeys(
  path: string,
  onKeys: (keys: SessionKeyRing) => void,
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
    parse: (text) => SessionKeyRing.fromSecrets(parseSessionSecrets(text, path)),
    apply: (keys) => {
      onKeys(keys);
      log.info('session keys loaded', { file: path, keys: keys.size });
    },
    log,
  });
}
