// API keys registered as Kubernetes Secrets (docs/reference.md, Credentials): label
// fngate.dev/api-key=true, data.sha256 = hex digest of the key, annotation
// fngate.dev/functions = comma-separated function ids or "*". A bad Secret is skipped with
// a warning naming it; it never takes other keys down with it.
import type { V1Secret } from '@kubernetes/client-node';
import { isSha256Hex, keyFunctions, KEY_SECRET_FUNCTIONS_ANNOTATION, KEY_SECRET_NAME_PREFIX, SHA256_RULE } from '../../registry/api-key-format.ts';
import type { ApiKeyRecord } from '../../registry/types.ts';
import type { Logger } from '../../telemetry/log.ts';


/** Warned-about Secrets (namespace/name@resourceVersion), so each bad version is logged once. */
const warned = new Set<string>();

export function apiKeysFromSecrets(secrets: Iterable<V1Secret>, log: Logger): ApiKeyRecord[] {
  const records: ApiKeyRecord[] = [];
  for (const secret of secrets) {
    const result = parseKeySecret(secret);
    if (typeof result === 'string') {
      const id = `${secret.metadata?.namespace}/${secret.metadata?.name}@${secret.metadata?.resourceVersion}`;
      if (!warned.has(id)) {
        warned.add(id);
        log.warn('API key Secret ignored', { secret: `${secret.metadata?.namespace}/${secret.metadata?.name}`, error: result });
      }
    } else {
      records.push(result);
    }
  }
  return records;
}

/** The key record a Secret describes, or why it describes none. */
export function parseKeySecret(secret: V1Secret): ApiKeyRecord | string {
  const name = secret.metadata?.name ?? '';
  const encoded = secret.data?.['sha256'];
  if (encoded === undefined) return 'data.sha256: required (hex SHA-256 of the key)';
  const hex = Buffer.from(encoded, 'base64').toString('utf8').trim();
  if (!isSha256Hex(hex)) return `data.sha256: ${SHA256_RULE}`;
  const annotation = secret.metadata?.annotations?.[KEY_SECRET_FUNCTIONS_ANNOTATION];
  if (annotation === undefined) return `metadata.annotations["${KEY_SECRET_FUNCTIONS_ANNOTATION}"]: required (function ids, or *)`;
  const ids = annotation.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (ids.length === 0) return `metadata.annotations["${KEY_SECRET_FUNCTIONS_ANNOTATION}"]: empty (list function ids, or *)`;
  const { functions, bad } = keyFunctions(ids);
  if (bad !== undefined) return `metadata.annotations["${KEY_SECRET_FUNCTIONS_ANNOTATION}"]: ${JSON.stringify(bad)} is not a function id`;
  return {
    // A Secret name is a DNS-1123 name, so the key name (the rest after the prefix) is one too.
    name: name.startsWith(KEY_SECRET_NAME_PREFIX) ? name.slice(KEY_SECRET_NAME_PREFIX.length) : name,
    sha256: hex.toLowerCase(),
    functions,
  };
}
