// Session ids as sealed tokens. A token is AES-256-GCM over what a replica needs to resume
// the session (function, version, endpoint, expiry), under a key every replica shares, so
// any replica can resume any session without a shared store, a forged or foreign id opens
// to nothing, and clients never see pod addresses.
//
// Wire form (base64url): version(1) | key id(4) | nonce(12) | ciphertext | tag(16); the
// first five bytes are authenticated too. Plaintext: sid(8) | issuedAt(6) | expiresAt(6) |
// then functionId, versionId, endpointKey, each as u16 length + UTF-8.
import { MAX_SESSION_ID } from '../route/invocation.ts';
import { createCipheriv, createDecipheriv, createHash, createSecretKey, hkdfSync, randomBytes, randomFillSync, type KeyObject } from 'node:crypto';

export interface SessionClaims {
  /** 16 hex characters naming the session in logs, traces and /debug/sessions (not secret-bearing). */
  readonly sid: string;
  readonly functionId: string;
  readonly versionId: string;
  readonly endpointKey: string;
  /** Epoch milliseconds. */
  readonly issuedAt: number;
  readonly expiresAt: number;
}

const FORMAT = 1;
const KEY_ID_BYTES = 4;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + KEY_ID_BYTES;
const SID_BYTES = 8;
const TIME_BYTES = 6;
const FIXED_CLAIM_BYTES = SID_BYTES + 2 * TIME_BYTES;

interface SealingKey {
  readonly id: Buffer;
  /** A KeyObject, not the raw bytes: Node would import raw bytes again on every cipher (~30 us). */
  readonly key: KeyObject;
}

/**
 * The keys session tokens are sealed and opened with: the first seals, every one opens (so a
 * new key can be rolled out to all replicas before any of them seals with it).
 */
export class SessionKeyRing {
  readonly #sealing: SealingKey;
  readonly #byId: ReadonlyMap<string, SealingKey>;

  private constructor(keys: readonly SealingKey[]) {
    const [first] = keys;
    if (!first) throw new Error('a session key ring needs at least one key');
    this.#sealing = first;
    this.#byId = new Map(keys.map((k) => [k.id.toString('hex'), k]));
  }

  /** How many keys open tokens. */
  get size(): number {
    return this.#byId.size;
  }

  /** Keys derived from shared secrets (the --session-key-file lines), first one sealing. */
  static fromSecrets(secrets: readonly string[]): SessionKeyRing {
    return new SessionKeyRing(secrets.map((s) => deriveKey(Buffer.from(s, 'utf8'))));
  }

  /** A key only this process knows: ids resume on this process only. */
  static random(): SessionKeyRing {
    return new SessionKeyRing([deriveKey(randomBytes(32))]);
  }

  seal(claims: SessionClaims): string {
    const fields = [claims.functionId, claims.versionId, claims.endpointKey].map((s) => Buffer.from(s, 'utf8'));
    let length = FIXED_CLAIM_BYTES;
    for (const field of fields) length += 2 + field.length;
    const plain = Buffer.allocUnsafe(length);
    plain.write(claims.sid, 0, SID_BYTES, 'hex');
    plain.writeUIntBE(claims.issuedAt, SID_BYTES, TIME_BYTES);
    plain.writeUIntBE(claims.expiresAt, SID_BYTES + TIME_BYTES, TIME_BYTES);
    let at = FIXED_CLAIM_BYTES;
    for (const field of fields) {
      plain.writeUInt16BE(field.length, at);
      at += 2 + field.copy(plain, at + 2);
    }
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    header[0] = FORMAT;
    this.#sealing.id.copy(header, 1);
    const nonce = randomSlice(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#sealing.key, nonce);
    cipher.setAAD(header);
    const body = Buffer.concat([header, nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return body.toString('base64url');
  }

  /** The claims of a token sealed by a key of this ring; undefined for anything else. Expiry is the caller's. */
  open(token: string): SessionClaims | undefined {
    if (token.length > MAX_SESSION_ID) return undefined;
    const body = Buffer.from(token, 'base64url');
    if (body.length < HEADER_BYTES + NONCE_BYTES + FIXED_CLAIM_BYTES + 6 + TAG_BYTES || body[0] !== FORMAT) return undefined;
    // Base64url decoding skips junk characters; only the canonical spelling of a token is one.
    if (body.toString('base64url') !== token) return undefined;
    const key = this.#byId.get(body.toString('hex', 1, HEADER_BYTES));
    if (!key) return undefined;
    const cipherStart = HEADER_BYTES + NONCE_BYTES;
    const tagStart = body.length - TAG_BYTES;
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.key, body.subarray(HEADER_BYTES, cipherStart));
      decipher.setAAD(body.subarray(0, HEADER_BYTES));
      decipher.setAuthTag(body.subarray(tagStart));
      plain = Buffer.concat([decipher.update(body.subarray(cipherStart, tagStart)), decipher.final()]);
    } catch {
      return undefined;
    }
    return parseClaims(plain);
  }
}

/** A fresh random session id (the `sid` claim). */
export function newSid(): string {
  return randomSlice(SID_BYTES).toString('hex');
}

// Nonces and sids come from a pool refilled from the CSPRNG: one call per 4 KiB instead of a
// call (and a buffer) per session, which cost more than the AES-GCM itself.
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let poolAt = POOL_BYTES;

/** `n` fresh random bytes, never handed out twice; valid until the next call, so copy what you keep. */
function randomSlice(n: number): Buffer {
  if (poolAt + n > POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const slice = pool.subarray(poolAt, poolAt + n);
  poolAt += n;
  return slice;
}

function deriveKey(secret: Buffer): SealingKey {
  const key = Buffer.from(hkdfSync('sha256', secret, 'fngate session id', 'aes-256-gcm v1', 32));
  return { key: createSecretKey(key), id: createHash('sha256').update(key).digest().subarray(0, KEY_ID_BYTES) };
}

function parseClaims(plain: Buffer): SessionClaims | undefined {
  const fields: string[] = [];
  let at = FIXED_CLAIM_BYTES;
  for (let i = 0; i < 3; i++) {
    if (at + 2 > plain.length) return undefined;
    const length = plain.readUInt16BE(at);
    at += 2;
    if (at + length > plain.length) return undefined;
    fields.push(plain.toString('utf8', at, at + length));
    at += length;
  }
  const [functionId, versionId, endpointKey] = fields as [string, string, string];
  if (at !== plain.length) return undefined;
  return {
    sid: plain.toString('hex', 0, SID_BYTES),
    issuedAt: plain.readUIntBE(SID_BYTES, TIME_BYTES),
    expiresAt: plain.readUIntBE(SID_BYTES + TIME_BYTES, TIME_BYTES),
    functionId,
    versionId,
    endpointKey,
  };
}
