/**
 * Public-key encodings used by atproto: multikey (multicodec-prefixed compressed point, base58btc,
 * `z` multibase prefix), did:key (= `did:key:` + multikey) and the legacy DID-document form
 * (`Ecdsa*VerificationKey2019`: multibase base58btc of the bare point, compressed or uncompressed).
 */
import { ECDH } from 'node:crypto'
import { base58btc } from 'multiformats/bases/base58'

export type Curve = 'k256' | 'p256'
export type JwtAlg = 'ES256K' | 'ES256'

export interface ParsedPublicKey {
  curve: Curve
  jwtAlg: JwtAlg
  /** 33-byte compressed SEC1 point. */
  publicKey: Uint8Array
}

export const DID_KEY_PREFIX = 'did:key:'

/** Varint-encoded multicodec prefixes: secp256k1-pub 0xe7, p256-pub 0x1200. */
const MULTICODEC_PREFIX: Record<Curve, Uint8Array> = {
  k256: Uint8Array.of(0xe7, 0x01),
  p256: Uint8Array.of(0x80, 0x24),
}

const OPENSSL_CURVE: Record<Curve, string> = { k256: 'secp256k1', p256: 'prime256v1' }

export const LEGACY_SUITES: Record<string, Curve> = {
  EcdsaSecp256k1VerificationKey2019: 'k256',
  EcdsaSecp256r1VerificationKey2019: 'p256',
}

export class InvalidKeyError extends Error {
  override name = 'InvalidKeyError'
}

export function curveToJwtAlg(curve: Curve): JwtAlg {
  return curve === 'k256' ? 'ES256K' : 'ES256'
}

export function jwtAlgToCurve(alg: string): Curve {
  if (alg === 'ES256K') return 'k256'
  if (alg === 'ES256') return 'p256'
  throw new InvalidKeyError(`unsupported JWT alg: ${alg}`)
}

/** Accepts a `Curve` or a JWT alg name. */
function toCurve(curveOrAlg: string): Curve {
  if (curveOrAlg === 'k256' || curveOrAlg === 'p256') return curveOrAlg
  return jwtAlgToCurve(curveOrAlg)
}

/**
 * Checks that `point` (33-byte compressed or 65-byte uncompressed SEC1) lies on the curve and returns
 * the 33-byte compressed form. Throws InvalidKeyError otherwise.
 */
export function compressPublicKey(curve: Curve, point: Uint8Array): Uint8Array {
  const okShape =
    (point.length === 33 && (point[0] === 0x02 || point[0] === 0x03)) ||
    (point.length === 65 && point[0] === 0x04)
  if (!okShape) {
    throw new InvalidKeyError(`${curve} public key must be a 33-byte compressed or 65-byte uncompressed point`)
  }
  try {
    // OpenSSL checks that the point is on the curve while converting.
    const out = ECDH.convertKey(point, OPENSSL_CURVE[curve], undefined, undefined, 'compressed') as Buffer
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength).slice()
  } catch {
    throw new InvalidKeyError(`${curve} public key is not a point on the curve`)
  }
}

/** 65-byte uncompressed form of a valid public key. */
export function decompressPublicKey(curve: Curve, point: Uint8Array): Uint8Array {
  try {
    const out = ECDH.convertKey(point, OPENSSL_CURVE[curve], undefined, undefined, 'uncompressed') as Buffer
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength).slice()
  } catch {
    throw new InvalidKeyError(`${curve} public key is not a point on the curve`)
  }
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false
  return true
}

function decodeBase58Multibase(multibase: string, what: string): Uint8Array {
  if (typeof multibase !== 'string' || !multibase.startsWith('z')) {
    throw new InvalidKeyError(`${what} must be base58btc multibase (start with "z")`)
  }
  try {
    return base58btc.decode(multibase)
  } catch {
    throw new InvalidKeyError(`${what} is not valid base58btc`)
  }
}

/** A multikey's curve and point as given (not checked, not compressed). */
function splitMultikey(multikey: string): { curve: Curve; point: Uint8Array } {
  const bytes = decodeBase58Multibase(multikey, 'multikey')
  for (const curve of ['k256', 'p256'] as const) {
    const prefix = MULTICODEC_PREFIX[curve]
    if (startsWith(bytes, prefix)) return { curve, point: bytes.subarray(prefix.length) }
  }
  throw new InvalidKeyError('multikey has an unsupported multicodec (expected secp256k1-pub or p256-pub)')
}

/** Parses a multikey string (`zQ3s…` for k256, `zDna…` for p256). Throws InvalidKeyError. */
export function parseMultikey(multikey: string): ParsedPublicKey {
  const { curve, point } = splitMultikey(multikey)
  return { curve, jwtAlg: curveToJwtAlg(curve), publicKey: compressPublicKey(curve, point) }
}

