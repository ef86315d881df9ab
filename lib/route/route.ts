// Invocation -> Function (and the version a new session would use). Order matters for what a
// caller can learn: permission is checked on the id before existence, so a key restricted to
// other functions cannot probe which function ids exist.
import { mayInvoke, type Principal } from '../auth/authenticator.ts';
import { grpcError, Status, type GrpcError } from '../grpc/status.ts';
import type { Registry } from '../registry/registry.ts';
import type { RoutableFunction } from '../registry/types.ts';
import type { Invocation } from './invocation.ts';

export function routeInvocation(registry: Registry, principal: Principal, invocation: Invocation): RoutableFunction | GrpcError {
  const { functionId, versionId } = invocation;
  if (!mayInvoke(principal, functionId)) {
    return grpcError(Status.PERMISSION_DENIED, `this credential may not invoke function ${functionId}`);
  }
  const fn = registry.getFunction(functionId);
  if (!fn) return grpcError(Status.NOT_FOUND, `function ${functionId} not found`);
  if (versionId !== undefined && !fn.versions.has(versionId)) {
    return grpcError(Status.NOT_FOUND, `function ${functionId} has no version ${versionId}`);
  }
  return fn;
}
