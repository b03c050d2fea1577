/**
 * Fast, synchronous ECDSA verification for atproto signatures.
 *
 * - k256 (secp256k1): libsecp256k1 through the `secp256k1` package's native binding. Its verify rejects
 *   non-normalized (high-S) signatures, which is exactly the atproto rule. If the native binding cannot
 *   load, node:crypto (OpenSSL) is used instead, with the same explicit low-S check as p256.
 * - p256: node:crypto (OpenSSL) with `dsaEncoding: 'ieee-p1363'`; high-S is rejected here before OpenSSL
 *   sees the signature.
 *
 * Signatures must be exactly 64 bytes (r‖s, big-endian); DER or any other length is invalid.
 * The parsed key material is cached per did:key in a small LRU.
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto'
import { createRequire } from 'node:module'
import { compressPublicKey, decompressPublicKey, parseDidKey, type Curve } from './keys.js'
import { sha256, sha256Into } from './sha256.js'

export { sha256 }

interface NativeSecp256k1 {
  ecdsaVerify(sig: Uint8Array, msg32: Uint8Array, pubkey: Uint8Array): boolean
  ecdsaSign(msg32: Uint8Array, privateKey: Uint8Array, options?: object, output?: Uint8Array): { signature: Uint8Array; recid: number }
  publicKeyCreate(privateKey: Uint8Array, compressed?: boolean): Uint8Array
  privateKeyVerify(privateKey: Uint8Array): boolean
}

function loadNative(): NativeSecp256k1 | null {
  if (process.env.STRATOS_DISABLE_NATIVE_SECP256K1 === '1') return null
  try {
    // `secp256k1/bindings.js` is the native addon only; the package's main entry would silently fall back
    // to a pure-JS implementation, which we do not want on the hot path.
    const require = createRequire(import.meta.url)
    return require('secp256k1/bindings.js') as NativeSecp256k1
  } catch {
    return null
  }
}

/** The libsecp256k1 binding, or null when it could not be loaded. */
export const nativeSecp256k1: NativeSecp256k1 | null = loadNative()

/** Which implementation verifies k256 signatures in this process. */
export const k256Backend: 'libsecp256k1' | 'node:crypto' = nativeSecp256k1 ? 'libsecp256k1' : 'node:crypto'

/** (n - 1) / 2 = floor(n / 2), big-endian: s must be <= this to be low-S. */
const HALF_N: Record<Curve, Uint8Array> = {
  p256: Buffer.from('7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8', 'hex'),
  k256: Buffer.from('7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0', 'hex'),
}

/** SPKI DER header for an EC public key with a 33-byte compressed point. */
const SPKI_PREFIX: Record<Curve, Buffer> = {
  p256: Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'),
  k256: Buffer.from('3036301006072a8648ce3d020106052b8104000a032200', 'hex'),
}

/** True when the s half of a 64-byte compact signature is <= n/2. */
export function isLowS(curve: Curve, sig: Uint8Array): boolean {
  const half = HALF_N[curve]
  for (let i = 0; i < 32; i++) {
    const a = sig[32 + i]!
    const b = half[i]!
    if (a !== b) return a < b
  }
  return true
}

export function publicKeyObject(curve: Curve, compressedPoint: Uint8Array): KeyObject {
  const der = Buffer.concat([SPKI_PREFIX[curve], compressedPoint])
  return createPublicKey({ key: der, format: 'der', type: 'spki' })
}

type Verifier =
  | { curve: 'k256'; native: true; point: Uint8Array }
  | { curve: Curve; native: false; key: KeyObject }

const DEFAULT_CACHE_SIZE = 10_000
let cacheSize = DEFAULT_CACHE_SIZE
const cache = new Map<string, Verifier>()

/** Sets the maximum number of did:keys whose parsed key is kept (default 10,000). */
export function setVerifyCacheSize(size: number): void {
  cacheSize = Math.max(0, Math.floor(size))
  while (cache.size > cacheSize) cache.delete(cache.keys().next().value!)
}

export function clearVerifyCache(): void {
  cache.clear()
}

function verifierFor(didKey: string): Verifier {
  const hit = cache.get(didKey)
  if (hit) {
    // refresh recency
    cache.delete(didKey)
    cache.set(didKey, hit)
    return hit
  }
  const { curve, publicKey } = parseDidKey(didKey) // throws on an unparseable did:key
  const verifier: Verifier =
    curve === 'k256' && nativeSecp256k1
      ? // the uncompressed form spares libsecp256k1 a square root on every verification
        { curve, native: true, point: decompressPublicKey(curve, publicKey) }
      : { curve, native: false, key: publicKeyObject(curve, publicKey) }
  if (cacheSize > 0) {
    cache.set(didKey, verifier)
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value!)
  }
  return verifier
}

/**
 * Verifies an atproto signature: sha256(msg), 64-byte compact r‖s, low-S. Returns false for any bad or
 * malformed signature; throws only when `didKey` cannot be parsed as a supported did:key.
 */
export function verifySignature(didKey: string, msg: Uint8Array, sig: Uint8Array): boolean {
  const verifier = verifierFor(didKey)
  if (!(sig instanceof Uint8Array) || sig.length !== 64 || !(msg instanceof Uint8Array)) return false
  return verifyWith(verifier, msg, sig)
}

/** Same as verifySignature, for a curve + public key (33 or 65 bytes) instead of a did:key. */
export function verifySignatureWithKey(
  curve: Curve,
  publicKey: Uint8Array,
  msg: Uint8Array,
  sig: Uint8Array,
): boolean {
  if (!(sig instanceof Uint8Array) || sig.length !== 64 || !(msg instanceof Uint8Array)) return false
  let verifier: Verifier
  try {
    verifier =
      curve === 'k256' && nativeSecp256k1
        ? { curve, native: true, point: decompressPublicKey(curve, publicKey) }
        : { curve, native: false, key: publicKeyObject(curve, compressPublicKey(curve, publicKey)) }
  } catch {
    return false
  }
  return verifyWith(verifier, msg, sig)
}

/** the message digest handed to libsecp256k1 (read synchronously by it) */
const MSG32 = new Uint8Array(new ArrayBuffer(32))

/**
 * SHA-256 of `msg` for libsecp256k1, in one buffer of the module's outside the JS heap (a 32-byte array in
 * the heap would be moved out of it, a native allocation, when the binding asks for its bytes). Valid until
 * the next call: hand it to a synchronous native call right away.
 */
export function nativeDigest(msg: Uint8Array): Uint8Array {
  sha256Into(msg, MSG32, 0)
  return MSG32
}

function verifyWith(verifier: Verifier, msg: Uint8Array, sig: Uint8Array): boolean {
  if (verifier.native) {
    const digest = nativeDigest(msg)
    try {
      // libsecp256k1 returns false for high-S (non-normalized) signatures; it throws when r or s >= n.
      return nativeSecp256k1!.ecdsaVerify(sig, digest, verifier.point)
    } catch {
      return false
    }
  }
  if (!isLowS(verifier.curve, sig)) return false
  try {
    return nodeVerify('sha256', msg, { key: verifier.key, dsaEncoding: 'ieee-p1363' }, sig)
  } catch {
    return false
  }
}
