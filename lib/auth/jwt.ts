// JWT bearer tokens verified against a JWKS (`--jwks-url` or `--jwks-file`), docs/reference.md, Credentials.
//
// Hot path: a token that verified once is remembered until its `exp`, so later RPCs with it
// cost a map lookup and are answered synchronously; the JWKS endpoint is never consulted for
// them, so a JWKS server that is down or slow stalls nothing already verified. Revocation:
// whenever the key set changes so that a key disappears (file re-read, remote refetch), the
// remembered tokens are dropped and every token is verified again against the new set.
//
// Nothing here throws or reports INTERNAL for a bad token: every failure is UNAUTHENTICATED
// with a short reason. The token itself never appears in a message or a log line.
import { createLocalJWKSet, errors, jwtVerify } from 'jose';
import type { JSONWebKeySet, JWTPayload, JWTVerifyGetKey, LocalJWKSet } from 'jose';
import { grpcError, Status, type GrpcError } from '../grpc/status.ts';
import { realClock, type Clock } from '../runtime/clock.ts';
import type { Logger } from '../telemetry/log.ts';
import { readTextFile, watchTextFile } from '../files/watch.ts';
import type { Closable, WatchTiming } from '../files/watch.ts';
import type { Principal, TokenVerifier } from './authenticator.ts';
import { isJwkSetShape, JwksUnavailable, RemoteJwks } from './remote-jwks.ts';

export interface JwtVerifierOptions {
  /** Exactly one of jwksUrl / jwksFile. */
  readonly jwksUrl?: string;
  readonly jwksFile?: string;
  /** Required `iss`, when set. */
  readonly issuer?: string;
  /** Required `aud` (string, or one entry of an array), when set. */
  readonly audience?: string;
  readonly log: Logger;
  /** Allowed clock skew for exp/nbf; default 30 s. */
  readonly clockToleranceSec?: number;
  /** Remote JWKS: periodic background refetch (revocation of removed keys); default 30 s. */
  readonly jwksRefreshMs?: number;
  /** Remote JWKS: after a successful fetch, an unknown `kid` may refetch only after this; default 30 s. */
  readonly jwksCooldownMs?: number;
  /** Remote JWKS: HTTP timeout; default 5 s. */
  readonly jwksTimeoutMs?: number;
  /** Remote JWKS: after a failed fetch, no new attempt before this; default 2 s. */
  readonly jwksRetryMs?: number;
  /** Local JWKS file: watch timing (as for the other file sources). */
  readonly fileWatch?: WatchTiming;
  /** Verified-token cache bound; default 10 000 tokens. */
  readonly cacheMaxEntries?: number;
  /** Token expiry, JWKS cooldown, back-off, refresh and timeout, the file watch; default the real clock. */
  readonly clock?: Clock;
}

export interface JwtVerifier extends TokenVerifier {
  /** Stops the background refetch / file watch. */
  close(): void;
}

/** Tokens longer than this are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/**
 * Asymmetric signatures only: never `none`, never HS* (an HMAC keyed with the public key's
 * bytes would otherwise pass for RS*). jose also refuses secret algorithms for JWKS keys.
 */
export const JWT_ALGORITHMS: readonly string[] = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
];

/** Total characters of cached tokens, on top of the entry count (tokens may be up to 16 KiB). */
const MAX_CACHE_CHARS = 16 * 1024 * 1024;
/** `sub` becomes the fngate-subject header: printable ASCII, no edge spaces. */
const SUBJECT = /^[\x21-\x7e](?:[\x20-\x7e]{0,1022}[\x21-\x7e])?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

