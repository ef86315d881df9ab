// The gateway's own grpc.health.v1.Health (Check and Watch), answered when a call carries no
// function-id. The messages are tiny, so they are encoded by hand rather than through a
// protobuf runtime on the data plane.
import type { ServerHttp2Stream } from 'node:http2';
import { grpcError, respondTrailersOnly, Status, statusFields } from '../grpc/status.ts';
import { failConnection, type InternalErrorSink } from '../runtime/contain.ts';

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
export const HEALTH_WATCH_PATH = '/grpc.health.v1.Health/Watch';

/** HealthCheckResponse.ServingStatus */
const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;

/** A health request is one short service name; anything larger is not one. */
const MAX_REQUEST_BYTES = 4096;

export function isHealthPath(path: string | undefined): boolean {
  return path === HEALTH_CHECK_PATH || path === HEALTH_WATCH_PATH;
}

/** Serving state of the gateway as a whole ("" service), with its Watch subscribers. */
export class GatewayHealth {
  #serving = true;
  readonly #watchers = new Set<ServerHttp2Stream>();
  readonly #report: InternalErrorSink;

  /** `report` is told of an exception in a health call's handlers (its connection is then closed). */
  constructor(report: InternalErrorSink) {
    this.#report = report;
  }

  get serving(): boolean {
    return this.#serving;
  }

  /** Draining: NOT_SERVING to every watcher, whose streams then end so the drain can finish. */
  stopServing(): void {
    this.#serving = false;
    for (const stream of this.#watchers) {
      writeStatus(stream, NOT_SERVING);
      endWatch(stream);
    }
    this.#watchers.clear();
  }

  serve(stream: ServerHttp2Stream, path: string): void {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        respondTrailersOnly(stream, grpcError(Status.RESOURCE_EXHAUSTED, 'health check request too large'));
        return;
      }
      chunks.push(chunk);
    });
    stream.on('end', () => {
      try {
        this.#answer(stream, path, chunks);
      } catch (err) {
        failConnection(stream.session, 'health check', err, this.#report);
      }
    });
  }

  #answer(stream: ServerHttp2Stream, path: string, chunks: Buffer[]): void {
    if (stream.headersSent || stream.closed || stream.destroyed) return;
    const service = parseServiceName(Buffer.concat(chunks));
    if (service === undefined) {
      respondTrailersOnly(stream, grpcError(Status.INVALID_ARGUMENT, 'malformed HealthCheckRequest'));
    } else if (path === HEALTH_CHECK_PATH) {
      this.#check(stream, service);
    } else {
      this.#watch(stream, service);
    }
  }

  #check(stream: ServerHttp2Stream, service: string): void {
    if (service !== '') {
      respondTrailersOnly(stream, grpcError(Status.NOT_FOUND, `unknown service "${service}" (the gateway reports only "")`));
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(statusFields(grpcError(Status.OK, ''))));
    writeStatus(stream, this.#serving ? SERVING : NOT_SERVING);
    stream.end();
  }

  #watch(stream: ServerHttp2Stream, service: string): void {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    // An unknown service stays open, as the health protocol asks, until the client cancels.
    writeStatus(stream, service !== '' ? SERVICE_UNKNOWN : this.#serving ? SERVING : NOT_SERVING);
    if (!this.#serving) {
      endWatch(stream);
      return;
    }
    this.#watchers.add(stream);
    stream.once('close', () => this.#watchers.delete(stream));
  }
}

function writeStatus(stream: ServerHttp2Stream, status: number): void {
  if (stream.closed || stream.destroyed) return;
  // gRPC frame: uncompressed, length 2, then field 1 (varint) = status.
  stream.write(Buffer.from([0, 0, 0, 0, 2, 0x08, status]));
}

function endWatch(stream: ServerHttp2Stream): void {
  if (stream.closed || stream.destroyed) return;
  stream.once('wantTrailers', () => stream.sendTrailers(statusFields(grpcError(Status.UNAVAILABLE, 'gateway is draining'))));
  stream.end();
}

/** HealthCheckRequest.service from one gRPC frame; "" for an empty body; undefined if malformed. */
export function parseServiceName(body: Buffer): string | undefined {
  if (body.length === 0) return '';
  if (body.length < 5 || body[0] !== 0) return undefined; // compressed requests are not accepted here
  const length = body.readUInt32BE(1);
  if (length !== body.length - 5) return undefined;
  let service = '';
  let i = 5;
  while (i < body.length) {
    const tag = readVarint(body, i);
    if (!tag) return undefined;
    i = tag.next;
    const field = tag.value >>> 3;
    const wire = tag.value & 7;
    if (wire === 0) {
      const v = readVarint(body, i);
      if (!v) return undefined;
      i = v.next;
    } else if (wire === 2) {
      const len = readVarint(body, i);
      if (!len || len.next + len.value > body.length) return undefined;
      if (field === 1) service = body.toString('utf8', len.next, len.next + len.value);
      i = len.next + len.value;
    } else if (wire === 1 || wire === 5) {
      i += wire === 1 ? 8 : 4;
      if (i > body.length) return undefined;
    } else {
      return undefined;
    }
  }
  return service;
}

function readVarint(buf: Buffer, start: number): { value: number; next: number } | undefined {
  let value = 0;
  for (let i = start, shift = 0; i < buf.length && shift < 35; i++, shift += 7) {
    const b = buf[i] as number;
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return { value, next: i + 1 };
  }
  return undefined;
}

