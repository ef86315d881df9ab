// `fngate serve`: wires config -> sources -> registry -> auth -> sessions -> gateway ->
// listeners and the admin server, and takes them down again in order on drain.
import type { Server } from 'node:net';
import type { Socket } from 'node:net';
import type tls from 'node:tls';
import { createAdminServer } from '../admin/admin-server.ts';
import { Authenticator } from '../auth/authenticator.ts';
import { createJwtVerifier } from '../auth/jwt.ts';
import type { Config } from '../config/types.ts';
import { Gateway } from '../gateway/gateway.ts';
import { boundAddress, createTlsServer, defaultClientTuning, listen, listenH2c } from '../gateway/listeners.ts';
import { newCounters } from '../h2/limits.ts';
import { Registry } from '../registry/registry.ts';
import { SessionManager } from '../sessions/session-manager.ts';
import type { WaitOutcome } from '../sessions/pending-session.ts';
import { SOLE_REPLICA, type ReplicaRank } from '../sessions/cap-share.ts';
import { SessionKeyRing } from '../sessions/session-token.ts';
import { loadSessionSecrets, watchSessionSecrets } from '../sources/file/session-key-file.ts';
import { loadApiKeysFile, watchApiKeysFile } from '../sources/file/api-keys-file.ts';
import { loadFunctionsDir, watchFunctionsDir } from '../sources/file/functions-dir.ts';
import type { Closable } from '../files/watch.ts';
import type { KubernetesSource } from '../sources/kubernetes/kubernetes-source.ts';
import type { Logger } from '../telemetry/log.ts';
import { createTelemetry, type GatewayTelemetry } from '../telemetry/telemetry.ts';
import { DEFAULT_UPSTREAM_LIMITS, UpstreamConnection, type UpstreamTuning } from '../upstreams/upstream-connection.ts';
import { allocatorInUse } from '../runtime/allocator.ts';
import { setUpProcess } from '../runtime/process-setup.ts';
import type { RunningScaler } from '../scaling/external-scaler.ts';
import { SessionTotals } from '../scaling/session-totals.ts';

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
  const processSetup = setUpProcess();
  const closables: Closable[] = [];
  const verifier =
    config.jwksUrl !== undefined || config.jwksFile !== undefined
      ? await createJwtVerifier({
          jwksUrl: config.jwksUrl,
          jwksFile: config.jwksFile,
          issuer: config.jwtIssuer,
          audience: config.jwtAudience,
          log,
        })
      : undefined;
  if (verifier) closables.push(verifier);
  const registry = new Registry();
  // Logged when the set of conflicts changes, not on every rebuild (Kubernetes rebuilds often).
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

  // Read first: a bad key file stops start-up before anything talks to the cluster.
  let keys: SessionKeyRing;
  if (config.sessionKeyFile !== undefined) {
    const file = config.sessionKeyFile;
    const loaded = await loadSessionSecrets(file);
    keys = SessionKeyRing.fromSecrets(loaded.secrets);
    closables.push(watchSessionSecrets(file, (secrets) => sessions.setKeys(SessionKeyRing.fromSecrets(secrets)), log, {}, loaded.text));
  } else {
    keys = opts.sessionSecret === undefined ? SessionKeyRing.random() : SessionKeyRing.fromSecrets([opts.sessionSecret]);
    if (config.kubernetes) log.warn('no --session-key-file: session ids resume only on the replica that issued them');
  }
  // HTTP/2 protections count here, toward clients and toward functions, for /metrics.
  const h2Counters = { client: newCounters(), upstream: newCounters() };
  // Exceptions in upstream stream handlers are reported once telemetry exists (it is made below).
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
    keys,
    lookup: (id) => registry.getFunction(id),
    onWaitEnded: (functionId, versionId, outcome, waitedMs) => reportWaitEnded(functionId, versionId, outcome, waitedMs),
  });
  // Under --workers each worker fills its share of every endpoint's session cap; in Kubernetes
  // the replica Leases tell how many processes share it (see ReplicaMembership).
  sessions.setRank(opts.worker ?? SOLE_REPLICA);
  // A pinned endpoint that stops being ready sends its clients elsewhere at once, not at their next call.
  registry.on('functions', () => sessions.retireUnready((id) => registry.getFunction(id)));
  // Endpoints came (a function scaled up): sessions waiting for room are bound now.
  registry.on('functions', () => sessions.admitWaiting());
  // Sessions per version over every replica: what the KEDA scaler answers with.
  const totals = new SessionTotals(sessions.versions);
  let kubernetes: KubernetesSource | undefined;
  if (config.kubernetes) {
    // Loaded only in Kubernetes mode: the client library is large, and file mode never needs it.
    const { defaultIdentity, KubernetesSource } = await import('../sources/kubernetes/kubernetes-source.ts');
    kubernetes = new KubernetesSource({
      registry,
      namespace: config.namespace,
      log,
      leaseNamespace: process.env['POD_NAMESPACE'] ?? config.namespace ?? 'default',
      identity: defaultIdentity(opts.worker?.index),
      onRank: (rank) => sessions.setRank(rank),
      sessionCounts: totals,
      scalerAddress: config.scalerAddress,
    });
    // Stopped (and its Lease given up) at the end of a drain, awaited: see drain() below.
    await kubernetes.start();
  } else if (config.functions !== undefined) {
    const dir = config.functions;
    const loaded = await loadFunctionsDir(dir, log);
    registry.replaceFunctions(loaded.specs);
    closables.push(watchFunctionsDir(dir, (specs) => registry.replaceFunctions(specs), log, {}, loaded));
  } else {
    log.warn('no --functions directory and no --kubernetes: no function can be invoked');
  }
  if (config.apiKeys !== undefined) {
    const file = config.apiKeys;
    const loaded = await loadApiKeysFile(file);
    registry.replaceApiKeys(loaded.records);
    closables.push(watchApiKeysFile(file, (records) => registry.replaceApiKeys(records), log, {}, loaded.text));
  } else if (!verifier && !kubernetes) {
    log.warn('no --api-keys file, no JWKS and no --kubernetes Secrets: every token is refused');
  }

  let telemetry: GatewayTelemetry;
  try {
    telemetry = await createTelemetry({
      log,
      env: process.env,
      accessLog: config.accessLog,
      accessLogSample: config.accessLogSample,
      sessions: { byEndpoint: () => sessions.load.snapshot(), processes: () => sessions.rank.count, byVersion: () => sessions.versions.entries() },
      h2: h2Counters,
    });
  } catch (err) {
    for (const closable of closables) closable.close();
    await kubernetes?.stop();
    throw err;
  }
  reportInternalError = (where, err) => telemetry.internalError(where, err);
  reportWaitEnded = (functionId, versionId, outcome, waitedMs) => telemetry.sessionWaitEnded(functionId, versionId, outcome, waitedMs);
  telemetry.setRegistryStaleness(0);
  if (kubernetes) {
    const source = kubernetes;
    const timer = setInterval(() => telemetry.setRegistryStaleness(source.staleSeconds()), 1000).unref();
    closables.push({ close: () => clearInterval(timer) });
  }
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

  const servers: Server[] = [];
  let scalerClose = (): Promise<void> => Promise.resolve();
  try {
    // One tuning object for both listeners: the per-address connection count is shared.
    const clientTuning = { ...defaultClientTuning, maxConnectionsPerIp: config.maxConnectionsPerIp };
    const accept = (socket: Socket): void => gateway.accept(socket);
    servers.push(await listenH2c(accept, clientTuning, config.listen));

    let tls: tls.Server | undefined;
    if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
      const secure = await createTlsServer({ cert: config.tlsCert, key: config.tlsKey }, clientTuning, accept, log);
      closables.push(secure.reloader);
      tls = secure.server;
      servers.push(await listen(secure.server, config.tlsListen));
    }

    const admin = createAdminServer({
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
    servers.push(await listen(admin, config.admin));

    let scaler: RunningScaler | undefined;
    if (config.scalerListen !== undefined) {
      // Loaded only when served: grpc-js and protobufjs weigh ~30 MiB of resident memory.
      const { startExternalScaler } = await import('../scaling/external-scaler.ts');
      scaler = await startExternalScaler({ address: config.scalerListen, totals, lookup: (id) => registry.getFunction(id), log });
      const running = scaler;
      // Closed last: KEDA still asks while this replica drains.
      scalerClose = () => running.close();
    }

    const [h2cServer, ...rest] = servers;
    const addresses = {
      h2c: boundAddress(h2cServer as Server),
      tls: tls ? boundAddress(tls) : null,
      admin: boundAddress(rest[rest.length - 1] as Server),
      scaler: scaler?.address ?? null,
    };
    log.info('fngate listening', { ...addresses, allocator: allocatorInUse(), youngGarbageReclaim: processSetup.youngGarbageReclaim });
    return {
      ...addresses,
      gateway,
      telemetry,
      drain: async () => {
        log.info('draining', { connections: gateway.connectionCount, timeoutMs: config.drainTimeoutMs });
        await gateway.drain(config.drainTimeoutMs);
        for (const closable of closables) closable.close();
        // Hands the status-writer Lease to another replica now, not when it would expire.
        await kubernetes?.stop();
        sessions.close();
        await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
        await scalerClose();
        await telemetry.shutdown();
        log.info('drained');
      },
    };
  } catch (err) {
    for (const closable of closables) closable.close();
    for (const server of servers) server.close();
    await scalerClose();
    await kubernetes?.stop();
    await telemetry.shutdown();
    throw err;
  }
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
