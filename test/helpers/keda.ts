// A client of KEDA's external scaler service built from KEDA's own externalscaler.proto
// (`make keda-files` fetches it from KEDA's Go module), as KEDA's operator would call fngate.
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

export const KEDA_PROTO = fileURLToPath(new URL('../../.cache/keda-v2.21.1/externalscaler.proto', import.meta.url));

interface ScalerClient extends grpc.Client {
  IsActive(ref: object, cb: (err: grpc.ServiceError | null, res: { result: boolean }) => void): void;
  GetMetricSpec(ref: object, cb: (err: grpc.ServiceError | null, res: { metricSpecs: Array<{ metricName: string; targetSize: string; targetSizeFloat: number }> }) => void): void;
  GetMetrics(req: object, cb: (err: grpc.ServiceError | null, res: { metricValues: Array<{ metricName: string; metricValue: string; metricValueFloat: number }> }) => void): void;
  StreamIsActive(ref: object): grpc.ClientReadableStream<{ result: boolean }>;
  StreamMetricSpec(ref: object): grpc.ClientReadableStream<unknown>;
}

/** A client of KEDA's ExternalScaler service, from KEDA's .proto. */
export function kedaScalerClient(address: string): ScalerClient {
  const def = protoLoader.loadSync(KEDA_PROTO, { keepCase: true, longs: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { externalscaler: { ExternalScaler: new (a: string, c: grpc.ChannelCredentials) => ScalerClient } };
  return new pkg.externalscaler.ExternalScaler(address, grpc.credentials.createInsecure());
}

/** Calls a unary method of the scaler as a promise. */
export function ask<T>(fn: (req: object, cb: (err: grpc.ServiceError | null, res: T) => void) => void, req: object): Promise<T> {
  return new Promise((resolve, reject) => fn(req, (err, res) => (err ? reject(err) : resolve(res))));
}

