// The example function `fngate local` serves: helloworld.Greeter (protos/greeter.proto)
// on a plaintext (h2c) grpc-js server, plus grpc.health.v1.Health so probes work too.
import grpc from '@grpc/grpc-js';
import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';
import { findProto, LOADER_OPTIONS, serviceDefinition } from '../grpc/protos.ts';

export const GREETER_SERVICE = 'helloworld.Greeter';

export interface GreeterBackend {
  /** `host:port` to dial (IPv6 hosts in brackets). */
  address: string;
  port: number;
  stop(): Promise<void>;
}

// Limits keep one request from tying the server up; the defaults match the proto comments.
const STREAM_COUNT_DEFAULT = 3;
const STREAM_COUNT_MAX = 1000;
const STREAM_INTERVAL_DEFAULT_MS = 200;
const STREAM_INTERVAL_MAX_MS = 60_000;

/** protos/greeter.proto, found from `start` (see findProto). */
export function findGreeterProto(start: string = import.meta.dirname): string {
  return findProto('greeter.proto', start);
}

export function loadGreeterDefinition(): PackageDefinition {
  return protoLoader.loadSync(findGreeterProto(), LOADER_OPTIONS);
}

export { serviceDefinition };

interface HelloRequest { name: string }
interface HelloStreamRequest { name: string; count: number; interval_ms: number }
interface HelloReply { message: string }

const greeting = (name: string): string => `Hello, ${name === '' ? 'world' : name}!`;

// proto3 cannot tell 0 from unset, so 0 (or nonsense) means "use the default".
function bounded(value: number, fallback: number, max: number): number {
  return Number.isFinite(value) && value > 0 ? Math.min(Math.trunc(value), max) : fallback;
}

function sayHello(call: ServerUnaryCall<HelloRequest, HelloReply>, callback: sendUnaryData<HelloReply>): void {
  callback(null, { message: greeting(call.request.name) });
}

function sayHelloStream(call: ServerWritableStream<HelloStreamRequest, HelloReply>): void {
  const count = bounded(call.request.count, STREAM_COUNT_DEFAULT, STREAM_COUNT_MAX);
  const interval = bounded(call.request.interval_ms, STREAM_INTERVAL_DEFAULT_MS, STREAM_INTERVAL_MAX_MS);
  const message = greeting(call.request.name);
  let sent = 0;
  let timer: NodeJS.Timeout | undefined;
  const next = (): void => {
    if (call.cancelled) return;
    sent += 1;
    call.write({ message: `${message} (${sent}/${count})` });
    if (sent < count) timer = setTimeout(next, interval);
    else call.end();
  };
  call.on('cancelled', () => clearTimeout(timer));
  next();
}

function chat(call: ServerDuplexStream<HelloRequest, HelloReply>): void {
  call.on('data', (req: HelloRequest) => call.write({ message: greeting(req.name) }));
  call.on('end', () => call.end());
  call.on('error', () => {}); // a client that goes away is not a server error
}

// grpc.health.v1 inline, so the package needs no second proto file.
const HEALTH_JSON: Parameters<typeof protoLoader.fromJSON>[0] = {
  nested: { grpc: { nested: { health: { nested: { v1: { nested: {
    HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
    HealthCheckResponse: {
      fields: { status: { type: 'ServingStatus', id: 1 } },
      nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
    },
    Health: {
      methods: {
        // protobufjs' IMethod type requires `comment`.
        Check: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse', comment: '' },
        Watch: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse', responseStream: true, comment: '' },
      },
    },
  } } } } } } },
};

interface HealthRequest { service: string }
interface HealthResponse { status: string }

const servingStatus = (service: string): string => (service === '' || service === GREETER_SERVICE ? 'SERVING' : 'SERVICE_UNKNOWN');

const healthImpl = {
  Check(call: ServerUnaryCall<HealthRequest, HealthResponse>, callback: sendUnaryData<HealthResponse>): void {
    const status = servingStatus(call.request.service);
    if (status === 'SERVICE_UNKNOWN') callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${call.request.service}` });
    else callback(null, { status });
  },
  // Status never changes while the server runs: send it once and hold the stream open.
  Watch(call: ServerWritableStream<HealthRequest, HealthResponse>): void {
    call.write({ status: servingStatus(call.request.service) });
  },
};

export async function startGreeterBackend(opts: { host?: string; port?: number } = {}): Promise<GreeterBackend> {
  const host = opts.host ?? '127.0.0.1';
  const server = new grpc.Server();
  server.addService(serviceDefinition(loadGreeterDefinition(), GREETER_SERVICE), {
    SayHello: sayHello,
    SayHelloStream: sayHelloStream,
    Chat: chat,
  });
  server.addService(serviceDefinition(protoLoader.fromJSON(HEALTH_JSON, LOADER_OPTIONS), 'grpc.health.v1.Health'), healthImpl);
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${hostPart}:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(err);
      else resolve(bound);
    });
  });
  return {
    address: `${hostPart}:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        // Graceful first; open streams (Watch, a long SayHelloStream) would hold it forever.
        const force = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
