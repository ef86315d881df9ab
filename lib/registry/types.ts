// What the registry holds: Functions with their ready endpoints, and API keys.
// Sources (file, Kubernetes) produce these; the hot path only reads them.

export interface Endpoint {
  readonly host: string;
  readonly port: number;
  /** "host:port" ("[v6]:port" for IPv6): identity of the endpoint across updates. */
  readonly key: string;
}

/** Where a version's endpoints come from. */
export type VersionBackend =
  | { readonly kind: 'static'; readonly endpoints: readonly string[] }
  | { readonly kind: 'service'; readonly name: string; readonly port: string | number };

export interface FunctionVersionSpec {
  readonly versionId: string;
  readonly backend: VersionBackend;
}

/** A validated `Function` manifest (spec only), as a source read it. */
export interface FunctionSpec {
  /** metadata.name / metadata.namespace */
  readonly name: string;
  readonly namespace: string;
  readonly functionId: string;
  readonly activeVersion: string;
  /** 0 = unlimited. */
  readonly maxSessionsPerEndpoint: number;
  readonly versions: readonly FunctionVersionSpec[];
  /** Where it came from, for messages: a file path or "namespace/name". */
  readonly origin: string;
}

/** A version as routing sees it: its ready endpoints right now. */
export interface RoutableVersion {
  readonly versionId: string;
  readonly endpoints: readonly Endpoint[];
  /** endpoint key -> endpoint, for O(1) "is my pinned endpoint still ready?" */
  readonly byKey: ReadonlyMap<string, Endpoint>;
}

export interface RoutableFunction {
  readonly functionId: string;
  readonly name: string;
  readonly namespace: string;
  readonly activeVersion: string;
  readonly maxSessionsPerEndpoint: number;
  readonly versions: ReadonlyMap<string, RoutableVersion>;
}

export interface ApiKeyRecord {
  readonly name: string;
  /** Lower-case hex SHA-256 of the key. */
  readonly sha256: string;
  /** '*' or the function ids this key may invoke. */
  readonly functions: '*' | ReadonlySet<string>;
}
