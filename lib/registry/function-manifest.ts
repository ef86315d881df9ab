// Validates a `Function` manifest (docs/reference.md, Functions) into a FunctionSpec. The same
// rules serve local files and Kubernetes objects, so a manifest that works in one works
// in the other; every rejection names the field so operators can fix it without guessing.
import { isIPv4, isIPv6 } from 'node:net';
import { parseDuration } from '../config/duration.ts';
import { ID_PATTERN, ID_RULE, isDns1123Label, isDns1123Subdomain } from '../config/names.ts';
import { NO_SCALING, type Endpoint, type FunctionSpec, type FunctionVersionSpec, type ScaleTarget, type ScalingSpec, type VersionBackend } from './types.ts';

export const FUNCTION_API_VERSION = 'fngate.dev/v1alpha1';
export const FUNCTION_KIND = 'Function';

/** A path into a document: object keys and list indexes. */
export type FieldPath = readonly (string | number)[];

/** `spec.versions[1].versionId`; keys that are not plain names are quoted. */
export function formatFieldPath(path: FieldPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** A bad manifest or source file: `<origin>: <field path>: <reason>`. */
export class ManifestError extends Error {
  readonly origin: string;
  readonly path: FieldPath;
  readonly reason: string;

  constructor(origin: string, path: FieldPath, reason: string) {
    const field = formatFieldPath(path);
    super(field === '' ? `${origin}: ${reason}` : `${origin}: ${field}: ${reason}`);
    this.name = 'ManifestError';
    this.origin = origin;
    this.path = path;
    this.reason = reason;
  }
}

export type PlainObject = Record<string, unknown>;

export function isPlainObject(value: unknown): value is PlainObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Kubernetes name rules beyond DNS-1123 (names.ts), so a file that loads locally also passes `kubectl apply`.
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;
const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

/**
 * `host:port` or `[v6]:port` -> Endpoint, or undefined if it is not one. Hosts are
 * lower-cased so the key identifies the endpoint however it was spelled.
 */
export function parseEndpointAddress(text: string): Endpoint | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  const v6 = m[1];
  if (v6 !== undefined) {
    if (!isIPv6(v6)) return undefined;
    const host = v6.toLowerCase();
    return { host, port, key: `[${host}]:${port}` };
  }
  const host = (m[2] ?? '').toLowerCase();
  if (host.length > 253 || !HOSTNAME.test(host)) return undefined;
  // All-numeric dotted names are meant as IPv4 addresses; do not let 300.1.1.1 through as a name.
  if (/^[\d.]+$/.test(host) && !isIPv4(host)) return undefined;
  return { host, port, key: `${host}:${port}` };
}

/** Shared field checks for YAML-shaped input; each throws ManifestError naming the field. */
export interface FieldChecker {
  fail(path: FieldPath, reason: string): never;
  /** A mapping; missing -> "required". */
  object(value: unknown, path: FieldPath): PlainObject;
  /** Rejects keys outside `known` (typos would otherwise be silently ignored). */
  onlyKnown(obj: PlainObject, path: FieldPath, known: readonly string[]): void;
  /** A non-empty string. */
  string(value: unknown, path: FieldPath): string;
  /** A function or version id. */
  id(value: unknown, path: FieldPath): string;
}

export function fieldChecker(origin: string): FieldChecker {
  const fail = (path: FieldPath, reason: string): never => {
    throw new ManifestError(origin, path, reason);
  };
  const string = (value: unknown, path: FieldPath): string => {
    if (value === undefined || value === null || value === '') return fail(path, 'required');
    // A YAML number such as `functionId: 12345` would silently change form, so insist on quotes.
    return typeof value === 'string' ? value : fail(path, 'must be a string (quote it)');
  };
  return {
    fail,
    string,
    object: (value, path) =>
      isPlainObject(value) ? value : fail(path, value === undefined || value === null ? 'required' : 'must be a mapping'),
    onlyKnown: (obj, path, known) => {
      for (const key of Object.keys(obj)) {
        if (!known.includes(key)) fail([...path, key], `unknown field (expected one of: ${known.join(', ')})`);
      }
    },
    id: (value, path) => {
      const s = string(value, path);
      return ID_PATTERN.test(s) ? s : fail(path, `${JSON.stringify(s)} ${ID_RULE}`);
    },
  };
}

const isAbsent = (value: unknown): value is undefined | null => value === undefined || value === null;