/** The multikey of a point known to be compressed and on the curve (compressPublicKey's output). */
function multikeyOfCompressed(curve: Curve, compressed: Uint8Array): string {
  const prefix = MULTICODEC_PREFIX[curve]
  const bytes = new Uint8Array(prefix.length + compressed.length)
  bytes.set(prefix, 0)
  bytes.set(compressed, prefix.length)
  return base58btc.encode(bytes)
}

/** Multikey string for a public key (compressed or uncompressed input; output always compressed). */
export function formatMultikey(curveOrAlg: Curve | JwtAlg, publicKey: Uint8Array): string {
  const curve = toCurve(curveOrAlg)
  return multikeyOfCompressed(curve, compressPublicKey(curve, publicKey))
}

/** base58btc multibase text made of alphabet characters only (such a text is what encoding its bytes gives back) */
const BASE58BTC_TEXT = /^z[1-9A-HJ-NP-Za-km-z]+$/

/**
 * did:key of a multikey, its point checked once: the multikey itself when it holds the compressed point
 * (base58btc text of alphabet characters is the encoding of its bytes: nothing to convert back), else
 * the multikey of the compressed point.
 */
export function didKeyFromMultikey(multikey: string): string {
  const { curve, point } = splitMultikey(multikey)
  const compressed = compressPublicKey(curve, point)
  if (point.length === compressed.length && BASE58BTC_TEXT.test(multikey)) return DID_KEY_PREFIX + multikey
  return DID_KEY_PREFIX + multikeyOfCompressed(curve, compressed)
}

/** Parses a `did:key:z…` string. Throws InvalidKeyError if it is not a supported did:key. */
export function parseDidKey(didKey: string): ParsedPublicKey {
  if (typeof didKey !== 'string' || !didKey.startsWith(DID_KEY_PREFIX)) {
    throw new InvalidKeyError(`not a did:key: ${String(didKey).slice(0, 80)}`)
  }
  return parseMultikey(didKey.slice(DID_KEY_PREFIX.length))
}

export function formatDidKey(curveOrAlg: Curve | JwtAlg, publicKey: Uint8Array): string {
  return DID_KEY_PREFIX + formatMultikey(curveOrAlg, publicKey)
}

/**
 * Legacy DID-document key form: multibase base58btc of the bare SEC1 point (no multicodec), compressed
 * or uncompressed. The curve comes from the verification method type.
 */
export function parseLegacyMultibase(curveOrAlg: Curve | JwtAlg, multibase: string): ParsedPublicKey {
  const curve = toCurve(curveOrAlg)
  const point = decodeBase58Multibase(multibase, 'publicKeyMultibase')
  return { curve, jwtAlg: curveToJwtAlg(curve), publicKey: compressPublicKey(curve, point) }
}

/**
 * The did:key of each verification method seen (type and key text), so that a cached DID document's key is
 * checked and converted (base58 decode, a point decompression by OpenSSL) once, not each time it is read: a
 * service verifying a JWT per request reads the issuer's key per request (the conversion was ~9 % of an
 * AppView's main-thread samples). Only good keys are kept; the oldest is dropped past the bound.
 */
const methodKeys = new Map<string, string>()
const METHOD_KEY_CACHE_SIZE = 10_000

/**
 * did:key for a DID-document verification method: `Multikey`, or the legacy
 * `EcdsaSecp256k1VerificationKey2019` / `EcdsaSecp256r1VerificationKey2019` suites.
 * Throws InvalidKeyError for unsupported types or bad keys.
 */
export function didKeyFromVerificationMethod(method: { type?: unknown; publicKeyMultibase?: unknown }): string {
  const { type, publicKeyMultibase } = method
  if (typeof publicKeyMultibase !== 'string') {
    throw new InvalidKeyError('verification method has no publicKeyMultibase')
  }
  if (typeof type !== 'string') throw new InvalidKeyError(`unsupported verification method type: ${String(type)}`)
  const memoKey = `${type} ${publicKeyMultibase}`
  const known = methodKeys.get(memoKey)
  if (known !== undefined) return known
  const didKey = convertVerificationMethod(type, publicKeyMultibase)
  methodKeys.set(memoKey, didKey)
  if (methodKeys.size > METHOD_KEY_CACHE_SIZE) methodKeys.delete(methodKeys.keys().next().value!)
  return didKey
}

function convertVerificationMethod(type: string, publicKeyMultibase: string): string {
  // (each point checked and compressed once: formatDidKey would convert it again)
  if (type === 'Multikey') return didKeyFromMultikey(publicKeyMultibase)
  const curve = LEGACY_SUITES[type]
  if (!curve) throw new InvalidKeyError(`unsupported verification method type: ${type}`)
  const parsed = parseLegacyMultibase(curve, publicKeyMultibase)
  return DID_KEY_PREFIX + multikeyOfCompressed(parsed.curve, parsed.publicKey)
}
