// The in-memory index the hot path reads: Functions by id (with each version's ready
// endpoints) and API keys by hash. Sources replace whole snapshots; readers never await.
import { EventEmitter } from 'node:events';
import { parseEndpointAddress } from './function-manifest.ts';
import type {
  ApiKeyRecord,
  Endpoint,
  FunctionSpec,
  FunctionVersionSpec,
  RoutableFunction,
  RoutableVersion,
} from './types.ts';

/** Two or more Functions claiming one functionId: all of them are refused. */
export interface FunctionConflict {
  readonly functionId: string;
  readonly origins: readonly string[];
}

/** Ready endpoints of a Kubernetes Service port, as the Kubernetes source sees them. */
export type ServiceEndpointLookup = (namespace: string, service: string, port: string | number) => readonly Endpoint[];

const noServices: ServiceEndpointLookup = () => [];

export interface RegistryEvents {
  functions: [];
  keys: [];
}

export class Registry extends EventEmitter<RegistryEvents> {
  #functions = new Map<string, RoutableFunction>();
  #conflicts: FunctionConflict[] = [];
  #keys = new Map<string, ApiKeyRecord>();
  readonly #keySources = new Map<string, readonly ApiKeyRecord[]>();
  #specs: readonly FunctionSpec[] = [];
  #services: ServiceEndpointLookup = noServices;

  getFunction(functionId: string): RoutableFunction | undefined {
    return this.#functions.get(functionId);
  }

  getApiKey(sha256hex: string): ApiKeyRecord | undefined {
    return this.#keys.get(sha256hex);
  }

  /** functionIds currently refused because more than one Function claims them. */
  conflicts(): readonly FunctionConflict[] {
    return this.#conflicts;
  }

  /** A full snapshot of Functions from the source; replaces the previous one. */
  replaceFunctions(specs: readonly FunctionSpec[]): void {
    this.#specs = specs;
    this.#rebuild();
  }

  /** The Kubernetes source installs how Service-backed versions find their endpoints. */
  setServiceEndpoints(lookup: ServiceEndpointLookup): void {
    this.#services = lookup;
    this.#rebuild();
  }

  /**
   * A full snapshot of one source's API keys (the keys file, Kubernetes Secrets); a key
   * missing from it is revoked for the next RPC. The index is the union of all sources.
   */
  replaceApiKeys(records: readonly ApiKeyRecord[], source = 'file'): void {
    this.#keySources.set(source, records);
    const next = new Map<string, ApiKeyRecord>();
    for (const snapshot of this.#keySources.values()) {
      for (const record of snapshot) next.set(record.sha256, record);
    }
    this.#keys = next;
    this.emit('keys');
  }

  #rebuild(): void {
    const byId = new Map<string, FunctionSpec[]>();
    for (const spec of this.#specs) {
      const claims = byId.get(spec.functionId);
      if (claims) claims.push(spec);
      else byId.set(spec.functionId, [spec]);
    }
    const functions = new Map<string, RoutableFunction>();
    const conflicts: FunctionConflict[] = [];
    for (const [functionId, claims] of byId) {
      const [only] = claims;
      if (claims.length === 1 && only) functions.set(functionId, this.#routable(only));
      else conflicts.push({ functionId, origins: claims.map((c) => c.origin) });
    }
    this.#functions = functions;
    this.#conflicts = conflicts;
    this.emit('functions');
  }

  #routable(spec: FunctionSpec): RoutableFunction {
    const versions = new Map<string, RoutableVersion>();
    for (const version of spec.versions) versions.set(version.versionId, this.#routableVersion(spec, version));
    return {
      functionId: spec.functionId,
      name: spec.name,
      namespace: spec.namespace,
      activeVersion: spec.activeVersion,
      maxSessionsPerEndpoint: spec.maxSessionsPerEndpoint,
      scaling: spec.scaling,
      versions,
    };
  }

  #routableVersion(spec: FunctionSpec, version: FunctionVersionSpec): RoutableVersion {
    const { backend } = version;
    const endpoints: readonly Endpoint[] =
      backend.kind === 'static'
        ? backend.endpoints.map((text) => parseStatic(text, spec.origin))
        : this.#services(spec.namespace, backend.name, backend.port);
    const byKey = new Map<string, Endpoint>();
    for (const endpoint of endpoints) byKey.set(endpoint.key, endpoint);
    return { versionId: version.versionId, endpoints: [...byKey.values()], byKey, scaleTarget: version.scaleTarget };
  }
}

function parseStatic(text: string, origin: string): Endpoint {
  const endpoint = parseEndpointAddress(text);
  // The manifest parser already validated it; reaching here is a bug in a source.
  if (!endpoint) throw new Error(`${origin}: invalid endpoint "${text}" passed manifest validation`);
  return endpoint;
}
