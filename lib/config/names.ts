// The name rules the gateway checks, each written once: function and version ids as clients
// send them, and Kubernetes' DNS-1123 names, so a file that loads locally also passes
// `kubectl apply`. Beside the duration format at the bottom layer: the flags (--namespace),
// Function files, key files and request metadata all check them.

/** Function and version ids, as clients send them in `function-id` metadata. */
export const ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;
export const ID_RULE = 'must be 1-128 characters of A-Za-z0-9._-';

/** Object names (a Function, a Secret, a Deployment): at most 253 characters. */
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Namespace names: at most 63 characters. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function isDns1123Subdomain(name: string, max = 253): boolean {
  return name.length <= max && DNS1123_SUBDOMAIN.test(name);
}

export function isDns1123Label(name: string): boolean {
  return name.length <= 63 && DNS1123_LABEL.test(name);
}
