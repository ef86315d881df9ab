// Session ids as sealed tokens: encrypted and authenticated, under a key every replica
// shares, over what a replica needs to resume the session (function, version, endpoint,
// expiry). Any replica can resume any session without a shared store, a forged or foreign id
// opens to nothing, and clients never see pod addresses.
//
// Wire form (base64url): format(1) | key id(4) | iv or nonce | ciphertext | tag(16), the
// first five bytes authenticated too. Plaintext: sid(8) | issuedAt(6) | expiresAt(6) | then
// functionId, versionId, endpointKey, each as u16 length + UTF-8.
//
// Format 2 (sealed): AES-256-CTR, then a MAC over everything before the tag (SHA3-256 of a
// secret prefix and the message, truncated to 16 octets; encrypt-then-MAC, separate keys).
// Sealing takes its keystream from one long-lived CTR cipher and the MAC from one one-shot
// hash, so a new session builds no cipher or Hmac object: AES-GCM through createCipheriv cost
// ~20 us per new connection in the gateway (OpenSSL's per-cipher set-up and the objects around
// it). Format 1 (AES-256-GCM, 12-octet nonce) is still opened: ids handed out before.
import { MAX_SESSION_ID } from '../route/invocation.ts';
import { createCipheriv, createDecipheriv, createHash, createSecretKey, hash, hkdfSync, randomBytes, randomFillSync, timingSafeEqual, type Cipheriv, type KeyObject } from 'node:crypto';

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

const FORMAT_GCM = 1;
const FORMAT_CTR_MAC = 2;
const KEY_ID_BYTES = 4;
const GCM_NONCE_BYTES = 12;
const CTR_IV_BYTES = 16;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + KEY_ID_BYTES;
const SID_BYTES = 8;
const TIME_BYTES = 6;
const FIXED_CLAIM_BYTES = SID_BYTES + 2 * TIME_BYTES;
/** The shortest plaintext: fixed claims and the three strings' length prefixes. */
const MIN_PLAIN_BYTES = FIXED_CLAIM_BYTES + 6;
const AES_BLOCK = 16;
/**
 * The MAC: SHA3-256 over the key and then the message, truncated to TAG_BYTES. SHA-3 has no
 * length extension, so a secret prefix makes it a MAC as it stands (the nesting of HMAC is for
 * SHA-2; FIPS 202); one one-shot hash per id, no Hmac object.
 */
class Mac {
  /** The key, then room for the message. */
  #buffer: Buffer;
  readonly #keyLength: number;

