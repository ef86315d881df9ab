// A JWKS fetched over HTTP(S) for lib/auth/jwt.ts (`--jwks-url`). jose verifies against the
// key set; fetching, the refetch cooldown and the back-off are here, on the verifier's clock,
// so that their timing is testable without waiting.
//
// One fetch at a time: whoever asks during a fetch (a verification with an unknown kid, the
// background refresh) waits for that one. After a failed fetch none is tried for retryMs, so a
// dead endpoint is not hammered by a stream of RPCs with unknown kids; after a good one, an
// unknown kid may refetch only once cooldownMs have passed.
import { createLocalJWKSet, errors } from 'jose';
import type { JSONWebKeySet, JWTVerifyGetKey, LocalJWKSet } from 'jose';
import type { Clock, Timer } from '../runtime/clock.ts';
import type { Logger } from '../telemetry/log.ts';

export interface RemoteJwksOptions {
  readonly url: URL;
  readonly log: Logger;
  readonly clock: Clock;
  /** HTTP timeout, body included. */
  readonly timeoutMs: number;
  /** After a good fetch, an unknown kid refetches only after this. */
  readonly cooldownMs: number;
  /** After a failed fetch, no new attempt before this. */
  readonly retryMs: number;
  /** Background refetch period (how soon a removed key stops verifying). */
  readonly refreshMs: number;
  /** A fetched key set is being put in use; runs before any verification can use it. */
  readonly onKeys: (jwks: JSONWebKeySet) => void;
}

/** The keys cannot be had now; jwtVerify passes it through, and it reads as "keys unavailable". */
export class JwksUnavailable extends Error {}

const MAX_JWKS_BYTES = 1024 * 1024;

export function isJwkSetShape(value: unknown): value is JSONWebKeySet {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const keys = (value as { keys?: unknown }).keys;
  return Array.isArray(keys) && keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k));
}

export class RemoteJwks {
  readonly #opts: RemoteJwksOptions;
  readonly #url: string;
  #local: LocalJWKSet | undefined;
  /** clock.now() of the last good fetch. */
  #fetchedAt = Number.NEGATIVE_INFINITY;
  #retryAt = Number.NEGATIVE_INFINITY;
  #failing = false;
  #pending: Promise<LocalJWKSet> | undefined;
  readonly #refresh: Timer;

  constructor(opts: RemoteJwksOptions) {
    this.#opts = opts;
    this.#url = opts.url.href;
    this.#refresh = opts.clock.setInterval(() => void this.reload().catch(() => {}), opts.refreshMs).unref();
  }

  /** For jwtVerify: the key the token's header names, refetching once per cooldown for an unknown kid. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const keys = this.#local ?? (await this.reload());
    try {
      return await keys(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || this.#opts.clock.now() < this.#fetchedAt + this.#opts.cooldownMs) throw err;
      return (await this.reload())(header, token);
    }
  };

  /** Fetches the key set (or joins the fetch under way); rejects with JwksUnavailable. */
  reload(): Promise<LocalJWKSet> {
    if (this.#pending !== undefined) return this.#pending;
    // Checked here, not in the fetch: a refusal is no fetch under way for later callers to join.
    if (this.#opts.clock.now() < this.#retryAt) return Promise.reject(new JwksUnavailable('JWKS fetch backing off'));
    this.#pending = this.#fetch().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  close(): void {
    this.#opts.clock.clearTimeout(this.#refresh);
  }

  async #fetch(): Promise<LocalJWKSet> {
    const { clock, log } = this.#opts;
    let jwks: JSONWebKeySet;
    let local: LocalJWKSet;
    try {
      jwks = await this.#download();
      local = createLocalJWKSet(jwks);
    } catch (err) {
      this.#retryAt = clock.now() + this.#opts.retryMs;
      if (!this.#failing) log.warn('JWKS fetch failed; keeping the last good keys', { url: this.#url, error: errorText(err) });
      this.#failing = true;
      throw new JwksUnavailable('JWKS fetch failed', { cause: err });
    }
    if (this.#failing) log.info('JWKS fetch recovered', { url: this.#url });
    this.#failing = false;
    this.#fetchedAt = clock.now();
    this.#opts.onKeys(jwks);
    this.#local = local;
    return local;
  }

  /** GET the key set, size-limited and shape-checked before jose sees it. */
  async #download(): Promise<JSONWebKeySet> {
    const { clock, timeoutMs } = this.#opts;
    const abort = new AbortController();
    const timer = clock.setTimeout(() => abort.abort(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs).unref();
    try {
      const res = await fetch(this.#url, {
        redirect: 'manual',
        headers: { accept: 'application/json, application/jwk-set+json' },
        signal: abort.signal,
      });
      if (res.status !== 200) {
        void res.body?.cancel().catch(() => {});
        throw new Error(`HTTP ${res.status}`);
      }
      let doc: unknown;
      try {
        doc = JSON.parse(await readLimited(res, MAX_JWKS_BYTES));
      } catch (err) {
        throw err instanceof SyntaxError ? new Error('response is not JSON') : err;
      }
      if (!isJwkSetShape(doc)) throw new Error('response is not a JSON Web Key Set');
      return doc;
    } finally {
      clock.clearTimeout(timer);
    }
  }
}

async function readLimited(res: Response, limit: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > limit) {
    void res.body?.cancel().catch(() => {});
    throw new Error(`response larger than ${limit} bytes`);
  }
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > limit) throw new Error(`response larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${err.message}${cause}`;
}
