// The .proto files the gateway's own gRPC services use (protos/ at the package root), loaded
// with proto-loader, and services taken from them with a clear error when one is missing.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ServiceDefinition } from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/**
 * `protos/<file>`: protos/ sits at the package root, two levels above `lib/<concern>/` and
 * three above `dist/lib/<concern>/`; walking up finds it from either place.
 */
export function findProto(file: string, start: string = import.meta.dirname): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, 'protos', file);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) throw new Error(`protos/${file} not found above ${start}`);
  }
}

export function loadProto(file: string): PackageDefinition {
  return protoLoader.loadSync(findProto(file), LOADER_OPTIONS);
}

/** A service from a package definition, or a clear error (not a crash in addService). */
export function serviceDefinition(def: PackageDefinition, name: string): ServiceDefinition {
  const found = def[name];
  // Message and enum definitions carry `format`; a service is a map of methods.
  if (found === undefined || 'format' in found) throw new Error(`${name}: no such service in the proto`);
  return found as ServiceDefinition;
}