const reject = (why: string, reason: string): GrpcError => grpcError(Status.UNAUTHENTICATED, `invalid JWT: ${why}`, reason);
const R = {
  tooLarge: grpcError(Status.UNAUTHENTICATED, `token too large (over ${MAX_TOKEN_LENGTH / 1024} KiB)`, 'token_too_large'),
  shape: reject('malformed (expected three dot-separated base64url segments)', 'jwt_shape'),
  noSignature: reject('signature missing', 'jwt_no_signature'),
  malformed: reject('malformed', 'jwt_malformed'),
  expired: reject('expired', 'jwt_expired'),
  notYetValid: reject('not yet valid (nbf)', 'jwt_not_yet_valid'),
  issuer: reject('wrong issuer', 'jwt_issuer'),
  audience: reject('wrong audience', 'jwt_audience'),
  noExp: reject('no exp claim', 'jwt_no_exp'),
  noIss: reject('no iss claim', 'jwt_no_iss'),
  noAud: reject('no aud claim', 'jwt_no_aud'),
  noSub: reject('no sub claim', 'jwt_no_sub'),
  badSub: reject('sub claim must be 1-1024 printable ASCII characters', 'jwt_bad_sub'),
  signature: reject('bad signature', 'jwt_signature'),
  alg: reject('algorithm not allowed (asymmetric signatures only)', 'jwt_alg'),
  unknownKey: reject('unknown signing key', 'jwt_unknown_key'),
  ambiguousKey: reject('several signing keys match; the token needs a kid', 'jwt_ambiguous_key'),
  badKey: reject('signing key unusable', 'jwt_bad_key'),
  unsupported: reject('unsupported token', 'jwt_unsupported'),
  keysUnavailable: reject('signing keys unavailable', 'jwt_keys_unavailable'),
  other: reject('rejected', 'jwt_other'),
} as const;

const NO_FUNCTIONS: ReadonlySet<string> = new Set();

interface CacheEntry {
  readonly principal: Principal;
  /** ms since epoch; the token's exp. */
  readonly expiresAt: number;
}

/** The `functions` claim: an array of ids, or "*". Anything else grants nothing (not an error). */
export function functionsClaim(claim: unknown): '*' | ReadonlySet<string> {
  if (claim === '*') return '*';
  if (!Array.isArray(claim) || claim.length === 0 || !claim.every((id) => typeof id === 'string' && id.length > 0)) return NO_FUNCTIONS;
  return claim.includes('*') ? '*' : new Set<string>(claim);
}

/** Canonical text of each key, to tell whether a new key set dropped any of the old keys. */
function keyTexts(jwks: JSONWebKeySet): Set<string> {
  return new Set(jwks.keys.map((k) => JSON.stringify(k)));
}

