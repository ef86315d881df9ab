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

/** The workload behind a version, which an autoscaler (KEDA) scales between min and max replicas. */
export interface ScaleTarget {
  readonly kind: 'Deployment';
  readonly name: string;
  readonly minReplicas: number;
  readonly maxReplicas: number;
}

export interface FunctionVersionSpec {
  readonly versionId: string;
  readonly backend: VersionBackend;
  readonly scaleTarget?: ScaleTarget | undefined;
}

/** How a Function's new sessions wait for room, and the concurrency an autoscaler aims at. */
export interface ScalingSpec {
  /** How long a new session may wait for an endpoint with room; 0 = never wait (UNAVAILABLE at once). */
  readonly holdTimeoutMs: number;
  /** Sessions that may wait per version on one gateway process; one more gets RESOURCE_EXHAUSTED. */
  readonly maxPendingSessions: number;
  /** Sessions per endpoint an autoscaler scales to (replicas = ceil(sessions / target)). */
  readonly targetSessionsPerEndpoint: number;
}

/** No `scaling` block: nothing waits, one session per endpoint as the autoscaling target. */
export const NO_SCALING: ScalingSpec = Object.freeze({ holdTimeoutMs: 0, maxPendingSessions: 100, targetSessionsPerEndpoint: 1 });

/** A validated `Function` manifest (spec only), as a source read it. */
export interface FunctionSpec {
  /** metadata.name / metadata.namespace */
  readonly name: string;
  readonly namespace: string;
  readonly functionId: string;
  readonly activeVersion: string;
  /** 0 = unlimited. */
  readonly maxSessionsPerEndpoint: number;
  readonly scaling: ScalingSpec;
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
  readonly scaleTarget: ScaleTarget | undefined;
}

export interface RoutableFunction {
  readonly functionId: string;
  readonly name: string;
  readonly namespace: string;
  readonly activeVersion: string;
  readonly maxSessionsPerEndpoint: number;
  readonly scaling: ScalingSpec;
  readonly versions: ReadonlyMap<string, RoutableVersion>;
}

export interface ApiKeyRecord {
  readonly name: string;
  /** Lower-case hex SHA-256 of the key. */
  readonly sha256: string;
  /** '*' or the function ids this key may invoke. */
  readonly functions: '*' | ReadonlySet<string>;
}
