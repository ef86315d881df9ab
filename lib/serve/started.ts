// What `fngate serve` has started, and the one routine that stops it. Start-up records each
// part here as it starts; a drain (after SIGTERM) and a start-up that fails half-way both stop
// whatever is recorded, through shutDown, in the same order.
import type { Server } from 'node:net';
import type { Closable } from '../files/watch.ts';
import type { Gateway } from '../gateway/gateway.ts';
import type { RunningScaler } from '../scaling/external-scaler.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import type { KubernetesSource } from '../sources/kubernetes/kubernetes-source.ts';
import type { GatewayTelemetry } from '../telemetry/telemetry.ts';

export interface Started {
  /** File watchers (Functions, keys, certificates), the JWKS refresh, timers. */
  readonly closables: Closable[];
  kubernetes: KubernetesSource | undefined;
  sessions: SessionManager | undefined;
  telemetry: GatewayTelemetry | undefined;
  gateway: Gateway | undefined;
  /** The listeners that are listening: h2c, TLS, admin. */
  readonly servers: Server[];
  scaler: RunningScaler | undefined;
}

export function nothingStarted(): Started {
  return { closables: [], kubernetes: undefined, sessions: undefined, telemetry: undefined, gateway: undefined, servers: [], scaler: undefined };
}

/**
 * Stops what was started. The gateway drains first (not ready, GOAWAY to every client, open
 * streams get `drainTimeoutMs`; 0 after a failed start-up); then the watchers and timers; the
 * Kubernetes source, which hands its status-writer Lease on now rather than when it would
 * expire; the listeners; the KEDA scaler, last but for telemetry because KEDA still asks while
 * a replica drains; and telemetry, which flushes what it exports.
 */
export async function shutDown(started: Started, drainTimeoutMs: number): Promise<void> {
  await started.gateway?.drain(drainTimeoutMs);
  for (const closable of started.closables) closable.close();
  await started.kubernetes?.stop();
  started.sessions?.close();
  await Promise.all(started.servers.map(closeServer));
  await started.scaler?.close();
  await started.telemetry?.shutdown();
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
