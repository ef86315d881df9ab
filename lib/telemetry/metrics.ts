// Gateway counters and gauges, rendered in the Prometheus text format for admin /metrics.
// Deliberately small: plain numbers updated on the hot path, formatted only when scraped.
import type { CloseReason, ForwardedRpc, RejectedRpc, SessionInfo, Telemetry } from './events.ts';

export class GatewayMetrics implements Telemetry {
  /** "function\0version\0status" -> count */
  readonly #forwarded = new Map<string, number>();
  /** status (gRPC code, or HTTP status for non-gRPC requests) -> count */
  readonly #rejected = new Map<number, number>();
  readonly #closedBy = new Map<CloseReason, number>();
  #connections = 0;
  #connectionsTotal = 0;
  #draining = false;
  /** Sessions per endpoint, read when scraped. */
  sessionsByEndpoint: () => ReadonlyMap<string, number> = () => new Map();

  rpcStarting(_client: unknown, _upstream: unknown, _session: SessionInfo): undefined {
    return undefined;
  }

  rpcForwarded(rpc: ForwardedRpc): void {
    const key = `${rpc.session.functionId}\0${rpc.session.versionId}\0${rpc.status ?? 'cancelled'}`;
    this.#forwarded.set(key, (this.#forwarded.get(key) ?? 0) + 1);
  }

  rpcRejected(rpc: RejectedRpc): void {
    this.#rejected.set(rpc.status, (this.#rejected.get(rpc.status) ?? 0) + 1);
  }

  connectionOpened(): void {
    this.#connections++;
    this.#connectionsTotal++;
  }

  connectionClosed(): void {
    this.#connections--;
  }

  connectionClosedBy(reason: CloseReason): void {
    this.#closedBy.set(reason, (this.#closedBy.get(reason) ?? 0) + 1);
  }

  setDraining(draining: boolean): void {
    this.#draining = draining;
  }

  render(): string {
    const lines: string[] = [];
    const family = (name: string, type: string, help: string): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    family('fngate_forwarded_rpcs_total', 'counter', 'RPCs forwarded to functions, by function, version and grpc-status.');
    for (const [key, n] of this.#forwarded) {
      const [fn, version, status] = key.split('\0');
      lines.push(`fngate_forwarded_rpcs_total{function_id=${label(fn)},version_id=${label(version)},grpc_status=${label(status)}} ${n}`);
    }
    family('fngate_rejected_rpcs_total', 'counter', 'Requests answered by the gateway itself, by gRPC status (or HTTP status for non-gRPC requests).');
    for (const [status, n] of this.#rejected) lines.push(`fngate_rejected_rpcs_total{status=${label(String(status))}} ${n}`);
    family('fngate_client_connections', 'gauge', 'Open client connections.');
    lines.push(`fngate_client_connections ${this.#connections}`);
    family('fngate_client_connections_total', 'counter', 'Client connections accepted.');
    lines.push(`fngate_client_connections_total ${this.#connectionsTotal}`);
    family('fngate_connections_closed_by_gateway_total', 'counter', 'Client connections the gateway closed, by reason.');
    for (const [reason, n] of this.#closedBy) lines.push(`fngate_connections_closed_by_gateway_total{reason=${label(reason)}} ${n}`);
    family('fngate_endpoint_sessions', 'gauge', 'Live sessions pinned to each endpoint by this process.');
    for (const [endpoint, n] of this.sessionsByEndpoint()) lines.push(`fngate_endpoint_sessions{endpoint=${label(endpoint)}} ${n}`);
    family('fngate_draining', 'gauge', '1 while the gateway drains.');
    lines.push(`fngate_draining ${this.#draining ? 1 : 0}`);
    return lines.join('\n') + '\n';
  }
}

/** A quoted label value, escaped as the Prometheus text format asks. */
function label(value: string | undefined): string {
  return '"' + (value ?? '').replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') + '"';
}
