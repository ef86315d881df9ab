// What a Function's status should say: ready endpoints per version, the Ready condition (why
// not, when not) and, for Functions whose versions name a workload, the Scaling condition.
// Pure: computed from the object, the registry's view, the endpoints and the scaling outcome.
import type { ServiceEndpointLookup } from '../../registry/registry.ts';
import type { FunctionSpec } from '../../registry/types.ts';
import type { ScalingState } from './scaled-objects.ts';

export interface FunctionCondition {
  type: 'Ready' | 'Scaling';
  status: 'True' | 'False';
  reason: string;
  message: string;
  observedGeneration: number | undefined;
  lastTransitionTime: string;
}

export interface FunctionStatus {
  observedGeneration: number | undefined;
  versions: Array<{ versionId: string; readyEndpoints: number }>;
  conditions: FunctionCondition[];
}

export type FunctionState =
  | { readonly kind: 'valid'; readonly spec: FunctionSpec }
  | { readonly kind: 'invalid'; readonly message: string }
  | { readonly kind: 'conflict'; readonly spec: FunctionSpec; readonly others: readonly string[] };

export function desiredStatus(
  state: FunctionState,
  generation: number | undefined,
  endpoints: ServiceEndpointLookup,
  previous: readonly FunctionCondition[] | undefined,
  scaling?: ScalingState | undefined,
): FunctionStatus {
  const versions =
    state.kind === 'invalid'
      ? []
      : state.spec.versions.map((v) => ({
          versionId: v.versionId,
          readyEndpoints:
            v.backend.kind === 'static'
              ? v.backend.endpoints.length
              : endpoints(state.spec.namespace, v.backend.name, v.backend.port).length,
        }));
  let ready: Pick<FunctionCondition, 'status' | 'reason' | 'message'>;
  if (state.kind === 'invalid') {
    ready = { status: 'False', reason: 'InvalidSpec', message: state.message };
  } else if (state.kind === 'conflict') {
    ready = {
      status: 'False',
      reason: 'DuplicateFunctionId',
      message: `functionId ${state.spec.functionId} is also claimed by ${state.others.join(', ')}; the gateway refuses all of them`,
    };
  } else {
    const active = versions.find((v) => v.versionId === state.spec.activeVersion);
    ready =
      active && active.readyEndpoints > 0
        ? { status: 'True', reason: 'EndpointsReady', message: `active version ${active.versionId} has ${active.readyEndpoints} ready endpoint(s)` }
        : { status: 'False', reason: 'NoReadyEndpoints', message: `active version ${state.spec.activeVersion} has no ready endpoint` };
  }
  const condition = (type: FunctionCondition['type'], c: Pick<FunctionCondition, 'status' | 'reason' | 'message'>): FunctionCondition => {
    const before = previous?.find((p) => p.type === type);
    const since = before && before.status === c.status ? before.lastTransitionTime : new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    return { type, ...c, observedGeneration: generation, lastTransitionTime: since };
  };
  const conditions = [condition('Ready', ready)];
  if (scaling !== undefined) conditions.push(condition('Scaling', scaling));
  return { observedGeneration: generation, versions, conditions };
}

/** Equal for writing purposes: a write that would change nothing is not made. */
export function sameStatus(a: FunctionStatus, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(normalise(b));
}

/** The stored status reduced to the fields (and order) desiredStatus produces. */
function normalise(status: unknown): unknown {
  if (typeof status !== 'object' || status === null) return status;
  const s = status as Partial<FunctionStatus>;
  return {
    observedGeneration: s.observedGeneration,
    versions: (s.versions ?? []).map((v) => ({ versionId: v.versionId, readyEndpoints: v.readyEndpoints })),
    conditions: (s.conditions ?? []).map((c) => ({
      type: c.type,
      status: c.status,
      reason: c.reason,
      message: c.message,
      observedGeneration: c.observedGeneration,
      lastTransitionTime: c.lastTransitionTime,
    })),
  };
}
