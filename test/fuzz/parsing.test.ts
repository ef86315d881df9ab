// Property-based fuzzing (fast-check) of everything the gateway parses from a client before a
// call reaches a function: the invocation metadata (readInvocation), grpc-timeout
// (parseGrpcTimeout), the authorization header (Authenticator, with a registry of keys), routing
// (routeInvocation), session ids (SessionKeyRing), the gateway's own HealthCheckRequest
// (parseServiceName) and the encoding of its grpc-message (encodeGrpcMessage). For any input: no throw, a value or a GrpcError with a
// real gRPC status code, never INTERNAL; and the parsers' own properties hold (valid ids round
// trip, a timeout parses exactly when it matches the grammar, grpc-message is printable ASCII and
// decodes back, a service name round-trips through protobuf framing with unknown fields around it).
//
// FUZZ_RUNS runs per property (default 2000: a few seconds in `make test`); `make fuzz` runs
// many more. A failure prints fast-check's seed and path; FUZZ_SEED=<seed> replays it.
import t from 'tap';
import fc from 'fast-check';
import type { IncomingHttpHeaders } from 'node:http2';
import { createHash } from 'node:crypto';
import { Authenticator, type Principal } from '../../lib/auth/authenticator.ts';
import { parseServiceName } from '../../lib/gateway/health.ts';
import { encodeGrpcMessage, isGrpcError, Status, type GrpcError } from '../../lib/grpc/status.ts';
import { parseGrpcTimeout } from '../../lib/grpc/timeout.ts';
import { Registry } from '../../lib/registry/registry.ts';
import { NO_SCALING, type FunctionSpec } from '../../lib/registry/types.ts';
import { MAX_SESSION_ID, readInvocation, type Invocation } from '../../lib/route/invocation.ts';
import { routeInvocation } from '../../lib/route/route.ts';
import { SessionKeyRing } from '../../lib/sessions/session-token.ts';
import { decodeGrpcMessage } from '../helpers/http2-raw.ts';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 2000);
const SEED = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);
const params = (scale = 1): { numRuns: number; seed?: number } => ({ numRuns: Math.max(1, Math.round(RUNS * scale)), ...(SEED === undefined ? {} : { seed: SEED }) });

const CODES = new Set<number>(Object.values(Status));

/** A GrpcError with a real status code, never INTERNAL (a parser failing is not the gateway failing). */
function checkError(e: GrpcError, allowed: readonly number[]): void {
  if (!CODES.has(e.code)) throw new Error(`not a gRPC status code: ${e.code}`);
  if (e.code === Status.INTERNAL) throw new Error(`INTERNAL: ${e.message}`);
  if (!allowed.includes(e.code)) throw new Error(`unexpected status ${e.code} (${e.message}), expected one of ${allowed.join(', ')}`);
  if (typeof e.message !== 'string' || e.message.length === 0) throw new Error('an error without a message');
}

// --- arbitraries ----------------------------------------------------------------------------

const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-';
/** A valid function or version id: 1-128 characters of A-Za-z0-9._- */
const validId = fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 128 });
/** Lone UTF-16 surrogates: strings JavaScript allows and UTF-8 cannot encode. */
const loneSurrogates = fc.string({ unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 4 });
/** Any text: ASCII, any code point, lone surrogates, near-valid ids. */
const anyText = fc.oneof(
  fc.string({ unit: 'binary-ascii', maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  loneSurrogates,
  validId,
  validId.map((id) => `${id}/`),
  fc.constant(''),
  fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 129, maxLength: 300 }),
);
/** A header value as node:http2 may deliver it: absent, one string, or repeated. */
const headerValue = fc.oneof(fc.constant(undefined), anyText, fc.array(anyText, { minLength: 0, maxLength: 3 }));

const uuid = fc.uuid();

// --- grpc-timeout ---------------------------------------------------------------------------

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
const TIMEOUT_GRAMMAR = /^[0-9]{1,8}[HMSmun]$/;
/** 0-10 ASCII digits (the grammar allows 1-8), lengths spread evenly so the bounds are hit often. */
const digitRun = fc.integer({ min: 0, max: 10 }).chain((n) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: n, maxLength: n }));
const validTimeout = fc.tuple(digitRun.filter((d) => d.length >= 1 && d.length <= 8), fc.constantFrom('H', 'M', 'S', 'm', 'u', 'n')).map(([d, u]) => d + u);
/** Digits and a unit, either of which may be out of the grammar. */
const timeoutLike = fc.tuple(digitRun, fc.constantFrom('H', 'M', 'S', 'm', 'u', 'n', 'h', 's', 'U', 'N', '', ' ', '0')).map(([d, u]) => d + u);
/** Near misses: a valid timeout with one character changed, inserted or removed. */
const mutatedTimeout = fc.tuple(validTimeout, fc.nat(), fc.string({ unit: 'binary', minLength: 0, maxLength: 2 }), fc.boolean()).map(([s, at, chars, insert]) => {
  const i = at % (s.length + 1);
  return insert ? s.slice(0, i) + chars + s.slice(i) : s.slice(0, i) + chars + s.slice(i + 1);
});

