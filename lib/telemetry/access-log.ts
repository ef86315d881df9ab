// --access-log: one JSON line per RPC, forwarded or answered by the gateway itself. Errors
// are always logged; successful calls with probability --access-log-sample. Lines are
// gathered during one turn of the event loop and written together (one write, not one per
// RPC); if the destination falls behind by more than MAX_BACKLOG the lines are dropped and
// counted rather than held in memory. Nothing here ever sees a token: the data plane reports
// the subject (key name or JWT sub), never the credential.
import { createWriteStream, type WriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { Status } from '../grpc/status.ts';
import type { ForwardedRpc, RejectedRpc } from './events.ts';
import { STATUS_NAMES, statusIndex } from './rpc-stats.ts';

const MAX_BACKLOG = 8 * 1024 * 1024;
/** Client-chosen text (an unvalidated function-id or path of a refused call) is cut to this. */
const MAX_FIELD = 256;

export interface TraceIds {
  readonly traceId: string;
  readonly spanId: string;
}

export class AccessLog {
  readonly #out: Writable;
  readonly #ownsStream: boolean;
  readonly #sample: number;
  readonly #onDrop: (lines: number) => void;
  /** Request ids: a per-process random prefix and a counter, unique without coordination. */
  readonly #idPrefix = randomBytes(6).toString('hex');
  #seq = 0;
  #pending = '';
  #pendingLines = 0;
  #scheduled = false;
  #closed = false;

  constructor(out: Writable, ownsStream: boolean, sample: number, onDrop: (lines: number) => void) {
    this.#out = out;
    this.#ownsStream = ownsStream;
    this.#sample = sample;
    this.#onDrop = onDrop;
    out.on('error', () => {}); // a broken destination must not take the gateway down; lines are dropped
  }

  forwarded(rpc: ForwardedRpc, ids: TraceIds | undefined): void {
    const index = statusIndex(rpc.status);
    if (index === Status.OK && !this.#sampled()) return;
    const s = rpc.session;
    this.#push(
      JSON.stringify({
        time: new Date().toISOString(),
        msg: 'rpc',
        request_id: this.#requestId(),
        session_id: s.id,
        subject: rpc.subject,
        function_id: s.functionId,
        version_id: s.versionId,
        endpoint: s.endpoint.key,
        method: rpc.path,
        status: index,
        status_name: STATUS_NAMES[index] ?? 'UNKNOWN',
        cancelled: rpc.status === undefined,
        duration_ms: ms(rpc.endedAt - rpc.startedAt),
        first_byte_ms: rpc.firstByteAt === undefined ? null : ms(rpc.firstByteAt - rpc.startedAt),
        bytes_in: rpc.bytesIn,
        bytes_out: rpc.bytesOut,
        upstream_error: rpc.upstreamError ?? null,
        trace_id: ids?.traceId ?? null,
        span_id: ids?.spanId ?? null,
      }),
    );
  }

  rejected(rpc: RejectedRpc, endedAt: number): void {
    this.#push(
      JSON.stringify({
        time: new Date().toISOString(),
        msg: 'rpc',
        request_id: this.#requestId(),
        session_id: null,
        subject: rpc.subject ?? null,
        function_id: cut(rpc.functionId),
        version_id: null,
        endpoint: null,
        method: cut(rpc.path),
        status: rpc.http ? null : rpc.status,
        status_name: rpc.http ? null : (STATUS_NAMES[rpc.status] ?? 'UNKNOWN'),
        http_status: rpc.http ? rpc.status : null,
        rejected: true,
        reason: rpc.reason ?? null,
        message: cut(rpc.message),
        duration_ms: ms(endedAt - rpc.startedAt),
        bytes_in: 0,
        bytes_out: 0,
      }),
    );
  }

  /** Writes what is pending; closes the file (not stdout/stderr). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    if (this.#ownsStream) await new Promise<void>((resolve) => this.#out.end(resolve));
  }

  #sampled(): boolean {
    const p = this.#sample;
    return p >= 1 || (p > 0 && Math.random() < p);
  }

  #requestId(): string {
    return `${this.#idPrefix}-${(++this.#seq).toString(36)}`;
  }

  #push(line: string): void {
    if (this.#closed) return;
    this.#pending += line + '\n';
    this.#pendingLines++;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    if (this.#pendingLines === 0) return;
    const chunk = this.#pending;
    const lines = this.#pendingLines;
    this.#pending = '';
    this.#pendingLines = 0;
    if (this.#out.destroyed || this.#out.writableLength > MAX_BACKLOG) {
      this.#onDrop(lines);
      return;
    }
    this.#out.write(chunk);
  };
}

/** Opens the destination of `--access-log` (off | stdout | stderr | a file, appended); undefined for off. */
export async function openAccessLog(target: string, sample: number, onDrop: (lines: number) => void): Promise<AccessLog | undefined> {
  switch (target) {
    case 'off':
      return undefined;
    case 'stdout':
      return new AccessLog(process.stdout, false, sample, onDrop);
    case 'stderr':
      return new AccessLog(process.stderr, false, sample, onDrop);
    default: {
      const stream: WriteStream = createWriteStream(target, { flags: 'a', mode: 0o640 });
      await new Promise<void>((resolve, reject) => {
        stream.once('open', () => resolve());
        stream.once('error', (err) => reject(new Error(`--access-log: cannot open ${target}: ${err.message}`)));
      });
      return new AccessLog(stream, true, sample, onDrop);
    }
  }
}

function ms(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function cut(text: string | undefined): string | null {
  if (text === undefined) return null;
  return text.length > MAX_FIELD ? text.slice(0, MAX_FIELD) : text;
}
