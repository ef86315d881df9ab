// Reads the YAML files of the file sources, keeping enough position information that a
// validation error can point at `file:line` instead of leaving the operator to search.
import { LineCounter, isNode, parseAllDocuments } from 'yaml';
import { ManifestError } from '../../registry/function-manifest.ts';
import type { FieldPath } from '../../registry/function-manifest.ts';

export interface YamlDocument {
  /** 1-based position in the file, counting every `---` document (as a reader would). */
  readonly index: number;
  /** Plain JS value (mappings -> objects, sequences -> arrays). */
  readonly value: unknown;
  /** Line of the node at `path`, or of its nearest existing ancestor (a missing field). */
  lineOf(path: FieldPath): number | undefined;
}

/** Parses every non-empty document; a syntax error throws ManifestError `file:line: ...`. */
export function parseYamlFile(text: string, file: string): YamlDocument[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line;
  const out: YamlDocument[] = [];
  for (const [i, doc] of docs.entries()) {
    const error = doc.errors[0];
    if (error !== undefined) {
      throw new ManifestError(`${file}:${lineAt(error.pos[0])}`, [], `invalid YAML: ${error.message}`);
    }
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (err) {
      // e.g. an alias bomb ("Excessive alias count")
      throw new ManifestError(file, [], `invalid YAML: ${(err as Error).message}`);
    }
    // `---` followed by nothing or only comments: nothing to validate.
    if (value === null || value === undefined) continue;
    out.push({
      index: i + 1,
      value,
      lineOf(path) {
        for (let n = path.length; n >= 0; n--) {
          const node: unknown = doc.getIn(path.slice(0, n), true);
          const start = isNode(node) ? node.range?.[0] : undefined;
          if (start !== undefined) return lineAt(start);
        }
        return undefined;
      },
    });
  }
  return out;
}

/** Re-issues a validation error from `doc` with its origin pointing at `file:line`. */
export function locateError(err: ManifestError, file: string, doc: YamlDocument, suffix = ''): ManifestError {
  const line = doc.lineOf(err.path);
  return new ManifestError(`${file}${line === undefined ? '' : `:${line}`}${suffix}`, err.path, err.reason);
}
