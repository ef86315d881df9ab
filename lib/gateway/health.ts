// The gateway's own grpc.health.v1.Health (Check and Watch), answered when a call carries no
// function-id. The messages are tiny, so they are encoded by hand rather than through a
// protobuf runtime on the data plane.
import type { H2Stream, StreamHandler } from '../h2/stream.ts';
import { grpcError, respondTrailersOnly, Status, statusFields } from '../grpc/status.ts';

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
  readonly #watchers = new Set<H2Stream>();

  /** Draining: NOT_SERVING to every watcher, whose streams then end so the drain can finish. */
  stopServing(): void {
    this.#serving = false;
    for (const stream of this.#watchers) {
      writeStatus(stream, NOT_SERVING);
      endWatch(stream);
    }
    this.#watchers.clear();
  }

  /** Answers a health call on `stream` once its request (one small message) has arrived. */
  serve(stream: H2Stream, path: string, endStream: boolean): void {
    const request: HealthRequest = { health: this, path, chunks: [], size: 0 };
    stream.context = request;
    stream.handler = HEALTH_REQUEST;
    if (endStream) this.answer(stream, request);
  }

  answer(stream: H2Stream, request: HealthRequest): void {
    if (stream.headersSent || stream.closed) return;
    const service = parseServiceName(Buffer.concat(request.chunks));
    if (service === undefined) {
      respondTrailersOnly(stream, grpcError(Status.INVALID_ARGUMENT, 'malformed HealthCheckRequest'));
    } else if (request.path === HEALTH_CHECK_PATH) {
      this.#check(stream, service);
    } else {
      this.#watch(stream, service);
    }
  }

  /** A Watch stream ended (the client cancelled or went away). */
  forget(stream: H2Stream): void {
    this.#watchers.delete(stream);
  }

  #check(stream: H2Stream, service: string): void {
    if (service !== '') {
      respondTrailersOnly(stream, grpcError(Status.NOT_FOUND, `unknown service "${service}" (the gateway reports only "")`));
      return;
    }
    stream.writeHeaders(GRPC_RESPONSE, false);
    writeStatus(stream, this.#serving ? SERVING : NOT_SERVING);
    stream.writeTrailers(statusFields(grpcError(Status.OK, '')));
  }

  #watch(stream: H2Stream, service: string): void {
    stream.writeHeaders(GRPC_RESPONSE, false);
    // An unknown service stays open, as the health protocol asks, until the client cancels.
    writeStatus(stream, service !== '' ? SERVICE_UNKNOWN : this.#serving ? SERVING : NOT_SERVING);
    if (!this.#serving) {
      endWatch(stream);
      return;
    }
    this.#watchers.add(stream);
  }
}

interface HealthRequest {
  readonly health: GatewayHealth;
  readonly path: string;
  readonly chunks: Buffer[];
  size: number;
}

const GRPC_RESPONSE = [':status', '200', 'content-type', 'application/grpc'];

/** Gathers the request (at most MAX_REQUEST_BYTES), answers at its end, forgets a Watch that ends. */
const HEALTH_REQUEST: StreamHandler = {
  onData(stream, data, endStream) {
    const request = stream.context as HealthRequest;
    stream.consume(data.length);
    request.size += data.length;
    if (request.size > MAX_REQUEST_BYTES) {
      respondTrailersOnly(stream, grpcError(Status.RESOURCE_EXHAUSTED, 'health check request too large'));
      return;
    }
    request.chunks.push(Buffer.from(data));
    if (endStream) request.health.answer(stream, request);
  },
  onHeaders(stream, _fields, endStream) {
    if (endStream) (stream.context as HealthRequest).health.answer(stream, stream.context as HealthRequest);
  },
  onClose(stream) {
    (stream.context as HealthRequest).health.forget(stream);
  },
  onWritable() {},
};

function writeStatus(stream: H2Stream, status: number): void {
  if (stream.closed) return;
  // gRPC frame: uncompressed, length 2, then field 1 (varint) = status.
  stream.writeData(Buffer.from([0, 0, 0, 0, 2, 0x08, status]));
}

function endWatch(stream: H2Stream): void {
  if (stream.closed) return;
  stream.writeTrailers(statusFields(grpcError(Status.UNAVAILABLE, 'gateway is draining')));
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

