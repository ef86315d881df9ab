// The one validated, frozen configuration every part of the gateway reads.
// Durations are milliseconds; addresses are parsed once here, never on the hot path.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ListenAddress {
  /** Ready for net.Server#listen: no brackets around IPv6; "0.0.0.0" when written as ":port". */
  readonly host: string;
  /** 0 asks the OS for a free port (tests). */
  readonly port: number;
  /** As written by the user, for messages. */
  readonly text: string;
}

export interface Config {
  /** Path of the --config YAML file, if one was read. */
  readonly configFile: string | undefined;
  /** Plaintext h2c (prior knowledge) listener. */
  readonly listen: ListenAddress;
  /** TLS listener; only opened when tlsCert and tlsKey are both set. */
  readonly tlsListen: ListenAddress;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  /** Directory of Function YAML files (file source). */
  readonly functions: string | undefined;
  /** Use the Kubernetes source instead of --functions. */
  readonly kubernetes: boolean;
  /** Kubernetes namespace to watch; undefined = all namespaces. */
  readonly namespace: string | undefined;
  /** API keys YAML file. */
  readonly apiKeys: string | undefined;
  readonly jwksUrl: string | undefined;
  readonly jwksFile: string | undefined;
  readonly jwtIssuer: string | undefined;
  readonly jwtAudience: string | undefined;
  readonly idleTimeoutMs: number;
  /** Client connections one IP address may hold open (h2c and TLS together); 0 = unlimited. */
  readonly maxConnectionsPerIp: number;
  readonly drainTimeoutMs: number;
  readonly sessionLingerMs: number;
  /** Secrets that seal session ids, one per line (first seals, all open); shared by replicas. */
  readonly sessionKeyFile: string | undefined;
  /** GOAWAY to client connections older than this (±10%); 0 = never. */
  readonly maxConnectionAgeMs: number;
  readonly admin: ListenAddress;
  /** KEDA external scaler (gRPC) listener; undefined = not served. */
  readonly scalerListen: ListenAddress | undefined;
  /** host:port KEDA dials to reach the scaler, written into the ScaledObjects the gateway keeps. */
  readonly scalerAddress: string | undefined;
  readonly workers: number;
  readonly logLevel: LogLevel;
  /** Access log destination: 'off', 'stdout', 'stderr' or an absolute file path (appended). */
  readonly accessLog: string;
  /** Share of successful RPCs written to the access log, 0 to 1 (errors are always written). */
  readonly accessLogSample: number;
  /** Serve admin /debug/sessions (who is pinned where). */
  readonly debugSessions: boolean;
}
