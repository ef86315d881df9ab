// `fngate serve`: wires config -> sources -> registry -> auth -> sessions -> gateway ->
// listeners and the admin server, and takes them down again in order on drain.
import type { Server } from 'node:net';
import type { Http2SecureServer } from 'node:http2';
import { createAdminServer } from '../admin/admin-server.ts';
import { Authenticator } from '../auth/authenticator.ts';
import { createJwtVerifier } from '../auth/jwt.ts';
import type { Config } from '../config/types.ts';
import { Gateway } from '../gateway/gateway.ts';
import { boundAddress, createH2cServer, createTlsServer, defaultClientTuning, listen, listenH2c } from '../gateway/listeners.ts';
import { Registry } from '../registry/registry.ts';
import { SessionManager } from '../sessions/session-manager.ts';
import { loadApiKeysFile, watchApiKeysFile } from '../sources/file/api-keys-file.ts';
import { loadFunctionsDir, watchFunctionsDir } from '../sources/file/functions-dir.ts';
import type { Closable } from '../sources/file/watch.ts';
import type { Logger } from '../telemetry/log.ts';
import { GatewayMetrics } from '../telemetry/metrics.ts';
import { defaultUpstreamTuning } from '../upstreams/upstream-connection.ts';

export interface RunningGateway {
  /** Bound addresses ("host:port"), for logs and for tests listening on port 0. */
  readonly h2c: string;
  readonly tls: string | null;
  readonly admin: string;
  readonly gateway: Gateway;
  /** Not-ready, GOAWAY to all, open streams finish (bounded by --drain-timeout), then close. */
  drain(): Promise<void>;
}

export async function startServe(config: Config, log: Logger): Promise<RunningGateway> {
  if (config.kubernetes) {
    throw new Error('--kubernetes: the Kubernetes source is not part of this build yet; use --functions DIR');
  }
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
  registry.on('functions', () => {
    for (const { functionId, origins } of registry.conflicts()) {
      log.error('functionId claimed by more than one Function: all of them are refused', { functionId, origins });
    }
  });

  if (config.functions !== undefined) {
    const dir = config.functions;
    registry.replaceFunctions(await loadFunctionsDir(dir));
    closables.push(watchFunctionsDir(dir, (specs) => registry.replaceFunctions(specs), log));
  } else {
    log.warn('no --functions directory: no function can be invoked');
  }
  if (config.apiKeys !== undefined) {
    const file = config.apiKeys;
    registry.replaceApiKeys(await loadApiKeysFile(file));
    closables.push(watchApiKeysFile(file, (records) => registry.replaceApiKeys(records), log));
  } else if (!verifier) {
    log.warn('no --api-keys file and no JWKS: every token is refused');
  }

  const sessions = new SessionManager({ lingerMs: config.sessionLingerMs, upstream: defaultUpstreamTuning });
  const metrics = new GatewayMetrics();
  metrics.sessionsByEndpoint = () => sessions.load.snapshot();
  const gateway = new Gateway({
    registry,
    authenticator: new Authenticator(registry, verifier),
    sessions,
    idleTimeoutMs: config.idleTimeoutMs,
    log,
    telemetry: metrics,
  });

  const servers: Server[] = [];
  try {
    const h2c = createH2cServer(defaultClientTuning);
    gateway.attach(h2c);
    servers.push(await listenH2c(h2c, config.listen));

    let tls: Http2SecureServer | undefined;
    if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
      const secure = await createTlsServer({ cert: config.tlsCert, key: config.tlsKey }, defaultClientTuning, log);
      closables.push(secure.reloader);
      gateway.attach(secure.server);
      tls = secure.server;
      servers.push(await listen(secure.server, config.tlsListen));
    }

    const admin = createAdminServer({
      ready: () => !gateway.draining,
      metrics: () => metrics.render(),
    });
    servers.push(await listen(admin, config.admin));

    const [h2cServer, ...rest] = servers;
    const addresses = {
      h2c: boundAddress(h2cServer as Server),
      tls: tls ? boundAddress(tls) : null,
      admin: boundAddress(rest[rest.length - 1] as Server),
    };
    log.info('fngate listening', addresses);
    return {
      ...addresses,
      gateway,
      drain: async () => {
        log.info('draining', { connections: gateway.connectionCount, timeoutMs: config.drainTimeoutMs });
        await gateway.drain(config.drainTimeoutMs);
        for (const closable of closables) closable.close();
        sessions.close();
        await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
        log.info('drained');
      },
    };
  } catch (err) {
    for (const closable of closables) closable.close();
    for (const server of servers) server.close();
    throw err;
  }
}
