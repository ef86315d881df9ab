// A request's decoded fields ([name, value, ...]) as the by-name record the pipeline reads
// (metadata, credentials, routing, tracing). Repeated fields combine as HTTP says they do, so a
// repeated function-id or grpc-timeout reads as one malformed value, never as the first one.
import { SINGLE_VALUE_FIELDS } from '../forward/headers.ts';
import type { RequestHeaders } from '../telemetry/events.ts';

export function requestHeaders(fields: readonly string[]): RequestHeaders {
  const out: Record<string, string | string[] | undefined> = Object.create(null) as Record<string, string | string[] | undefined>;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    const seen = out[name];
    if (seen === undefined) out[name] = name === 'set-cookie' ? [value] : value;
    else if (name === 'set-cookie') (seen as string[]).push(value);
    else if (SINGLE_VALUE_FIELDS.has(name)) continue;
    else out[name] = `${seen as string}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}
