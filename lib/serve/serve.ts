// `fngate serve`: wires config -> sources -> registry -> auth -> sessions -> gateway ->
// listeners and the admin server. Every part is recorded in `Started` as it starts, and
// shutDown (started.ts) takes them down again, on a drain and on a failed start-up alike.
import { createAdminServer } from '../admin/admin-server.ts';
import { Authenticator } from '../auth/authenticator.ts';
import type { JwtVerifier } from '../auth/jwt.ts';
import type { Config } from '../config/types.ts';
import { Gateway } from '../gateway/gateway.ts';
import { boundAddress, createTlsServer, defaultClientTuning, listen, listenH2c, type AcceptH2 } from '../gateway/listeners.ts';
import { newCounters } from '../h2/limits.ts';
import { readBufferStats } from '../h2/read-buffers.ts';
import { Registry } from '../registry/registry.ts';
import { allocatorInUse } from '../runtime/allocator.ts';
import { setUpProcess } from '../runtime/process-setup.ts';
import { SessionTotals } from '../scaling/session-totals.ts';
import { SOLE_REPLICA, type ReplicaRank } from '../sessions/cap-share.ts';
import type { WaitOutcome } from '../sessions/pending-session.ts';
import { SessionManager } from '../sessions/session-manager.ts';
import { SessionKeyRing } from '../sessions/session-token.ts';
import { apiKeysFile } from '../sources/file/api-keys-file.ts';
import { loadFunctionsDir, watchFunctionsDir } from '../sources/file/functions-dir.ts';
import { sessionKeyFile } from '../sources/file/session-key-file.ts';
import type { Logger } from '../telemetry/log.ts';
import { createTelemetry, type GatewayTelemetry } from '../telemetry/telemetry.ts';
import { DEFAULT_UPSTREAM_LIMITS, UpstreamConnection, type UpstreamTuning } from '../upstreams/upstream-connection.ts';
import { nothingStarted, shutDown, type Started } from './started.ts';

export interface RunningGateway {
  /** Bound addresses ("host:port"), for logs and for tests listening on port 0. */
  readonly h2c: string;
  readonly tls: string | null;
  readonly admin: string;
  /** The KEDA external scaler's bound address, when --scaler-listen is set. */
  readonly scaler: string | null;
  readonly gateway: Gateway;
  readonly telemetry: GatewayTelemetry;
  /** Not-ready, GOAWAY to all, open streams finish (bounded by --drain-timeout), then close. */
  drain(): Promise<void>;
}

export interface ServeOptions {
  /**
   * Without --session-key-file, the secret sealing session ids; --workers hands one to every
   * worker so ids resume on any of them. Unset: a key of this process only.
   */
  readonly sessionSecret?: string | undefined;
  /** Under --workers: this worker's number and how many there are. */
  readonly worker?: ReplicaRank | undefined;
}

export async function startServe(config: Config, log: Logger, opts: ServeOptions = {}): Promise<RunningGateway> {
  const started = nothingStarted();
  try {
    return await start(config, log, opts, started);
  } catch (err) {
    // What had started stops as a drain stops it, with no time left for open streams.
    await shutDown(started, 0).catch((stopErr: unknown) => log.error('stopping after a failed start-up failed', { error: String(stopErr) }));
    throw err;
  }
}

