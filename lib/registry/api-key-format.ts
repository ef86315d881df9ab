// How an API key is written down, wherever it is: its name, its hash, the functions it may
// call, and the Kubernetes Secret that carries it. `fngate keys create`, the keys file and the
// Secret source all check with these, so a key moves between them unchanged.
import { ID_PATTERN, isDns1123Subdomain } from '../config/names.ts';

export const KEY_SECRET_LABEL = 'fngate.dev/api-key';
export const KEY_SECRET_SELECTOR = `${KEY_SECRET_LABEL}=true`;
export const KEY_SECRET_FUNCTIONS_ANNOTATION = 'fngate.dev/functions';
/** `fngate keys create --output secret` names the Secret fngate-key-<key name>. */
export const KEY_SECRET_NAME_PREFIX = 'fngate-key-';

/**
 * Key names are DNS-1123 subdomains short enough to name their Secret: the same name works in
 * a keys file and as a Secret, and it is safe where it travels (the `fngate-subject` header,
 * logs, metrics).
 */
export const KEY_NAME_MAX = 253 - KEY_SECRET_NAME_PREFIX.length;
export const KEY_NAME_RULE = `must be lower-case a-z, 0-9, '-', '.' (a DNS-1123 name of at most ${KEY_NAME_MAX} characters; it also names the key's Secret)`;

export function isKeyName(name: string): boolean {
  return isDns1123Subdomain(name, KEY_NAME_MAX);
}

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
export const SHA256_RULE = 'must be 64 hex characters (the SHA-256 of the key)';

export function isSha256Hex(text: string): boolean {
  return SHA256_HEX.test(text);
}

/** Function ids a key may call: '*' (all), or the ids; the first id that is not one, if any. */
export function keyFunctions(ids: readonly string[]): { functions: '*' | ReadonlySet<string>; bad: string | undefined } {
  const bad = ids.find((id) => id !== '*' && !ID_PATTERN.test(id));
  return { functions: ids.includes('*') ? '*' : new Set(ids), bad };
}