/** Throws ManifestError for the first problem found; `status` is ignored. */
export function parseFunctionManifest(doc: unknown, origin: string): FunctionSpec {
  const c = fieldChecker(origin);

  const root = c.object(doc, []);
  c.onlyKnown(root, [], ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  const apiVersion = c.string(root['apiVersion'], ['apiVersion']);
  if (apiVersion !== FUNCTION_API_VERSION) c.fail(['apiVersion'], `must be ${FUNCTION_API_VERSION}, not ${JSON.stringify(apiVersion)}`);
  const kind = c.string(root['kind'], ['kind']);
  if (kind !== FUNCTION_KIND) c.fail(['kind'], `must be ${FUNCTION_KIND}, not ${JSON.stringify(kind)}`);

  // Other metadata (labels, uid, managedFields...) is Kubernetes' business, not ours.
  const metadata = c.object(root['metadata'], ['metadata']);
  const name = c.string(metadata['name'], ['metadata', 'name']);
  if (!isDns1123Subdomain(name)) {
    c.fail(['metadata', 'name'], `${JSON.stringify(name)} must be a DNS-1123 subdomain (lower-case a-z, 0-9, '-', '.'; at most 253 characters)`);
  }
  const namespace = isAbsent(metadata['namespace']) ? 'default' : c.string(metadata['namespace'], ['metadata', 'namespace']);
  if (!isDns1123Label(namespace)) {
    c.fail(['metadata', 'namespace'], `${JSON.stringify(namespace)} must be a DNS-1123 label (lower-case a-z, 0-9, '-'; at most 63 characters)`);
  }

  const spec = c.object(root['spec'], ['spec']);
  c.onlyKnown(spec, ['spec'], ['functionId', 'activeVersion', 'maxSessionsPerEndpoint', 'scaling', 'versions']);
  const functionId = c.id(spec['functionId'], ['spec', 'functionId']);
  const activeVersion = c.string(spec['activeVersion'], ['spec', 'activeVersion']);

  const maxRaw = spec['maxSessionsPerEndpoint'];
  const maxSessionsPerEndpoint = isAbsent(maxRaw) ? 0 : maxRaw;
  if (typeof maxSessionsPerEndpoint !== 'number' || !Number.isSafeInteger(maxSessionsPerEndpoint) || maxSessionsPerEndpoint < 0) {
    return c.fail(['spec', 'maxSessionsPerEndpoint'], 'must be an integer >= 0 (0 = unlimited)');
  }

  const versionsRaw = spec['versions'];
  if (isAbsent(versionsRaw)) c.fail(['spec', 'versions'], 'required');
  if (!Array.isArray(versionsRaw)) return c.fail(['spec', 'versions'], 'must be a list');
  if (versionsRaw.length === 0) c.fail(['spec', 'versions'], 'must list at least one version');

  const versions: FunctionVersionSpec[] = [];
  const seen = new Set<string>();
  versionsRaw.forEach((item: unknown, i) => {
    const path = ['spec', 'versions', i];
    const v = c.object(item, path);
    c.onlyKnown(v, path, ['versionId', 'service', 'endpoints', 'scaleTargetRef']);
    const versionId = c.id(v['versionId'], [...path, 'versionId']);
    if (seen.has(versionId)) c.fail([...path, 'versionId'], `duplicate ${JSON.stringify(versionId)}`);
    seen.add(versionId);
    const scaleTarget = isAbsent(v['scaleTargetRef']) ? undefined : parseScaleTarget(v['scaleTargetRef'], [...path, 'scaleTargetRef'], c);
    versions.push({ versionId, backend: parseBackend(v, path, c), scaleTarget });
  });

  if (!seen.has(activeVersion)) {
    c.fail(['spec', 'activeVersion'], `${JSON.stringify(activeVersion)} names no version (versions: ${[...seen].join(', ')})`);
  }

  const scaling = isAbsent(spec['scaling']) ? defaultScaling(maxSessionsPerEndpoint) : parseScaling(spec['scaling'], maxSessionsPerEndpoint, c);
  return { name, namespace, functionId, activeVersion, maxSessionsPerEndpoint, scaling, versions, origin };
}

/** Without a target, an endpoint is taken to serve as many sessions as it may hold (one when unlimited). */
function defaultScaling(maxSessionsPerEndpoint: number): ScalingSpec {
  return maxSessionsPerEndpoint > 1 ? { ...NO_SCALING, targetSessionsPerEndpoint: maxSessionsPerEndpoint } : NO_SCALING;
}

function parseScaling(value: unknown, maxSessionsPerEndpoint: number, c: FieldChecker): ScalingSpec {
  const path = ['spec', 'scaling'];
  const scaling = c.object(value, path);
  c.onlyKnown(scaling, path, ['holdTimeout', 'maxPendingSessions', 'targetSessionsPerEndpoint']);
  const defaults = defaultScaling(maxSessionsPerEndpoint);
  let holdTimeoutMs = defaults.holdTimeoutMs;
  if (!isAbsent(scaling['holdTimeout'])) {
    const text = c.string(scaling['holdTimeout'], [...path, 'holdTimeout']);
    try {
      holdTimeoutMs = parseDuration(text);
    } catch (err) {
      c.fail([...path, 'holdTimeout'], (err as Error).message);
    }
  }
  return {
    holdTimeoutMs,
    maxPendingSessions: optionalCount(scaling, 'maxPendingSessions', path, defaults.maxPendingSessions, 1, c),
    targetSessionsPerEndpoint: optionalCount(scaling, 'targetSessionsPerEndpoint', path, defaults.targetSessionsPerEndpoint, 1, c),
  };
}

function parseScaleTarget(value: unknown, path: FieldPath, c: FieldChecker): ScaleTarget {
  const ref = c.object(value, path);
  c.onlyKnown(ref, path, ['kind', 'name', 'minReplicas', 'maxReplicas']);
  const kind = isAbsent(ref['kind']) ? 'Deployment' : c.string(ref['kind'], [...path, 'kind']);
  if (kind !== 'Deployment') c.fail([...path, 'kind'], `must be Deployment, not ${JSON.stringify(kind)}`);
  const name = c.string(ref['name'], [...path, 'name']);
  if (!isDns1123Subdomain(name)) c.fail([...path, 'name'], `${JSON.stringify(name)} must be a Deployment name (DNS-1123 subdomain)`);
  const minReplicas = optionalCount(ref, 'minReplicas', path, 0, 0, c);
  const maxReplicas = optionalCount(ref, 'maxReplicas', path, Math.max(minReplicas, 1), 1, c);
  if (maxReplicas < minReplicas) c.fail([...path, 'maxReplicas'], `${maxReplicas} is below minReplicas ${minReplicas}`);
  return { kind: 'Deployment', name, minReplicas, maxReplicas };
}

/** An optional integer field >= `min`, up to a million. */
function optionalCount(obj: PlainObject, key: string, path: FieldPath, fallback: number, min: number, c: FieldChecker): number {
  const value = obj[key];
  if (isAbsent(value)) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > 1_000_000) {
    return c.fail([...path, key], `must be an integer from ${min} to 1000000`);
  }
  return value;
}

