// Change detection for files the gateway reads (Function and key files, TLS certificates, JWKS): fs.watch on a directory for a prompt reaction,
// plus a periodic check because inotify misses some replacements (renames across mounts,
// Kubernetes' ..data symlink swaps, network filesystems). Both only *trigger* `check`,
// which decides by itself whether anything really changed.
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { realClock, type Clock, type Timer } from '../runtime/clock.ts';
import type { Logger } from '../telemetry/log.ts';

export interface WatchTiming {
  /** Quiet time after the last fs event before checking (editors write in bursts). */
  readonly debounceMs?: number;
  /** Safety-net check interval. */
  readonly pollMs?: number;
  /** false = poll only (tests of the safety net). */
  readonly fsWatch?: boolean;
  /** Debounce and poll timers, and "now" for recent mtimes; default the real clock. */
  readonly clock?: Clock;
}

export interface DirWatchOptions {
  readonly dir: string;
  readonly debounceMs: number;
  readonly pollMs: number;
  readonly fsWatch: boolean;
  /** Which entry names' events matter; null names (some platforms) always do. */
  readonly accept: (filename: string) => boolean;
  /**
   * Looks for changes; returns the notification to deliver, if any (dropped if the watch
   * was closed meanwhile). Never runs concurrently with itself: a trigger during a run
   * queues one more run.
   */
  readonly check: () => Promise<(() => void) | undefined>;
  readonly log: Logger;
  readonly clock?: Clock | undefined;
}

export interface Closable {
  close(): void;
}

// Some filesystems keep timestamps to the second or coarser, so a same-size rewrite soon
// after the last one can leave the stat identity unchanged (git's "racy clean" problem).
const RACY_MS = 2000;

/**
 * A stat-based identity that changes when a file is rewritten or replaced; undefined
 * (= "read it again") while the file's mtime is too recent to be trusted.
 */
export function statSignature(s: { ino: number; size: number; mtimeMs: number; ctimeMs: number }, clock: Clock = realClock): string | undefined {
  if (clock.wall() - s.mtimeMs < RACY_MS) return undefined;
  return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

/** Runs `check` once right away, then whenever the directory changes. */
export function watchDirectory(opts: DirWatchOptions): Closable {
  const { dir, log } = opts;
  const clock = opts.clock ?? realClock;
  let closed = false;
  let running = false;
  let again = false;
  let debounce: Timer | undefined;
  let watcher: FSWatcher | undefined;
  let watchedIno: number | undefined;
  let attaching = false;
  let watchFailureLogged = false;

  const run = async (): Promise<void> => {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      const notify = await opts.check();
      if (!closed) notify?.();
    } catch (err) {
      log.error('file source check failed', { dir, error: String(err) });
    } finally {
      running = false;
      if (again) {
        again = false;
        void run();
      }
    }
  };

  const stopWatcher = (): void => {
    watcher?.close();
    watcher = undefined;
  };

  // (Re)attach fs.watch; a directory replaced by a new one (new inode) needs a new watch.
  const ensureWatcher = async (): Promise<void> => {
    if (!opts.fsWatch || attaching) return;
    attaching = true;
    let ino: number;
    try {
      ino = (await stat(dir)).ino;
    } catch {
      stopWatcher();
      return; // gone for now; the poll keeps trying
    } finally {
      attaching = false;
    }
    if (closed || (watcher !== undefined && ino === watchedIno)) return;
    stopWatcher();
    try {
      const w = watch(dir, { persistent: false }, (_event, filename) => {
        if (filename !== null && !opts.accept(filename)) return;
        clock.clearTimeout(debounce);
        debounce = clock.setTimeout(() => void run(), opts.debounceMs).unref();
      });
      w.on('error', (err) => {
        log.warn('file watch failed; relying on periodic checks', { dir, error: String(err) });
        w.close();
        if (watcher === w) watcher = undefined;
      });
      watcher = w;
      watchedIno = ino;
      watchFailureLogged = false;
    } catch (err) {
      // E.g. the inotify watch limit: retried every poll, reported once.
      if (!watchFailureLogged) log.warn('cannot watch directory; relying on periodic checks', { dir, error: String(err) });
      watchFailureLogged = true;
    }
  };

  const poll = clock.setInterval(() => {
    void ensureWatcher();
    void run();
  }, opts.pollMs).unref();
  void ensureWatcher();
  void run();

  return {
    close() {
      closed = true;
      clock.clearTimeout(poll);
      clock.clearTimeout(debounce);
      stopWatcher();
    },
  };
}

/** Reads a file that must be there (startup): throws "<label> <path>: does not exist" or the read error. */
export async function readTextFile(path: string, label: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${label} ${path}: ${code === 'ENOENT' ? 'does not exist' : (err as Error).message}`);
  }
}

export interface TextFileWatchOptions<T> {
  readonly path: string;
  readonly timing: WatchTiming;
  /** Logged once (until the file is readable again) while the file cannot be read. */
  readonly unreadableMessage: string;
  /** Logged when a changed text does not parse; what is in use stays. */
  readonly invalidMessage: string;
  /** Text already in use (read at startup): not delivered again. */
  readonly initialText?: string;
  /**
   * Parses each text that differs from the last one read, good or bad (so the same bad text
   * is reported once); throws naming what is wrong.
   */
  readonly parse: (text: string) => T;
  /** Puts a text that parsed into use. */
  readonly apply: (value: T) => void;
  readonly log: Logger;
}

/**
 * Watches one text file. Its directory is watched, not the file: editors and Kubernetes
 * replace files by rename, which a watch on the old inode would never see. The file is read
 * again only when its stat signature changed.
 */
export function watchTextFile<T>(opts: TextFileWatchOptions<T>): Closable {
  const { path, timing, log } = opts;
  const base = basename(path);
  let signature: string | undefined;
  let unreadable = false;
  let lastText = opts.initialText;

  const check = async (): Promise<(() => void) | undefined> => {
    let text: string;
    try {
      const next = statSignature(await stat(path), timing.clock);
      if (next !== undefined && next === signature) return undefined;
      signature = next;
      text = await readFile(path, 'utf8');
      unreadable = false;
    } catch (err) {
      if (!unreadable) log.error(opts.unreadableMessage, { file: path, error: (err as Error).message });
      unreadable = true;
      signature = undefined;
      return undefined;
    }
    if (text === lastText) return undefined;
    lastText = text;
    let value: T;
    try {
      value = opts.parse(text);
    } catch (err) {
      log.error(opts.invalidMessage, { file: path, error: (err as Error).message });
      return undefined;
    }
    return () => opts.apply(value);
  };

  return watchDirectory({
    dir: dirname(path),
    debounceMs: timing.debounceMs ?? 100,
    pollMs: timing.pollMs ?? 1000,
    fsWatch: timing.fsWatch ?? true,
    clock: timing.clock,
    // The file itself, or Kubernetes' atomic ..data swap behind a mounted Secret/ConfigMap.
    accept: (name) => name === base || name.startsWith('..'),
    check,
    log,
  });
}
