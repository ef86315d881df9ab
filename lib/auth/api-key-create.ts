// `fngate keys create`: a new random API key and the two ways to register it (a keys-file
// entry or a Kubernetes Secret). Only the SHA-256 is ever stored; the key is shown once.
import { createHash, randomBytes } from 'node:crypto';
import { Document, isSeq, stringify } from 'yaml';
import { DNS1123_SUBDOMAIN, ID_PATTERN, ID_RULE } from '../registry/function-manifest.ts';
import type { ApiKeyRecord } from '../registry/types.ts';

/** Recognisable in logs, configs and secret scanners. */
export const API_KEY_PREFIX = 'fngk_';
export const KEY_SECRET_LABEL = 'fngate.dev/api-key';
export const KEY_SECRET_FUNCTIONS_ANNOTATION = 'fngate.dev/functions';
export const KEY_SECRET_NAME_PREFIX = 'fngate-key-';

// The name also names the Secret (`fngate-key-<name>`, a DNS-1123 subdomain of <= 253).
const KEY_NAME_MAX = 253 - KEY_SECRET_NAME_PREFIX.length;

/** Lower-case hex SHA-256, as stored in key files and Secrets and looked up per request. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Throws on a bad name or function list, before any key is made. */
export function createApiKey(opts: { name: string; functions: '*' | string[] }): { key: string; record: ApiKeyRecord } {
  const { name, functions } = opts;
  if (name.length > KEY_NAME_MAX || !DNS1123_SUBDOMAIN.test(name)) {
    throw new Error(`key name ${JSON.stringify(name)}: must be lower-case a-z, 0-9, '-', '.' (at most ${KEY_NAME_MAX} characters; it also names the Secret)`);
  }
  if (functions !== '*') {
    if (functions.length === 0) throw new Error('functions: give at least one function id, or "*" for all');
    const bad = functions.find((id) => id !== '*' && !ID_PATTERN.test(id));
    if (bad !== undefined) throw new Error(`function id ${JSON.stringify(bad)}: ${ID_RULE}`);
  }
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  const allowed = functions === '*' || functions.includes('*') ? '*' : new Set(functions);
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