function parseBackend(v: PlainObject, path: FieldPath, c: FieldChecker): VersionBackend {
  const hasService = !isAbsent(v['service']);
  const hasEndpoints = !isAbsent(v['endpoints']);
  if (hasService === hasEndpoints) {
    return c.fail(path, hasService ? 'has both service and endpoints; give exactly one' : 'needs exactly one of service or endpoints');
  }
  return hasService ? parseService(v['service'], [...path, 'service'], c) : parseEndpoints(v['endpoints'], [...path, 'endpoints'], c);
}

function parseService(value: unknown, path: FieldPath, c: FieldChecker): VersionBackend {
  const service = c.object(value, path);
  c.onlyKnown(service, path, ['name', 'port']);
  const name = c.string(service['name'], [...path, 'name']);
  if (name.length > 63 || !DNS1035_LABEL.test(name)) {
    c.fail([...path, 'name'], `${JSON.stringify(name)} must be a Service name (DNS-1035 label: lower-case a-z, 0-9, '-'; at most 63 characters)`);
  }
  const port = service['port'];
  if (isAbsent(port)) return c.fail([...path, 'port'], 'required');
  if (typeof port === 'number') {
    if (!Number.isInteger(port) || port < 1 || port > 65535) c.fail([...path, 'port'], `${port} must be a port number 1..65535 or a port name`);
    return { kind: 'service', name, port };
  }
  if (typeof port !== 'string' || port.length > 15 || !IANA_SVC_NAME.test(port)) {
    return c.fail([...path, 'port'], `${JSON.stringify(port)} must be a port name (at most 15 of a-z, 0-9, '-', with a letter) or a number 1..65535`);
  }
  return { kind: 'service', name, port };
}

/** Stores the normalised endpoint keys, so "LOCALHOST:80" and "localhost:80" are one endpoint. */
function parseEndpoints(list: unknown, path: FieldPath, c: FieldChecker): VersionBackend {
  // An empty list is a version scaled to zero: no ready endpoint (new sessions wait, with a holdTimeout).
  if (!Array.isArray(list)) return c.fail(path, 'must be a list of "host:port"');
  const keys: string[] = [];
  list.forEach((item: unknown, j) => {
    const parsed = typeof item === 'string' ? parseEndpointAddress(item) : undefined;
    if (parsed === undefined) c.fail([...path, j], `${JSON.stringify(item)} must be "host:port" or "[ipv6]:port" with port 1..65535`);
    else if (keys.includes(parsed.key)) c.fail([...path, j], `duplicate ${JSON.stringify(item)}`);
    else keys.push(parsed.key);
  });
  return { kind: 'static', endpoints: keys };
}
