// Files the gateway reads: Function manifests (--functions DIR), the API key file
// (--api-keys FILE) and a self-signed TLS certificate. Writes are atomic (temp file + rename),
// so the gateway's watchers never see half a file.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';

export interface TestFunction {
  /** metadata.name (a DNS-1123 name); also the file name `<name>.yaml`. */
  name: string;
  namespace?: string;
  functionId: string;
  activeVersion: string;
  maxSessionsPerEndpoint?: number;
  /** spec.scaling as written (holdTimeout is a duration string). */
  scaling?: { holdTimeout?: string; maxPendingSessions?: number; targetSessionsPerEndpoint?: number };
  versions: Array<{ versionId: string; endpoints: string[] }>;
}

export interface TestKey {
  name: string;
  /** The key itself; only its SHA-256 is written. */
  key: string;
  /** Function ids, or '*'. */
  functions: string[] | '*';
}

/** Writes `data` to `path` via a temp file in the same directory. */
export function writeFileAtomic(path: string, data: string | Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.tmp-${randomBytes(6).toString('hex')}`);
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/** A Function manifest (docs/reference.md, Functions) as YAML. */
export function functionYaml(fn: TestFunction): string {
  const spec: Record<string, unknown> = { functionId: fn.functionId, activeVersion: fn.activeVersion };
  if (fn.maxSessionsPerEndpoint !== undefined) spec['maxSessionsPerEndpoint'] = fn.maxSessionsPerEndpoint;
  if (fn.scaling !== undefined) spec['scaling'] = fn.scaling;
  spec['versions'] = fn.versions.map((v) => ({ versionId: v.versionId, endpoints: v.endpoints }));
  return stringify({
    apiVersion: 'fngate.dev/v1alpha1',
    kind: 'Function',
    metadata: { name: fn.name, namespace: fn.namespace ?? 'default' },
    spec,
  });
}

/** Writes `<dir>/<name>.yaml` for each function (other files in `dir` are left alone); returns the paths. */
export function writeFunctionsDir(dir: string, functions: TestFunction[]): string[] {
  mkdirSync(dir, { recursive: true });
  return functions.map((fn) => {
    const path = join(dir, `${fn.name}.yaml`);
    writeFileAtomic(path, functionYaml(fn));
    return path;
  });
}

/** Removes `<dir>/<name>.yaml`. */
export function removeFunction(dir: string, name: string): void {
  rmSync(join(dir, `${name}.yaml`), { force: true });
}

export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

/** A random API key (64 hex characters). */
export const randomKey = (): string => randomBytes(32).toString('hex');

/** The local keys file: `keys: [ { name, sha256, functions } ]`. */
export function writeKeysFile(path: string, keys: TestKey[]): void {
  const doc = { keys: keys.map((k) => ({ name: k.name, sha256: sha256Hex(k.key), functions: k.functions })) };
  writeFileAtomic(path, stringify(doc));
}

export interface TlsCert {
  /** Paths of the PEM files (for --tls-cert / --tls-key). */
  cert: string;
  key: string;
  /** The certificate itself (self-signed, so it is its own CA): trust it with `ca`. */
  ca: Buffer;
}

/**
 * A self-signed EC P-256 certificate for `localhost` and 127.0.0.1, written (atomically) to
 * `<dir>/<prefix>cert.pem` and `<dir>/<prefix>key.pem`. Calling it again replaces both (reload tests).
 */
export function makeTlsCert(dir: string, opts: { prefix?: string; commonName?: string } = {}): TlsCert {
  mkdirSync(dir, { recursive: true });
  const prefix = opts.prefix ?? '';
  const cn = opts.commonName ?? 'localhost';
  const tmp = join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
  const tmpCert = `${tmp}-cert.pem`;
  const tmpKey = `${tmp}-key.pem`;
  execFileSync('openssl', [
    'req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-keyout', tmpKey, '-out', tmpCert, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const cert = join(dir, `${prefix}cert.pem`);
  const key = join(dir, `${prefix}key.pem`);
  renameSync(tmpKey, key);
  renameSync(tmpCert, cert);
  return { cert, key, ca: readFileSync(cert) };
}
