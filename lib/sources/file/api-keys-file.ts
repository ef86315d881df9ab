// Local-mode API keys (`--api-keys FILE`):
//   keys:
//     - name: alice
//       sha256: <64 hex chars>        # SHA-256 of the key; the key itself is never stored
//       functions: [fn-a, fn-b]       # or "*" (all functions)
import { isKeyName, isSha256Hex, keyFunctions, KEY_NAME_RULE, SHA256_RULE } from '../../registry/api-key-format.ts';
import { ManifestError, fieldChecker } from '../../registry/function-manifest.ts';
import type { ApiKeyRecord } from '../../registry/types.ts';
import { textFileSource } from './text-file-source.ts';
import { locateError, parseYamlFile } from './yaml-file.ts';

/** Validates the parsed document of a keys file. */
export function parseApiKeys(doc: unknown, origin: string): ApiKeyRecord[] {
  const c = fieldChecker(origin);
  const root = c.object(doc, []);
  c.onlyKnown(root, [], ['keys']);
  const list = root['keys'];
  if (list === undefined) c.fail(['keys'], 'required (write `keys: []` for none)');
  if (!Array.isArray(list)) return c.fail(['keys'], 'must be a list');

  const byName = new Set<string>();
  const byHash = new Map<string, string>();
  return list.map((item: unknown, i): ApiKeyRecord => {
    const path = ['keys', i];
    const entry = c.object(item, path);
    c.onlyKnown(entry, path, ['name', 'sha256', 'functions']);

    const name = c.string(entry['name'], [...path, 'name']);
    if (!isKeyName(name)) c.fail([...path, 'name'], `${JSON.stringify(name)} ${KEY_NAME_RULE}`);
    if (byName.has(name)) c.fail([...path, 'name'], `duplicate ${JSON.stringify(name)}`);
    byName.add(name);

    const hex = c.string(entry['sha256'], [...path, 'sha256']);
    if (!isSha256Hex(hex)) c.fail([...path, 'sha256'], SHA256_RULE);
    const sha256 = hex.toLowerCase();
    const owner = byHash.get(sha256);
    if (owner !== undefined) c.fail([...path, 'sha256'], `same key as ${JSON.stringify(owner)}`);
    byHash.set(sha256, name);

    const fp = [...path, 'functions'];
    const raw = entry['functions'];
    if (raw === '*') return { name, sha256, functions: '*' };
    if (raw === undefined || raw === null) c.fail(fp, 'required (a list of function ids, or "*")');
    if (!Array.isArray(raw)) return c.fail(fp, 'must be a list of function ids, or "*"');
    if (raw.length === 0) c.fail(fp, 'must not be empty (list function ids, or "*" for all)');
    const ids = raw.map((id: unknown, j) => (id === '*' ? id : c.id(id, [...fp, j])));
    return { name, sha256, functions: keyFunctions(ids).functions };
  });
}

/** Parses a keys file's text; errors carry `file:line`. */
export function parseApiKeysFile(text: string, file: string): ApiKeyRecord[] {
  const docs = parseYamlFile(text, file);
  const [doc, extra] = docs;
  if (doc === undefined) throw new ManifestError(file, [], 'empty file (write `keys: []` for no keys)');
  if (extra !== undefined) throw new ManifestError(`${file}:${extra.lineOf([]) ?? '?'}`, [], 'expected a single YAML document');
  try {
    return parseApiKeys(doc.value, file);
  } catch (err) {
    throw err instanceof ManifestError ? locateError(err, file, doc) : err;
  }
}

/**
 * The keys file: read at start-up, then watched; an invalid or missing file logs an error and
 * keeps the last good set (revoking means removing the entry).
 */
export const apiKeysFile = textFileSource({
  label: 'api keys file',
  parse: parseApiKeysFile,
  unreadableMessage: 'cannot read api keys file; keeping the last good keys',
  invalidMessage: 'invalid api keys file; keeping the last good keys',
  loadedMessage: 'api keys loaded',
  count: (records) => records.length,
});
