// Admin HTTP: liveness, readiness (false while draining: serve opens it only once every source was read),
// Prometheus metrics and, only when enabled (--debug-sessions), who is pinned where.
// Plain HTTP/1.1 for probes, scrapers and people with curl.
import type { Server } from 'node:http';
import { createRequire } from 'node:module';

// node:http through require, not import: an ES import of it builds the module's namespace,
// which reads its lazy WebSocket exports and so loads Node's bundled undici (~15 MiB of RSS
// the gateway would carry for nothing).
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export interface AdminState {
  ready(): boolean;
  /** The Prometheus text exposition (format 0.0.4). */
  metrics(): Promise<string>;
  /** The /debug/sessions document; absent: the endpoint answers 404. */
  debugSessions?: (() => unknown) | undefined;
}

const TEXT = 'text/plain; charset=utf-8';

export function createAdminServer(state: AdminState): Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': TEXT }).end('method not allowed\n');
      return;
    }
    switch (path) {
      case '/healthz':
        res.writeHead(200, { 'content-type': TEXT }).end('ok\n');
        return;
      case '/readyz': {
        const ready = state.ready();
        res.writeHead(ready ? 200 : 503, { 'content-type': TEXT }).end(ready ? 'ready\n' : 'not ready\n');
        return;
      }
      case '/metrics':
        state.metrics().then(
          (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
          (err: unknown) => res.writeHead(500, { 'content-type': TEXT }).end(`metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`),
        );
        return;
      case '/debug/sessions':
        if (state.debugSessions !== undefined) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(state.debugSessions(), null, 2) + '\n');
          return;
        }
        res.writeHead(404, { 'content-type': TEXT }).end('not found: /debug/sessions is off; start fngate with --debug-sessions\n');
        return;
      default:
        res.writeHead(404, { 'content-type': TEXT }).end('not found: try /healthz, /readyz or /metrics\n');
    }
  });
}
