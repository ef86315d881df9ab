// EndpointSlices -> the ready endpoints of a Service port, as the registry asks for them.
// Ready follows the API's rule: conditions.ready unset means ready; terminating endpoints
// report ready=false and so drop out (open streams on them run on; new sessions go elsewhere).
import type { V1EndpointSlice } from '@kubernetes/client-node';
import type { ServiceEndpointLookup } from '../../registry/registry.ts';
import type { Endpoint } from '../../registry/types.ts';

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** Indexes slices by namespace/service once per change, so lookups are a map hit. */
export function endpointLookup(slices: Iterable<V1EndpointSlice>): ServiceEndpointLookup {
  const byService = new Map<string, V1EndpointSlice[]>();
  for (const slice of slices) {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    const namespace = slice.metadata?.namespace;
    if (service === undefined || namespace === undefined) continue;
    const key = `${namespace}/${service}`;
    const list = byService.get(key);
    if (list) list.push(slice);
    else byService.set(key, [slice]);
  }
  return (namespace, service, port) => readyEndpoints(byService.get(`${namespace}/${service}`) ?? [], port);
}

/**
 * A named port matches the slice port of that name (the Service port's name); a number
 * matches the slice port with that number (the port the pods listen on).
 */
function readyEndpoints(slices: readonly V1EndpointSlice[], port: string | number): Endpoint[] {
  const out: Endpoint[] = [];
  const seen = new Set<string>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    const match = slice.ports?.find((p) => (typeof port === 'number' ? p.port === port : p.name === port));
    const number = match?.port;
    if (number === undefined || number === null) continue;
    for (const endpoint of slice.endpoints ?? []) {
      if (endpoint.conditions?.ready === false) continue;
      for (const address of endpoint.addresses) {
        const host = address.includes(':') ? `[${address}]` : address;
        const key = `${host}:${number}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push({ host: address, port: number, key });
      }
    }
  }
  return out;
}
