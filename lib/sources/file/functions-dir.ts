// Local-mode Function source (`--functions DIR`): every *.yaml / *.yml file in a directory,
// each holding one or more `Function` documents.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ManifestError, parseFunctionManifest } from '../../registry/function-manifest.ts';
import type { FunctionSpec } from '../../registry/types.ts';
import type { Logger } from '../../telemetry/log.ts';
import { locateError, parseYamlFile } from './yaml-file.ts';
import { statSignature, watchDirectory } from '../../files/watch.ts';
import type { Closable, WatchTiming } from '../../files/watch.ts';

// Dotfiles are skipped: editor swap files, and Kubernetes ConfigMap mounts' ..data dirs.
const isManifestName = (name: string): boolean => !name.startsWith('.') && /\.ya?ml$/i.test(name);

/** Parses one file's text; errors carry `file:line (document N)`. */
export function parseFunctionsFile(text: string, file: string): FunctionSpec[] {
  const docs = parseYamlFile(text, file);
  return docs.map((doc) => {
    const suffix = docs.length > 1 ? ` (document ${doc.index})` : '';
    try {
      return parseFunctionManifest(doc.value, file + suffix);
    } catch (err) {
      throw err instanceof ManifestError ? locateError(err, file, doc, suffix) : err;
    }
  });
}

/** Manifest file names in `dir`, sorted so the result order is stable. */
async function listManifestFiles(dir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`functions directory ${dir}: does not exist`);
    if (code === 'ENOTDIR') throw new Error(`functions directory ${dir}: is not a directory`);
    throw new Error(`functions directory ${dir}: ${(err as Error).message}`);
  }
  // Names, not dirents: ConfigMap mounts present files as symlinks, which must count.
  return entries.filter(isManifestName).sort();
}

interface FileState {
  /** statSignature when last read, so an unchanged (even if bad) file is not re-read. */
  signature: string | undefined;
  /** Text last read, good or bad: the same bad text is reported once. */
  text: string | undefined;
  /** Functions of the last version that parsed. */
  specs: readonly FunctionSpec[];
}

/** What a load read: its Functions, and each file's state for a watcher to start from. */
export interface FunctionsDirSnapshot {
  readonly specs: FunctionSpec[];
  readonly files: ReadonlyMap<string, Readonly<FileState>>;
}

function logLoaded(log: Logger, file: string, specs: readonly FunctionSpec[]): void {
  log.info('functions file loaded', { file, functions: specs.map((s) => s.functionId) });
}

/**
 * Reads every manifest file; the first invalid one throws (ManifestError naming it). With a
 * `log`, each file read is logged as the watcher logs a reload.
 */
export async function loadFunctionsDir(dir: string, log?: Logger): Promise<FunctionsDirSnapshot> {
  const specs: FunctionSpec[] = [];
  const files = new Map<string, FileState>();
  for (const name of await listManifestFiles(dir)) {
    const file = join(dir, name);
    const s = await stat(file);
    if (!s.isFile()) continue;
    const text = await readFile(file, 'utf8');
    const state = { signature: statSignature(s), text, specs: parseFunctionsFile(text, file) };
    files.set(name, state);
    specs.push(...state.specs);
    if (log) logLoaded(log, file, state.specs);
  }
  return { specs, files };
}

/**
 * Calls `onChange` with the whole directory's Functions after the first scan and after
 * every change. A file that became invalid keeps its last good content (an error is
 * logged), so one bad edit does not take a live function away; a deleted file drops its
 * Functions. Given the start-up load's `snapshot`, it starts from that instead: files not
 * changed since are not parsed or reported again (one written in the last two seconds is
 * read once more, to compare its text).
 */
export function watchFunctionsDir(
  dir: string,
  onChange: (specs: FunctionSpec[]) => void,
  log: Logger,
  timing: WatchTiming = {},
  snapshot?: FunctionsDirSnapshot,
): Closable {
  const files = new Map<string, FileState>();
  for (const [name, state] of snapshot?.files ?? []) files.set(name, { ...state });
  let first = snapshot === undefined;
  let dirMissingLogged = false;

  const check = async (): Promise<(() => void) | undefined> => {
    let names: string[];
    try {
      names = await listManifestFiles(dir);
      dirMissingLogged = false;
    } catch (err) {
      // Probably a remount or a replace in progress: keep serving what we have.
      if (!dirMissingLogged) log.error('cannot list functions directory; keeping current functions', { dir, error: (err as Error).message });
      dirMissingLogged = true;
      return undefined;
    }
    let changed = first;
    first = false;
    const present = new Set<string>();
    for (const name of names) {
      const file = join(dir, name);
      let signature: string | undefined;
      try {
        const s = await stat(file);
        if (!s.isFile()) continue;
        signature = statSignature(s, timing.clock);
      } catch {
        continue; // vanished between readdir and stat; treated as deleted
      }
      present.add(name);
      const state = files.get(name) ?? { signature: undefined, text: undefined, specs: [] };
      files.set(name, state);
      if (signature !== undefined && state.signature === signature) continue;
      state.signature = signature;
      try {
        const text = await readFile(file, 'utf8');
        if (text === state.text) continue;
        state.text = text;
        state.specs = parseFunctionsFile(text, file);
        changed = true;
        logLoaded(log, file, state.specs);
      } catch (err) {
        const kept = state.specs.map((s) => s.functionId);
        log.error('invalid functions file; keeping its last good content', { file, error: (err as Error).message, kept });
      }
    }
    for (const [name, state] of files) {
      if (present.has(name)) continue;
      files.delete(name);
      if (state.specs.length > 0) changed = true;
      log.info('functions file removed', { file: join(dir, name), functions: state.specs.map((s) => s.functionId) });
    }
    if (!changed) return undefined;
    const specs = [...files.keys()].sort().flatMap((name) => files.get(name)?.specs ?? []);
    return () => onChange(specs);
  };

  return watchDirectory({
    dir,
    debounceMs: timing.debounceMs ?? 100,
    pollMs: timing.pollMs ?? 2000,
    fsWatch: timing.fsWatch ?? true,
    clock: timing.clock,
    // Every event: Kubernetes ConfigMap updates only touch the ..data entries.
    accept: () => true,
    check,
    log,
  });
}