async function start(config: Config, log: Logger, opts: ServeOptions, started: Started): Promise<RunningGateway> {
  const processSetup = setUpProcess();
  const verifier = await jwtVerifier(config, log);
  if (verifier) started.closables.push(verifier);
  const registry = new Registry();
  reportConflicts(registry, log);

  // Read first: a bad key file stops start-up before anything talks to the cluster.
  const keyFile = config.sessionKeyFile;
  const loadedSecrets = keyFile === undefined ? undefined : await sessionKeyFile.load(keyFile);
  if (keyFile === undefined && config.kubernetes) log.warn('no --session-key-file: session ids resume only on the replica that issued them');
  // HTTP/2 protections count here, toward clients and toward functions, for /metrics.
  const h2Counters = { client: newCounters(), upstream: newCounters() };
  // Exceptions in upstream stream handlers and ended waits are reported once telemetry exists (it is made below).
  let reportInternalError: (where: string, err: unknown) => void = () => {};
  let reportWaitEnded: (functionId: string, versionId: string, outcome: WaitOutcome, waitedMs: number) => void = () => {};
  const upstreamTuning: UpstreamTuning = {
    limits: DEFAULT_UPSTREAM_LIMITS,
    counters: h2Counters.upstream,
    onInternalError: (where, err) => reportInternalError(where, err),
  };
  const sessions = new SessionManager({
    lingerMs: config.sessionLingerMs,
    openUpstream: (endpoint) => new UpstreamConnection(endpoint, upstreamTuning),
    keys: loadedSecrets ? SessionKeyRing.fromSecrets(loadedSecrets.value) : ownKeys(opts),
    lookup: (id) => registry.getFunction(id),
    onWaitEnded: (functionId, versionId, outcome, waitedMs) => reportWaitEnded(functionId, versionId, outcome, waitedMs),
  });
  started.sessions = sessions;
  if (keyFile !== undefined) {
    // A rotated key file takes effect without a restart.
    const onSecrets = (secrets: string[]): void => sessions.setKeys(SessionKeyRing.fromSecrets(secrets));
    started.closables.push(sessionKeyFile.watch(keyFile, onSecrets, log, {}, loadedSecrets?.text));
  }
  // Under --workers each worker fills its share of every endpoint's session cap; in Kubernetes
  // the replica Leases tell how many processes share it (see ReplicaMembership).
  sessions.setRank(opts.worker ?? SOLE_REPLICA);
  // A pinned endpoint that stops being ready sends its clients elsewhere at once, not at their next call.
  registry.on('functions', () => sessions.retireUnready((id) => registry.getFunction(id)));
  // Endpoints came (a function scaled up): sessions waiting for room are bound now.
  registry.on('functions', () => sessions.admitWaiting());
  // Sessions per version over every replica: what the KEDA scaler answers with.
  const totals = new SessionTotals(sessions.versions);

  // The sources fill the registry: Kubernetes, or the --functions directory; and the --api-keys file.
  if (config.kubernetes) {
    // Loaded only in Kubernetes mode: the client library is large, and file mode never needs it.
    const { defaultIdentity, KubernetesSource } = await import('../sources/kubernetes/kubernetes-source.ts');
    const kubernetes = new KubernetesSource({
      registry,
      namespace: config.namespace,
      log,
      leaseNamespace: process.env['POD_NAMESPACE'] ?? config.namespace ?? 'default',
      identity: defaultIdentity(opts.worker?.index),
      onRank: (rank) => sessions.setRank(rank),
      sessionCounts: totals,
      scalerAddress: config.scalerAddress,
    });
    // Recorded before it starts: a start that fails half-way still stops its watches.
    started.kubernetes = kubernetes;
    await kubernetes.start();
  } else if (config.functions !== undefined) {
    const dir = config.functions;
    const loaded = await loadFunctionsDir(dir, log);
    registry.replaceFunctions(loaded.specs);
    started.closables.push(watchFunctionsDir(dir, (specs) => registry.replaceFunctions(specs), log, {}, loaded));
  } else {
    log.warn('no --functions directory and no --kubernetes: no function can be invoked');
  }
  if (config.apiKeys !== undefined) {
    const file = config.apiKeys;
    const loaded = await apiKeysFile.load(file);
    registry.replaceApiKeys(loaded.value);
    started.closables.push(apiKeysFile.watch(file, (records) => registry.replaceApiKeys(records), log, {}, loaded.text));
  } else if (!verifier && !config.kubernetes) {
    log.warn('no --api-keys file, no JWKS and no --kubernetes Secrets: every token is refused');
  }

  const telemetry = await createTelemetry({
    log,
    env: process.env,
    accessLog: config.accessLog,
    accessLogSample: config.accessLogSample,
    sessions: { byEndpoint: () => sessions.load.snapshot(), processes: () => sessions.rank.count, byVersion: () => sessions.versions.entries() },
    h2: { ...h2Counters, readBuffers: readBufferStats },
  });
  started.telemetry = telemetry;
  reportInternalError = (where, err) => telemetry.internalError(where, err);
  reportWaitEnded = (functionId, versionId, outcome, waitedMs) => telemetry.sessionWaitEnded(functionId, versionId, outcome, waitedMs);
  const kubernetes = started.kubernetes;
  // Read at each scrape, so the gauge is never a poll interval behind.
  if (kubernetes) telemetry.setRegistryStaleness(() => kubernetes.staleSeconds());
  const gateway = new Gateway({
    registry,
    authenticator: new Authenticator(registry, verifier),
    sessions,
    limits: { idleMs: config.idleTimeoutMs, maxAgeMs: config.maxConnectionAgeMs },
    h2: defaultClientTuning.h2,
    h2Counters: h2Counters.client,
    maxHeaderFields: defaultClientTuning.maxHeaderListPairs,
    log,
    telemetry,
  });
  started.gateway = gateway;

  // One tuning object for both listeners: the per-address connection count is shared.
  const clientTuning = { ...defaultClientTuning, maxConnectionsPerIp: config.maxConnectionsPerIp };
  const accept: AcceptH2 = (socket, reads) => gateway.accept(socket, reads);
  const h2cServer = await listenH2c(accept, clientTuning, config.listen);
  started.servers.push(h2cServer);
  let tlsAddress: string | null = null;
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    const secure = await createTlsServer({ cert: config.tlsCert, key: config.tlsKey }, clientTuning, accept, log);
    started.closables.push(secure.reloader);
    started.servers.push(await listen(secure.server, config.tlsListen));
    tlsAddress = boundAddress(secure.server);
  }
  const adminServer = createAdminServer({
    // Every source was read in full before the listeners opened (the Kubernetes source's start()
    // waits for its first lists), so ready means not draining; a Kubernetes view that falls
    // behind afterwards is reported as stale, and routing goes on with it.
    ready: () => !gateway.draining,
    metrics: async () => {
      const { text, errors } = await telemetry.metrics.render();
      if (errors.length > 0) log.warn('metrics collection errors', { errors: errors.map(String) });
      return text;
    },
    debugSessions: config.debugSessions ? () => debugSessions(sessions) : undefined,
  });
  started.servers.push(await listen(adminServer, config.admin));
  if (config.scalerListen !== undefined) {
    // Loaded only when served: grpc-js and protobufjs weigh ~30 MiB of resident memory.
    const { startExternalScaler } = await import('../scaling/external-scaler.ts');
    started.scaler = await startExternalScaler({ address: config.scalerListen, totals, lookup: (id) => registry.getFunction(id), log });
  }

  const addresses = {
    h2c: boundAddress(h2cServer),
    tls: tlsAddress,
    admin: boundAddress(adminServer),
    scaler: started.scaler?.address ?? null,
  };
  let draining: Promise<void> | undefined;
  log.info('fngate listening', { ...addresses, allocator: allocatorInUse(), youngGarbageReclaim: processSetup.youngGarbageReclaim });
  return {
    ...addresses,
    gateway,
    telemetry,
    drain: () => {
      // A second call (a second signal, a test) waits on the first drain.
      draining ??= (async () => {
        log.info('draining', { connections: gateway.connectionCount, timeoutMs: config.drainTimeoutMs });
        await shutDown(started, config.drainTimeoutMs);
        log.info('drained');
      })();
      return draining;
    },
  };
}

