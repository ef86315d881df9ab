// The test Echo service (test/protos/echo.proto), loaded once with proto-loader.
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';

export const ECHO_PROTO = fileURLToPath(new URL('../protos/echo.proto', import.meta.url));

export interface EchoRequest {
  payload?: Uint8Array;
  /** ServerStream: number of replies (default 1). */
  count?: number;
  /** ServerStream: payload bytes per reply. */
  reply_size?: number;
}

export interface EchoReply {
  backend: string;
  received_bytes: number;
  received_messages: number;
  payload: Buffer;
  /** Request metadata as the backend saw it: sorted "key: value" lines (-bin values base64). */
  metadata: string;
  peer: string;
}

export interface EchoService {
  Unary: MethodDefinition<EchoRequest, EchoReply>;
  ClientStream: MethodDefinition<EchoRequest, EchoReply>;
  ServerStream: MethodDefinition<EchoRequest, EchoReply>;
  Bidi: MethodDefinition<EchoRequest, EchoReply>;
}

const packageDefinition = protoLoader.loadSync(ECHO_PROTO, {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});

/** For `server.addService()` and client constructors. */
export const echoService = packageDefinition['fngate.test.Echo'] as ServiceDefinition;
/** The same, typed per method. */
export const echoMethods = echoService as unknown as EchoService;

/** Method paths, e.g. `/fngate.test.Echo/Unary`, for raw HTTP/2 tests. */
export const ECHO_PATHS = {
  Unary: echoMethods.Unary.path,
  ClientStream: echoMethods.ClientStream.path,
  ServerStream: echoMethods.ServerStream.path,
  Bidi: echoMethods.Bidi.path,
} as const;

/** Protobuf bytes of a request (without the 5-byte gRPC prefix). */
export const encodeEchoRequest = (req: EchoRequest): Buffer => echoMethods.Unary.requestSerialize(req);
/** Parses a reply's protobuf bytes (without the gRPC prefix). */
export const decodeEchoReply = (bytes: Buffer): EchoReply => echoMethods.Unary.responseDeserialize(bytes);

/** `size` bytes of the repeating 0..255 pattern (the same as test/python/echo_client.py sends). */
export function patternBytes(size: number): Buffer {
  return size === 0 ? Buffer.alloc(0) : Buffer.alloc(size, PATTERN);
}

const PATTERN = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
