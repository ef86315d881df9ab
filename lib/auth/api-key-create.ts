// `fngate keys create`: a new random API key and the two ways to register it (a keys-file
// entry or a Kubernetes Secret). Only the SHA-256 is ever stored; the key is shown once.
import { createHash, randomBytes } from 'node:crypto';
import { Document, isSeq, stringify } from 'yaml';
import { isKeyName, keyFunctions, KEY_NAME_RULE, KEY_SECRET_FUNCTIONS_ANNOTATION, KEY_SECRET_LABEL, KEY_SECRET_NAME_PREFIX } from '../registry/api-key-format.ts';
import { ID_RULE } from '../config/names.ts';
import type { ApiKeyRecord } from '../registry/types.ts';

/** Recognisable in logs, configs and secret scanners. */
export const API_KEY_PREFIX = 'fngk_';

/** Lower-case hex SHA-256, as stored in key files and Secrets and looked up per request. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Throws on a bad name or function list, before any key is made. */
export function createApiKey(opts: { name: string; functions: '*' | string[] }): { key: string; record: ApiKeyRecord } {
  const { name, functions } = opts;
  if (!isKeyName(name)) throw new Error(`key name ${JSON.stringify(name)}: ${KEY_NAME_RULE}`);
  let allowed: ApiKeyRecord['functions'] = '*';
  if (functions !== '*') {
    if (functions.length === 0) throw new Error('functions: give at least one function id, or "*" for all');
    const checked = keyFunctions(functions);
    if (checked.bad !== undefined) throw new Error(`function id ${JSON.stringify(checked.bad)}: ${ID_RULE}`);
    allowed = checked.functions;
  }
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  return { key, record: { name, sha256: hashApiKey(key), functions: allowed } };
}

const functionList = (record: ApiKeyRecord): string[] => (record.functions === '*' ? ['*'] : [...record.functions]);

/** A list item to paste under `keys:` in a keys file (2-space indented). */
export function renderKeyFileRecord(record: ApiKeyRecord): string {
  const doc = new Document([{ name: record.name, sha256: record.sha256, functions: functionList(record) }]);
  // Flow style for the function list keeps one key to three lines.
  const list = doc.getIn([0, 'functions'], true);
  if (isSeq(list)) list.flow = true;
  return doc.toString({ flowCollectionPadding: false }).replace(/^(?=.)/gm, '  ');
}

/** A Kubernetes Secret registering the key (only its hash) with the gateway. */
export function renderKeySecret(record: ApiKeyRecord, namespace?: string): string {
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: KEY_SECRET_NAME_PREFIX + record.name,
      ...(namespace === undefined ? {} : { namespace }),
      labels: { [KEY_SECRET_LABEL]: 'true' },
      annotations: { [KEY_SECRET_FUNCTIONS_ANNOTATION]: functionList(record).join(',') },
    },
    type: 'Opaque',
    data: { sha256: Buffer.from(record.sha256, 'utf8').toString('base64') },
  };
  return stringify(secret);
}
