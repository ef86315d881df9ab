// `authorization` -> Principal. API keys are looked up by their SHA-256 in the registry, so
// revoking a key (dropping its record) takes effect on the very next RPC, on any connection.
import { createHash, timingSafeEqual } from 'node:crypto';
import { grpcError, Status, type GrpcError } from '../grpc/status.ts';
import type { Registry } from '../registry/registry.ts';

export interface Principal {
  /** Key name or JWT `sub`; sent to the function as `fngate-subject`. */
  readonly subject: string;
  readonly functions: '*' | ReadonlySet<string>;
}

/** Verifies tokens that are not API keys (JWTs); absent when no JWKS is configured. */
export interface TokenVerifier {
  /** Whether this verifier should be asked about the token at all. */
  accepts(token: string): boolean;
  verify(token: string): Principal | GrpcError | Promise<Principal | GrpcError>;
}

const missing = grpcError(Status.UNAUTHENTICATED, 'missing authorization metadata: send "authorization: Bearer <api key or JWT>"', 'missing_token');
const notBearer = grpcError(Status.UNAUTHENTICATED, 'authorization metadata must be "Bearer <token>"', 'not_bearer');
const unknownKey = grpcError(Status.UNAUTHENTICATED, 'invalid or revoked API key', 'unknown_key');

const MAX_CACHED_TOKEN = 128;
const MAX_CACHED_KEYS = 10_000;

export class Authenticator {
  readonly #registry: Registry;
  readonly #verifier: TokenVerifier | undefined;

  /** API key -> what it resolved to, while the key set is unchanged (a key edit clears it). */
  readonly #keyCache = new Map<string, Principal | GrpcError>();

  constructor(registry: Registry, verifier?: TokenVerifier) {
    this.#registry = registry;
    this.#verifier = verifier;
    registry.on('keys', () => this.#keyCache.clear());
  }

  authenticate(authorization: string | string[] | undefined): Principal | GrpcError | Promise<Principal | GrpcError> {
    if (authorization === undefined) return missing;
    if (typeof authorization !== 'string') return notBearer; // repeated header: ambiguous, refuse
    const token = bearerToken(authorization);
    if (token === undefined) return notBearer;
    if (this.#verifier?.accepts(token)) return this.#verifier.verify(token);
    return this.#apiKey(token);
  }

  #apiKey(token: string): Principal | GrpcError {
    const cached = this.#keyCache.get(token);
    if (cached !== undefined) return cached;
    const result = this.#lookupKey(token);
    // Only key-sized tokens are cached, and the cache is bounded: a flood of made-up tokens
    // costs what it cost before (one hash each), never memory.
    if (token.length <= MAX_CACHED_TOKEN) {
      if (this.#keyCache.size >= MAX_CACHED_KEYS) this.#keyCache.clear();
      this.#keyCache.set(token, result);
    }
    return result;
  }

  #lookupKey(token: string): Principal | GrpcError {
    const digest = createHash('sha256').update(token).digest();
    const record = this.#registry.getApiKey(digest.toString('hex'));
    // The map lookup already matched; the constant-time compare keeps the check honest should
    // the index ever be keyed by something weaker than the full digest.
    if (!record || !timingSafeEqual(digest, Buffer.from(record.sha256, 'hex'))) return unknownKey;
    return { subject: record.name, functions: record.functions };
  }
}

/** The token of "Bearer <token>" (scheme case-insensitive), or undefined. */
function bearerToken(header: string): string | undefined {
  if (header.length < 8 || header.charCodeAt(6) !== 0x20 || header.slice(0, 6).toLowerCase() !== 'bearer') return undefined;
  const token = header.slice(7).trim();
  return token.length > 0 ? token : undefined;
}

export function mayInvoke(principal: Principal, functionId: string): boolean {
  return principal.functions === '*' || principal.functions.has(functionId);
}