  constructor(key: Buffer) {
    this.#keyLength = key.length;
    this.#buffer = Buffer.allocUnsafe(key.length + 256);
    key.copy(this.#buffer);
  }

  tag(message: Buffer): Buffer {
    const end = this.#keyLength + message.length;
    if (this.#buffer.length < end) {
      const grown = Buffer.allocUnsafe(end);
      this.#buffer.copy(grown, 0, 0, this.#keyLength);
      this.#buffer = grown;
    }
    message.copy(this.#buffer, this.#keyLength);
    return hash('sha3-256', this.#buffer.subarray(0, end), 'buffer').subarray(0, TAG_BYTES);
  }
}

/** Keystream blocks made at a time (one `update` per this many blocks). */
const KEYSTREAM_BLOCKS = 256;
const ZEROS = Buffer.alloc(KEYSTREAM_BLOCKS * AES_BLOCK);

/**
 * AES-256-CTR keystream handed out in whole blocks, never twice: one cipher started at counter
 * block prefix(8, random per stream) | 0(8). The keystream of block n is what a cipher started
 * at prefix | n makes first, so an id carries that as its IV and opens with its own decipher.
 */
class Keystream {
  readonly #cipher: Cipheriv;
  readonly #prefix: Buffer;
  #buffer = Buffer.alloc(0);
  /** Counter of #buffer's first block, and the next unused block in it. */
  #base = 0;
  #next = 0;

  constructor(key: KeyObject) {
    this.#prefix = randomBytes(8);
    this.#cipher = createCipheriv('aes-256-ctr', key, Buffer.concat([this.#prefix, Buffer.alloc(8)]));
  }

  /** Encrypts `plain` into `out` at `at`, writing the IV it used to `out` at `ivAt`. */
  encrypt(plain: Buffer, out: Buffer, at: number, ivAt: number): void {
    const blocks = Math.ceil(plain.length / AES_BLOCK);
    if (this.#next + blocks > this.#buffer.length / AES_BLOCK) {
      this.#base += this.#buffer.length / AES_BLOCK;
      this.#buffer = this.#cipher.update(blocks > KEYSTREAM_BLOCKS ? Buffer.alloc(blocks * AES_BLOCK) : ZEROS);
      this.#next = 0;
    }
    const counter = this.#base + this.#next;
    this.#prefix.copy(out, ivAt);
    out.writeUInt32BE(Math.floor(counter / 2 ** 32), ivAt + 8);
    out.writeUInt32BE(counter >>> 0, ivAt + 12);
    const stream = this.#buffer;
    let k = this.#next * AES_BLOCK;
    for (let i = 0; i < plain.length; i++) out[at + i] = (plain[i] as number) ^ (stream[k++] as number);
    this.#next += blocks;
  }
}

interface SealingKey {
  readonly id: Buffer;
  /** Format 1 key. A KeyObject, not raw bytes: Node would import raw bytes on every cipher (~30 us). */
  readonly gcm: KeyObject;
  /** Format 2 keys. */
  readonly ctr: KeyObject;
  readonly mac: Mac;
}

/**
 * The keys session tokens are sealed and opened with: the first seals, every one opens (so a
 * new key can be rolled out to all replicas before any of them seals with it).
 */
export class SessionKeyRing {
  readonly #sealing: SealingKey;
  readonly #keystream: Keystream;
  readonly #byId: ReadonlyMap<string, SealingKey>;

  private constructor(keys: readonly SealingKey[]) {
    const [first] = keys;
    if (!first) throw new Error('a session key ring needs at least one key');
    this.#sealing = first;
    this.#keystream = new Keystream(first.ctr);
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
    const { functionId, versionId, endpointKey } = claims;
    const plainLength = MIN_PLAIN_BYTES + Buffer.byteLength(functionId) + Buffer.byteLength(versionId) + Buffer.byteLength(endpointKey);
    const plain = Buffer.allocUnsafe(plainLength);
    plain.write(claims.sid, 0, SID_BYTES, 'hex');
    plain.writeUIntBE(claims.issuedAt, SID_BYTES, TIME_BYTES);
    plain.writeUIntBE(claims.expiresAt, SID_BYTES + TIME_BYTES, TIME_BYTES);
    let at = writeString(plain, FIXED_CLAIM_BYTES, functionId);
    at = writeString(plain, at, versionId);
    writeString(plain, at, endpointKey);

    const sealedLength = HEADER_BYTES + CTR_IV_BYTES + plainLength;
    const token = Buffer.allocUnsafe(sealedLength + TAG_BYTES);
    token[0] = FORMAT_CTR_MAC;
    this.#sealing.id.copy(token, 1);
    this.#keystream.encrypt(plain, token, HEADER_BYTES + CTR_IV_BYTES, HEADER_BYTES);
    this.#sealing.mac.tag(token.subarray(0, sealedLength)).copy(token, sealedLength);
    return token.toString('base64url');
  }

  /** The claims of a token sealed by a key of this ring; undefined for anything else. Expiry is the caller's. */
  open(token: string): SessionClaims | undefined {
    if (token.length > MAX_SESSION_ID) return undefined;
    const body = Buffer.from(token, 'base64url');
    const format = body[0];
    const ivBytes = format === FORMAT_CTR_MAC ? CTR_IV_BYTES : format === FORMAT_GCM ? GCM_NONCE_BYTES : 0;
    if (ivBytes === 0 || body.length < HEADER_BYTES + ivBytes + MIN_PLAIN_BYTES + TAG_BYTES) return undefined;
    // Base64url decoding skips junk characters; only the canonical spelling of a token is one.
    if (body.toString('base64url') !== token) return undefined;
    const key = this.#byId.get(body.toString('hex', 1, HEADER_BYTES));
    if (!key) return undefined;
    const cipherStart = HEADER_BYTES + ivBytes;
    const tagStart = body.length - TAG_BYTES;
    const iv = body.subarray(HEADER_BYTES, cipherStart);
    let plain: Buffer;
    if (format === FORMAT_CTR_MAC) {
      if (!timingSafeEqual(key.mac.tag(body.subarray(0, tagStart)), body.subarray(tagStart))) return undefined;
      plain = createDecipheriv('aes-256-ctr', key.ctr, iv).update(body.subarray(cipherStart, tagStart));
    } else {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key.gcm, iv);
        decipher.setAAD(body.subarray(0, HEADER_BYTES));
        decipher.setAuthTag(body.subarray(tagStart));
        plain = Buffer.concat([decipher.update(body.subarray(cipherStart, tagStart)), decipher.final()]);
      } catch {
        return undefined;
      }
    }
    return parseClaims(plain);
  }
}

/** `s` as u16 length + UTF-8 at `at`; the position after it. */
function writeString(out: Buffer, at: number, s: string): number {
  const n = out.write(s, at + 2, 'utf8');
  out.writeUInt16BE(n, at);
  return at + 2 + n;
}

/** A fresh random session id (the `sid` claim). */
export function newSid(): string {
  return randomSlice(SID_BYTES).toString('hex');
}

// Sids come from a pool refilled from the CSPRNG: one call per 4 KiB instead of a call (and a
// buffer) per session.
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
  const derive = (info: string): Buffer => Buffer.from(hkdfSync('sha256', secret, 'fngate session id', info, 32));
  const gcm = derive('aes-256-gcm v1');
  return {
    id: createHash('sha256').update(gcm).digest().subarray(0, KEY_ID_BYTES),
    gcm: createSecretKey(gcm),
    ctr: createSecretKey(derive('aes-256-ctr v2')),
    mac: new Mac(derive('sha3-256 mac v2')),
  };
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