t.test('parseGrpcTimeout', async (t) => {
  t.test('never throws; a value exactly when the text matches TimeoutValue TimeoutUnit', async (t) => {
    fc.assert(
      fc.property(fc.oneof(validTimeout, timeoutLike, mutatedTimeout, anyText), (text) => {
        const ms = parseGrpcTimeout(text);
        const valid = TIMEOUT_GRAMMAR.test(text);
        if (valid !== (ms !== undefined)) throw new Error(`${JSON.stringify(text)}: grammar says ${valid}, parser says ${ms}`);
        if (ms !== undefined && !(Number.isInteger(ms) && ms >= 0)) throw new Error(`${JSON.stringify(text)}: ${ms} is not a whole number of ms`);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('the value is the duration rounded up to whole ms (a tiny non-zero timeout is 1 ms, never 0)', async (t) => {
    fc.assert(
      fc.property(validTimeout, (text) => {
        const digits = Number(text.slice(0, -1));
        const exact = digits * (UNIT_MS[text.slice(-1)] ?? NaN);
        const ms = parseGrpcTimeout(text) as number;
        const expected = exact > 0 && exact < 1 ? 1 : Math.ceil(exact);
        // Floating point: u and n scale by 1e-3/1e-6; allow the last ms of rounding either way.
        if (Math.abs(ms - expected) > 1 || (digits > 0 && ms === 0)) throw new Error(`${text}: ${ms} ms, expected ${expected}`);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });
});

// --- readInvocation -------------------------------------------------------------------------

/** Request headers: the invocation keys with any value, plus noise. */
const headersArb = fc.record(
  {
    'function-id': headerValue,
    'function-version-id': headerValue,
    'nvcf-reqid': headerValue,
    cookie: headerValue,
    'x-other': headerValue,
  },
  { requiredKeys: [] },
);

function asHeaders(record: Record<string, string | string[] | undefined>): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(record)) if (v !== undefined) out[k] = v;
  return out;
}

t.test('readInvocation', async (t) => {
  t.test('never throws: an Invocation or INVALID_ARGUMENT / NOT_FOUND', async (t) => {
    fc.assert(
      fc.property(headersArb, (record) => {
        const headers = asHeaders(record);
        const r = readInvocation(headers);
        if (isGrpcError(r)) {
          checkError(r, [Status.INVALID_ARGUMENT, Status.NOT_FOUND]);
          return;
        }
        // A successful read only ever carries what the client sent, validated.
        if (typeof headers['function-id'] !== 'string' || r.functionId !== headers['function-id']) throw new Error('functionId is not the header');
        if (!/^[A-Za-z0-9._-]{1,128}$/.test(r.functionId)) throw new Error(`invalid functionId accepted: ${r.functionId}`);
        if (r.versionId !== undefined && !/^[A-Za-z0-9._-]{1,128}$/.test(r.versionId)) throw new Error(`invalid versionId accepted: ${r.versionId}`);
        if (r.sessionId !== undefined && (r.sessionId === '' || r.sessionId.length > MAX_SESSION_ID)) throw new Error('unbounded session id accepted');
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('valid ids round-trip; the session id comes from nvcf-reqid, else the cookie', async (t) => {
    const cookiePart = fc.tuple(fc.stringMatching(/^[a-z_]{1,10}$/), fc.stringMatching(/^[A-Za-z0-9]{0,10}$/)).map(([k, v]) => `${k}=${v}`);
    fc.assert(
      fc.property(
        validId,
        fc.option(validId, { nil: undefined }),
        fc.option(uuid, { nil: undefined }),
        fc.option(uuid, { nil: undefined }),
        fc.array(cookiePart, { maxLength: 3 }),
        fc.array(cookiePart, { maxLength: 3 }),
        (functionId, versionId, reqid, cookieId, before, after) => {
          const headers: IncomingHttpHeaders = { 'function-id': functionId };
          if (versionId !== undefined) headers['function-version-id'] = versionId;
          if (reqid !== undefined) headers['nvcf-reqid'] = reqid;
          if (cookieId !== undefined) headers.cookie = [...before, `nvcf-request-id=${cookieId}`, ...after].join('; ');
          const r = readInvocation(headers);
          const expected: Invocation = { functionId, versionId, sessionId: reqid ?? cookieId };
          if (isGrpcError(r)) throw new Error(`refused: ${r.message}`);
          if (r.functionId !== expected.functionId || r.versionId !== expected.versionId || r.sessionId !== expected.sessionId) {
            throw new Error(`${JSON.stringify(r)} !== ${JSON.stringify(expected)}`);
          }
        },
      ),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('a missing, empty, repeated or malformed function-id is INVALID_ARGUMENT', async (t) => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(undefined), fc.constant(''), fc.array(validId, { minLength: 2, maxLength: 3 }), anyText.filter((s) => !/^[A-Za-z0-9._-]{1,128}$/.test(s))),
        (functionId) => {
          const r = readInvocation(asHeaders({ 'function-id': functionId }));
          if (!isGrpcError(r) || r.code !== Status.INVALID_ARGUMENT) throw new Error(`accepted ${JSON.stringify(functionId)}`);
        },
      ),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });
});

// --- Authenticator and routing --------------------------------------------------------------

const FUNCTIONS = ['fn-a', 'fn-b', 'fn.c_1'];
const KEYS = [
  { name: 'all', token: 'fngk_all_0123456789abcdef', functions: '*' as const },
  { name: 'only-a', token: 'fngk_only_a_0123456789', functions: new Set(['fn-a']) },
  { name: 'b-and-c', token: 'a-key with spaces? no: "quoted"', functions: new Set(['fn-b', 'fn.c_1']) },
];
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

function makeRegistry(): Registry {
  const registry = new Registry();
  registry.replaceApiKeys(KEYS.map((k) => ({ name: k.name, sha256: sha256(k.token), functions: k.functions })));
  const specs: FunctionSpec[] = FUNCTIONS.map((functionId, i) => ({
    name: `f${i}`,
    namespace: 'default',
    functionId,
    activeVersion: 'v1',
    maxSessionsPerEndpoint: 0,
    scaling: NO_SCALING,
    versions: [
      { versionId: 'v1', backend: { kind: 'static', endpoints: ['127.0.0.1:1'] } },
      { versionId: 'v2', backend: { kind: 'static', endpoints: ['127.0.0.1:2'] } },
    ],
    origin: `fuzz/${functionId}`,
  }));
  registry.replaceFunctions(specs);
  return registry;
}

/** "Bearer" in any letter case. */
const bearerWord = fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }).map((upper) => [...'bearer'].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''));
/** An authorization header: a known key (any scheme case, padded), a near miss, or anything. */
const authorizationArb = fc.oneof(
  fc.tuple(bearerWord, fc.constantFrom(...KEYS.map((k) => k.token)), fc.stringMatching(/^[ \t]{0,3}$/)).map(([b, tok, pad]) => `${b} ${tok}${pad}`),
  fc.tuple(fc.constantFrom(...KEYS.map((k) => k.token)), fc.nat(), anyText).map(([tok, at, s]) => `Bearer ${tok.slice(0, at % tok.length)}${s}`),
  anyText.map((s) => `Bearer ${s}`),
  fc.constantFrom('Bearer', 'Bearer ', 'Bearer  ', 'Basic abc', 'bearer\tx', 'Bearerx y'),
  anyText,
);

t.test('Authenticator', async (t) => {
  const registry = makeRegistry();
  const auth = new Authenticator(registry);

  t.test('never throws, never awaits without a JWT verifier: a Principal or UNAUTHENTICATED', async (t) => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(undefined), authorizationArb, fc.array(authorizationArb, { minLength: 1, maxLength: 3 })), (authorization) => {
        const r = auth.authenticate(authorization);
        if (r instanceof Promise) throw new Error('a Promise without a verifier');
        if (isGrpcError(r)) {
          checkError(r, [Status.UNAUTHENTICATED]);
          return;
        }
        const key = KEYS.find((k) => k.name === r.subject);
        if (!key || typeof authorization !== 'string' || authorization.slice(7).trim() !== key.token) throw new Error(`${JSON.stringify(authorization)} authenticated as ${r.subject}`);
        // The cached answer is the same answer.
        const again = auth.authenticate(authorization);
        if (isGrpcError(again as Principal | GrpcError) || (again as Principal).subject !== r.subject) throw new Error('a different answer the second time');
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('every known key authenticates, whatever the case of "Bearer" and trailing blanks', async (t) => {
    fc.assert(
      fc.property(bearerWord, fc.constantFrom(...KEYS), fc.stringMatching(/^[ \t]{0,3}$/), (b, key, pad) => {
        const r = auth.authenticate(`${b} ${key.token}${pad}`);
        if (r instanceof Promise || isGrpcError(r) || r.subject !== key.name) throw new Error(`${b} ${key.name}: ${JSON.stringify(r)}`);
      }),
      params(0.25),
    );
    t.pass('known keys');
  });

  t.test('routing any principal to any invocation: a Function, PERMISSION_DENIED or NOT_FOUND', async (t) => {
    const idArb = fc.oneof(fc.constantFrom(...FUNCTIONS), validId);
    const versionArb = fc.oneof(fc.constant(undefined), fc.constantFrom('v1', 'v2'), validId);
    fc.assert(
      fc.property(fc.constantFrom(...KEYS), idArb, versionArb, fc.option(uuid, { nil: undefined }), (key, functionId, versionId, sessionId) => {
        const principal: Principal = { subject: key.name, functions: key.functions };
        const r = routeInvocation(registry, principal, { functionId, versionId, sessionId });
        const allowed = key.functions === '*' || key.functions.has(functionId);
        const exists = FUNCTIONS.includes(functionId);
        if (isGrpcError(r)) {
          checkError(r, [Status.PERMISSION_DENIED, Status.NOT_FOUND]);
          // Permission is decided before existence: a restricted key learns nothing about other ids.
          if (!allowed && r.code !== Status.PERMISSION_DENIED) throw new Error(`${key.name} -> ${functionId}: ${r.code}, expected PERMISSION_DENIED`);
          if (allowed && exists && (versionId === undefined || versionId === 'v1' || versionId === 'v2')) throw new Error(`refused a good call: ${r.message}`);
          return;
        }
        if (!allowed || !exists || r.functionId !== functionId) throw new Error(`${key.name} routed to ${r.functionId} for ${functionId}`);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('the whole pre-forwarding pipeline: only 3, 5, 7 or 16, never a throw', async (t) => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(undefined), authorizationArb), headersArb, fc.oneof(fc.constant(undefined), validTimeout, mutatedTimeout, anyText), (authorization, record, timeout) => {
        // As Gateway#invoke orders the steps.
        const principal = auth.authenticate(authorization);
        if (principal instanceof Promise) throw new Error('a Promise without a verifier');
        if (isGrpcError(principal)) return checkError(principal, [Status.UNAUTHENTICATED]);
        const invocation = readInvocation(asHeaders(record));
        if (isGrpcError(invocation)) return checkError(invocation, [Status.INVALID_ARGUMENT, Status.NOT_FOUND]);
        if (timeout !== undefined) parseGrpcTimeout(timeout);
        const fn = routeInvocation(registry, principal, invocation);
        if (isGrpcError(fn)) checkError(fn, [Status.PERMISSION_DENIED, Status.NOT_FOUND]);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });
});

// --- parseServiceName -----------------------------------------------------------------------

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

/** A protobuf field that HealthCheckRequest does not know (field 2..20, any wire type it accepts). */
const unknownField = fc.oneof(
  fc.tuple(fc.integer({ min: 2, max: 20 }), fc.nat()).map(([f, v]) => Buffer.from([...varint((f << 3) | 0), ...varint(v)])),
  fc.tuple(fc.integer({ min: 2, max: 20 }), fc.uint8Array({ maxLength: 40 })).map(([f, b]) => Buffer.from([...varint((f << 3) | 2), ...varint(b.length), ...b])),
  fc.tuple(fc.integer({ min: 2, max: 20 }), fc.uint8Array({ minLength: 8, maxLength: 8 })).map(([f, b]) => Buffer.from([...varint((f << 3) | 1), ...b])),
  fc.tuple(fc.integer({ min: 2, max: 20 }), fc.uint8Array({ minLength: 4, maxLength: 4 })).map(([f, b]) => Buffer.from([...varint((f << 3) | 5), ...b])),
);

const serviceField = (name: string): Buffer => {
  const bytes = Buffer.from(name, 'utf8');
  return Buffer.concat([Buffer.from([0x0a, ...varint(bytes.length)]), bytes]);
};

const grpcFramed = (message: Buffer): Buffer => {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
};

t.test('parseServiceName', async (t) => {
  t.test('never throws on any bytes: a name or undefined', async (t) => {
    const framedNoise = fc.uint8Array({ maxLength: 64 }).map((b) => grpcFramed(Buffer.from(b)));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)), framedNoise), (body) => {
        const r = parseServiceName(body);
        if (r !== undefined && typeof r !== 'string') throw new Error(`returned ${typeof r}`);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('the service name round-trips, with unknown fields before and after it', async (t) => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.array(unknownField, { maxLength: 3 }), fc.array(unknownField, { maxLength: 3 }), (name, before, after) => {
        const message = Buffer.concat([...before, serviceField(name), ...after]);
        const r = parseServiceName(grpcFramed(message));
        if (r !== name) throw new Error(`${JSON.stringify(name)} came back as ${JSON.stringify(r)}`);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('a wrong length prefix or the compressed flag: undefined', async (t) => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary-ascii', maxLength: 50 }), fc.integer({ min: -5, max: 5 }).filter((d) => d !== 0), fc.boolean(), (name, delta, compress) => {
        const framed = grpcFramed(serviceField(name));
        if (compress) framed[0] = 1;
        else framed.writeUInt32BE(Math.max(0, framed.length - 5 + delta), 1);
        if (!compress && framed.readUInt32BE(1) === framed.length - 5) return; // clamped back to the right length
        if (parseServiceName(framed) !== undefined) throw new Error('accepted a bad frame');
      }),
      params(0.25),
    );
    t.pass('bad frames');
  });
});

// --- session ids (nvcf-reqid) ---------------------------------------------------------------

t.test('SessionKeyRing', async (t) => {
  const ring = SessionKeyRing.fromSecrets(['a fuzzing secret of thirty-two characters']);
  const text = fc.string({ unit: 'binary', maxLength: 120 });
  const claims = fc.record({
    sid: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => Buffer.from(b).toString('hex')),
    functionId: text,
    versionId: text,
    endpointKey: text,
    issuedAt: fc.integer({ min: 0, max: 2 ** 47 }),
    expiresAt: fc.integer({ min: 0, max: 2 ** 47 }),
  });

  t.test('any string opens to nothing and never throws', async (t) => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.base64String({ maxLength: 300 }).map((s) => s.replace(/[+/=]/g, 'A'))), (garbage) => {
        if (ring.open(garbage) !== undefined) throw new Error(`opened ${JSON.stringify(garbage)}`);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('whatever it seals opens to the same claims; one changed character opens to nothing', async (t) => {
    fc.assert(
      fc.property(claims, fc.nat(), (c, at) => {
        const token = ring.seal(c);
        const back = ring.open(token);
        const same = back !== undefined && (Object.keys(c) as (keyof typeof c)[]).every((k) => back[k] === c[k]);
        if (!same) throw new Error(`${JSON.stringify(c)} came back as ${JSON.stringify(back)}`);
        const i = at % token.length;
        const changed = token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
        if (ring.open(changed) !== undefined) throw new Error(`opened a token changed at ${i}`);
      }),
      params(0.5),
    );
    t.pass(`${RUNS / 2} sealed ids`);
  });
});

// --- encodeGrpcMessage ----------------------------------------------------------------------

t.test('encodeGrpcMessage', async (t) => {
  const PRINTABLE_ESCAPED = /^(?:[\x20-\x24\x26-\x7e]|%[0-9A-F]{2})*$/;

  t.test('never throws; printable ASCII with %XX escapes, for any string (lone surrogates too)', async (t) => {
    fc.assert(
      fc.property(fc.oneof(anyText, fc.string({ unit: 'binary', maxLength: 500 })), (message) => {
        const out = encodeGrpcMessage(message);
        if (!PRINTABLE_ESCAPED.test(out)) throw new Error(`${JSON.stringify(message)} -> ${JSON.stringify(out)}`);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });

  t.test('decodes back to the message (well-formed strings); plain printable text is unchanged', async (t) => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'binary-ascii', maxLength: 300 })), (message) => {
        const out = encodeGrpcMessage(message);
        if (decodeGrpcMessage(out) !== message) throw new Error(`${JSON.stringify(message)} -> ${JSON.stringify(out)} -> ${JSON.stringify(decodeGrpcMessage(out))}`);
        if (/^[\x20-\x24\x26-\x7e]*$/.test(message) && out !== message) throw new Error(`plain text changed: ${JSON.stringify(message)}`);
      }),
      params(),
    );
    t.pass(`${RUNS} inputs`);
  });
});