/**
 * The JWT verifier when a JWKS is configured (--jwks-url or --jwks-file); jose is loaded only
 * then (~3 MiB of RSS a gateway with API keys alone does not carry).
 */
async function jwtVerifier(config: Config, log: Logger): Promise<JwtVerifier | undefined> {
  if (config.jwksUrl === undefined && config.jwksFile === undefined) return undefined;
  const { createJwtVerifier } = await import('../auth/jwt.ts');
  return createJwtVerifier({ jwksUrl: config.jwksUrl, jwksFile: config.jwksFile, issuer: config.jwtIssuer, audience: config.jwtAudience, log });
}

/** Logs functionIds claimed twice when the set of conflicts changes, not on every rebuild (Kubernetes rebuilds often). */
function reportConflicts(registry: Registry, log: Logger): void {
  let reported = '';
  registry.on('functions', () => {
    const conflicts = registry.conflicts();
    const now = JSON.stringify(conflicts);
    if (now === reported) return;
    reported = now;
    for (const { functionId, origins } of conflicts) {
      log.error('functionId claimed by more than one Function: all of them are refused', { functionId, origins });
    }
  });
}

/** Without --session-key-file: the secret --workers handed this worker, or a key of this process only. */
function ownKeys(opts: ServeOptions): SessionKeyRing {
  return opts.sessionSecret === undefined ? SessionKeyRing.random() : SessionKeyRing.fromSecrets([opts.sessionSecret]);
}

/** admin /debug/sessions: this replica's live sessions (by sid, never the sealed id) and per-endpoint counts. */
function debugSessions(sessions: SessionManager): unknown {
  return {
    live: sessions.liveCount(),
    // This process's place among those sharing maxSessionsPerEndpoint.
    rank: sessions.rank,
    endpoints: Object.fromEntries(sessions.load.snapshot()),
    sessions: [...sessions.liveRecords()].map((r) => ({
      id: r.sid,
      functionId: r.functionId,
      versionId: r.versionId,
      endpoint: r.endpointKey,
      connections: r.live,
    })),
  };
}
