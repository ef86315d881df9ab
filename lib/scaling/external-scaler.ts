// KEDA's external scaler (externalscaler.ExternalScaler, gRPC) on --scaler-listen. A
// ScaledObject's trigger names a function (`functionId`, optional `versionId`, default the
// active version); fngate answers with that version's open plus waiting sessions over every
// replica, and the per-replica target targetSessionsPerEndpoint. KEDA hands the metric to the
// HPA as an AverageValue, so replicas = ceil(sessions / target); active = any session at all.
import grpc from '@grpc/grpc-js';
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import type { ListenAddress } from '../config/types.ts';
import { loadProto, serviceDefinition } from '../grpc/protos.ts';
import type { RoutableFunction } from '../registry/types.ts';
import type { Logger } from '../telemetry/log.ts';
import type { SessionTotals } from './session-totals.ts';

/** The metric's name, as KEDA asks for it in GetMetrics. */
export const SESSIONS_METRIC = 'sessions';
/** StreamIsActive repeats the state this often, so a dropped stream is noticed. */
export const STREAM_REPEAT_MS = 5000;

interface ScaledObjectRef {
  name: string;
  namespace: string;
  scalerMetadata: Record<string, string>;
}

export interface ExternalScalerOptions {
  readonly address: ListenAddress;
  readonly totals: SessionTotals;
  /** Functions as routing sees them now. */
  readonly lookup: (functionId: string) => RoutableFunction | undefined;
  readonly log: Logger;
}

export interface RunningScaler {
  /** The bound "host:port". */
  readonly address: string;
  close(): Promise<void>;
}

/** The function version a trigger names, or a gRPC error saying what is wrong with it. */
function target(ref: ScaledObjectRef | undefined, lookup: ExternalScalerOptions['lookup']): { fn: RoutableFunction; versionId: string } | grpc.ServiceError {
  const what = `ScaledObject ${ref?.namespace ?? ''}/${ref?.name ?? ''}`;
  const functionId = ref?.scalerMetadata['functionId'];
  if (!functionId) return serviceError(grpc.status.INVALID_ARGUMENT, `${what}: trigger metadata has no functionId`);
  const fn = lookup(functionId);
  if (!fn) return serviceError(grpc.status.NOT_FOUND, `${what}: no Function has functionId ${functionId}`);
  const versionId = ref?.scalerMetadata['versionId'] || fn.activeVersion;
  if (!fn.versions.has(versionId)) return serviceError(grpc.status.NOT_FOUND, `${what}: function ${functionId} has no version ${versionId}`);
  return { fn, versionId };
}

function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

export async function startExternalScaler(opts: ExternalScalerOptions): Promise<RunningScaler> {
  const { totals, lookup, log } = opts;
  const sessionsOf = (fn: RoutableFunction, versionId: string): number => {
    const c = totals.of(fn.functionId, versionId);
    return c.open + c.waiting;
  };
  const server = new grpc.Server();
  const service = serviceDefinition(loadProto('externalscaler.proto'), 'externalscaler.ExternalScaler');
  server.addService(service, {
    IsActive(call: ServerUnaryCall<ScaledObjectRef, unknown>, done: sendUnaryData<unknown>) {
      const t = target(call.request, lookup);
      if (t instanceof Error) return done(t);
      done(null, { result: sessionsOf(t.fn, t.versionId) > 0 });
    },
    GetMetricSpec(call: ServerUnaryCall<ScaledObjectRef, unknown>, done: sendUnaryData<unknown>) {
      const t = target(call.request, lookup);
      if (t instanceof Error) return done(t);
      const size = t.fn.scaling.targetSessionsPerEndpoint;
      done(null, { metricSpecs: [{ metricName: SESSIONS_METRIC, targetSize: size, targetSizeFloat: size }] });
    },
    GetMetrics(call: ServerUnaryCall<{ scaledObjectRef?: ScaledObjectRef; metricName: string }, unknown>, done: sendUnaryData<unknown>) {
      const t = target(call.request.scaledObjectRef, lookup);
      if (t instanceof Error) return done(t);
      const n = sessionsOf(t.fn, t.versionId);
      done(null, { metricValues: [{ metricName: call.request.metricName || SESSIONS_METRIC, metricValue: n, metricValueFloat: n }] });
    },
    StreamIsActive(call: ServerWritableStream<ScaledObjectRef, unknown>) {
      const first = target(call.request, lookup);
      if (first instanceof Error) {
        call.emit('error', first);
        return;
      }
      const { functionId } = first.fn;
      let last: boolean | undefined;
      const send = (force: boolean): void => {
        // Looked up each time: the active version may have been promoted since.
        const t = target(call.request, lookup);
        const active = t instanceof Error ? false : sessionsOf(t.fn, t.versionId) > 0;
        if (!force && active === last) return;
        last = active;
        call.write({ result: active });
      };
      send(true);
      const watched = (key: string): boolean => key.startsWith(`${functionId}/`);
      const unsubscribe = totals.onChange((key) => {
        if (watched(key)) send(false);
      });
      const repeat = setInterval(() => send(true), STREAM_REPEAT_MS);
      const stop = (): void => {
        unsubscribe();
        clearInterval(repeat);
      };
      call.on('cancelled', stop);
      call.on('close', stop);
      call.on('error', stop);
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    const host = opts.address.host.includes(':') ? `[${opts.address.host}]` : opts.address.host;
    server.bindAsync(`${host}:${opts.address.port}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(new Error(`cannot listen on ${opts.address.text} (--scaler-listen): ${err.message}`)) : resolve(bound),
    );
  });
  const address = `${opts.address.host.includes(':') ? `[${opts.address.host}]` : opts.address.host}:${port}`;
  log.info('KEDA external scaler listening', { address, metric: SESSIONS_METRIC });
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        // Open StreamIsActive calls never end by themselves: cut them after a moment.
        setTimeout(() => server.forceShutdown(), 1000).unref();
      }),
  };
}