/** Parses and checks a JWKS file's text; throws with a message naming what is wrong. */
export function parseJwksFile(text: string, file: string): JSONWebKeySet {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not JSON (${(err as Error).message})`);
  }
  if (!isJwkSetShape(doc)) throw new Error(`${file}: not a JSON Web Key Set (expected {"keys": [ ... ]})`);
  doc.keys.forEach((key, i) => {
    if (key.kty === 'oct') throw new Error(`${file}: keys[${i}]: symmetric ("oct") keys are not accepted; publish public keys only`);
    if ('d' in key || 'p' in key || 'priv' in key) throw new Error(`${file}: keys[${i}]: contains private key material; publish public keys only`);
  });
  createLocalJWKSet(doc); // jose's own shape checks
  return doc;
}

/** Reason for a verification failure. Never includes the token. */
function rejection(err: unknown): GrpcError | undefined {
  if (err instanceof errors.JWTExpired) return err.claim === 'exp' ? R.expired : R.other;
  if (err instanceof errors.JWTClaimValidationFailed) {
    const missing = err.reason === 'missing';
    switch (err.claim) {
      case 'nbf': return err.reason === 'check_failed' ? R.notYetValid : R.malformed;
      case 'exp': return missing ? R.noExp : R.malformed;
      case 'iss': return missing ? R.noIss : R.issuer;
      case 'aud': return missing ? R.noAud : R.audience;
      default: return R.malformed;
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return R.signature;
  if (err instanceof errors.JOSEAlgNotAllowed) return R.alg;
  if (err instanceof errors.JWKSNoMatchingKey) return R.unknownKey;
  if (err instanceof errors.JWKSMultipleMatchingKeys) return R.ambiguousKey;
  if (err instanceof JwksUnavailable) return R.keysUnavailable;
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return R.malformed;
  if (err instanceof errors.JWKSInvalid || err instanceof errors.JWKInvalid) return R.badKey;
  if (err instanceof errors.JOSENotSupported) return R.unsupported;
  return undefined;
}

class Verifier implements JwtVerifier {
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #issuer: string | undefined;
  readonly #audience: string | undefined;
  readonly #tolerance: number;
  readonly #maxEntries: number;
  /** Set by the key source once it exists. */
  #getKey: JWTVerifyGetKey = () => Promise.reject(new JwksUnavailable('no key set'));
  readonly #closers: (() => void)[] = [];

  readonly #cache = new Map<string, CacheEntry>();
  #cacheChars = 0;
  /** Concurrent first verifications of one token share one signature check. */
  readonly #inflight = new Map<string, Promise<Principal | GrpcError>>();
  /** Bumped whenever the cache is dropped: verifications begun before it are not cached. */
  #generation = 0;
  /** Canonical texts of the current keys; undefined before the first key set. */
  #keys: Set<string> | undefined;

  constructor(opts: JwtVerifierOptions) {
    this.#log = opts.log;
    this.#clock = opts.clock ?? realClock;
    this.#issuer = opts.issuer;
    this.#audience = opts.audience;
    this.#tolerance = opts.clockToleranceSec ?? 30;
    this.#maxEntries = Math.max(1, opts.cacheMaxEntries ?? 10_000);
  }

  accepts(token: string): boolean {
    // API keys never contain a dot; anything that does is treated as a JWT, so a malformed
    // JWT gets a JWT-specific reason rather than "invalid API key".
    return token.includes('.');
  }

  verify(token: string): Principal | GrpcError | Promise<Principal | GrpcError> {
    if (token.length > MAX_TOKEN_LENGTH) return R.tooLarge;
    const hit = this.#cache.get(token);
    if (hit !== undefined) {
      if (this.#clock.wall() < hit.expiresAt) return hit.principal;
      this.#forget(token, hit);
    }
    const pending = this.#inflight.get(token);
    if (pending !== undefined) return pending;
    const bad = checkShape(token);
    if (bad !== undefined) return bad;
    const generation = this.#generation;
    const work = this.#verifySignature(token, generation).finally(() => {
      if (this.#inflight.get(token) === work) this.#inflight.delete(token);
    });
    this.#inflight.set(token, work);
    return work;
  }

  close(): void {
    for (const close of this.#closers.splice(0)) close();
    this.#dropCache();
  }

  async #verifySignature(token: string, generation: number): Promise<Principal | GrpcError> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.#getKey, {
        algorithms: JWT_ALGORITHMS as string[],
        issuer: this.#issuer,
        audience: this.#audience,
        clockTolerance: this.#tolerance,
        currentDate: new Date(this.#clock.wall()),
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      const known = rejection(err);
      if (known !== undefined) {
        if (this.#log.isEnabled('debug')) this.#log.debug('JWT rejected', { reason: known.message });
        return known;
      }
      this.#log.warn('JWT verification failed unexpectedly', { error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
      return R.other;
    }
    const sub = payload.sub;
    if (sub === undefined || sub === '') return R.noSub;
    if (typeof sub !== 'string' || !SUBJECT.test(sub)) return R.badSub;
    const principal: Principal = { subject: sub, functions: functionsClaim(payload['functions']) };
    // exp is required and a number (jose checked both).
    const expiresAt = (payload.exp as number) * 1000;
    if (generation === this.#generation && expiresAt > this.#clock.wall()) this.#remember(token, principal, expiresAt);
    return principal;
  }

  #remember(token: string, principal: Principal, expiresAt: number): void {
    const old = this.#cache.get(token);
    if (old !== undefined) this.#forget(token, old);
    // Oldest first (Map keeps insertion order): simple FIFO eviction under both bounds.
    while (this.#cache.size >= this.#maxEntries || (this.#cache.size > 0 && this.#cacheChars + token.length > MAX_CACHE_CHARS)) {
      const first = this.#cache.keys().next();
      if (first.done === true) break;
      this.#cache.delete(first.value);
      this.#cacheChars -= first.value.length;
    }
    this.#cache.set(token, { principal, expiresAt });
    this.#cacheChars += token.length;
  }

  #forget(token: string, entry: CacheEntry): void {
    if (this.#cache.get(token) !== entry) return;
    this.#cache.delete(token);
    this.#cacheChars -= token.length;
  }

  #dropCache(): void {
    this.#generation++;
    this.#cache.clear();
    this.#cacheChars = 0;
    this.#inflight.clear();
  }

  /**
   * A key set has been put in use. If any previously trusted key is gone, every remembered
   * token is dropped (it may have been signed with the removed key). Keys only added: the
   * cache stays.
   */
  #keysChanged(jwks: JSONWebKeySet, source: string): void {
    const next = keyTexts(jwks);
    const prev = this.#keys;
    this.#keys = next;
    if (prev === undefined) {
      this.#log.info('JWKS loaded', { source, keys: next.size });
      return;
    }
    let removed = 0;
    for (const key of prev) if (!next.has(key)) removed++;
    let added = 0;
    for (const key of next) if (!prev.has(key)) added++;
    if (removed === 0 && added === 0) return;
    if (removed > 0) this.#dropCache();
    this.#log.info('JWKS changed', { source, keys: next.size, added, removed, cacheDropped: removed > 0 });
  }

  // ---- key sources ----

  async useFile(path: string, fileWatch: WatchTiming): Promise<void> {
    const text = await readTextFile(path, 'jwks file');
    let local: LocalJWKSet = this.#useLocal(parseJwksFile(text, `jwks file ${path}`), path);
    this.#getKey = (header, token) => local(header, token);

    const watch: Closable = watchTextFile({
      path,
      timing: { ...fileWatch, clock: fileWatch.clock ?? this.#clock },
      unreadableMessage: 'cannot read JWKS file; keeping the last good keys',
      invalidMessage: 'invalid JWKS file; keeping the last good keys',
      initialText: text,
      parse: (next) => parseJwksFile(next, `jwks file ${path}`),
      apply: (jwks) => {
        local = this.#useLocal(jwks, path);
      },
      log: this.#log,
    });
    this.#closers.push(() => watch.close());
  }

  #useLocal(jwks: JSONWebKeySet, path: string): LocalJWKSet {
    const local = createLocalJWKSet(jwks);
    this.#keysChanged(jwks, path);
    return local;
  }

  async useUrl(url: string, opts: JwtVerifierOptions): Promise<void> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new Error(`jwks url ${JSON.stringify(url)}: not a URL`);
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error(`jwks url ${url}: must be http or https`);
    const remote = new RemoteJwks({
      url: parsed,
      log: this.#log,
      clock: this.#clock,
      timeoutMs: opts.jwksTimeoutMs ?? 5000,
      cooldownMs: opts.jwksCooldownMs ?? 30_000,
      retryMs: opts.jwksRetryMs ?? 2000,
      refreshMs: opts.jwksRefreshMs ?? 30_000,
      onKeys: (jwks) => this.#keysChanged(jwks, url),
    });
    this.#closers.push(() => remote.close());
    this.#getKey = remote.getKey;
    await remote.reload().catch(() => {}); // logged there
    if (this.#keys === undefined) this.#log.warn('no JWKS yet; JWTs are refused until it can be fetched', { url });
  }
}

/** The cheap structural checks, before any decoding. */
function checkShape(token: string): GrpcError | undefined {
  const a = token.indexOf('.');
  const b = a < 0 ? -1 : token.indexOf('.', a + 1);
  if (a <= 0 || b < 0 || b === a + 1 || token.indexOf('.', b + 1) >= 0) return R.shape;
  if (b === token.length - 1) return R.noSignature;
  if (!BASE64URL.test(token.slice(0, a)) || !BASE64URL.test(token.slice(a + 1, b)) || !BASE64URL.test(token.slice(b + 1))) return R.shape;
  return undefined;
}

/**
 * A verifier for JWT bearer tokens. Rejects (at startup) on a bad URL or an unreadable or
 * invalid JWKS file; an unreachable JWKS URL is not fatal (logged, retried in the background).
 */
export async function createJwtVerifier(opts: JwtVerifierOptions): Promise<JwtVerifier> {
  if ((opts.jwksUrl === undefined) === (opts.jwksFile === undefined)) throw new Error('JWT verification needs exactly one of jwksUrl or jwksFile');
  const verifier = new Verifier(opts);
  if (opts.jwksFile !== undefined) await verifier.useFile(opts.jwksFile, opts.fileWatch ?? {});
  else if (opts.jwksUrl !== undefined) await verifier.useUrl(opts.jwksUrl, opts);
  return verifier;
}
