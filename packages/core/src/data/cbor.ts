/**
 * DAG-CBOR (atproto data model / DRISL) encoding and decoding on @ipld/dag-cbor, with the atproto
 * restrictions enforced both ways.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from '../crypto/sha256.js'
import { scanCborItem, DEFAULT_MAX_DEPTH, type CborLimits } from './cbor-scan.js'
import { DataModelError } from './errors.js'

export const DAG_CBOR_CODEC = 0x71
export const RAW_CODEC = 0x55
export const SHA256_CODE = 0x12

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

/** True for a @atproto/lexicon BlobRef instance (duck-typed, so this module does not load the lexicon package). */
export function isLexiconBlobRefInstance(v: unknown): v is { ipld(): Record<string, unknown> } {
  return (
    typeof v === 'object' &&
    v !== null &&
    (v as object).constructor?.name === 'BlobRef' &&
    typeof (v as { ipld?: unknown }).ipld === 'function'
  )
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/**
 * Checks that `value` is in the data model; returns true when it contains @atproto/lexicon BlobRef
 * instances that must be converted to their plain form before encoding.
 */
function checkEncodable(value: unknown, path: string, depth: number): boolean {
  if (depth > DEFAULT_MAX_DEPTH) throw new DataModelError(`${path}: nesting deeper than ${DEFAULT_MAX_DEPTH}`)
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return false
    case 'number':
      if (!Number.isInteger(value)) throw new DataModelError(`${path}: floats are not allowed (${value})`)
      if (!Number.isSafeInteger(value)) throw new DataModelError(`${path}: integer outside ±2^53 (${value})`)
      return false
    case 'bigint':
      if (value < INT64_MIN || value > INT64_MAX) throw new DataModelError(`${path}: integer outside int64`)
      return false
    case 'undefined':
      throw new DataModelError(`${path}: undefined is not allowed`)
    case 'object': {
      if (value === null || value instanceof Uint8Array) return false
      if (CID.asCID(value)) return false
      if (Array.isArray(value)) {
        let convert = false
        for (let i = 0; i < value.length; i++) {
          if (!(i in value)) throw new DataModelError(`${path}[${i}]: sparse arrays are not allowed`)
          if (checkEncodable(value[i], `${path}[${i}]`, depth + 1)) convert = true
        }
        return convert
      }
      if (isLexiconBlobRefInstance(value)) {
        checkEncodable(value.ipld(), path, depth)
        return true
      }
      if (!isPlainObject(value)) {
        throw new DataModelError(`${path}: ${(value as object).constructor?.name ?? 'object'} is not in the data model`)
      }
      let convert = false
      for (const [k, v] of Object.entries(value)) {
        if (checkEncodable(v, `${path}.${k}`, depth + 1)) convert = true
      }
      return convert
    }
    default:
      throw new DataModelError(`${path}: ${typeof value} is not in the data model`)
  }
}

function convertBlobRefs(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array || CID.asCID(value)) return value
  if (Array.isArray(value)) return value.map(convertBlobRefs)
  if (isLexiconBlobRefInstance(value)) return value.ipld()
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) out[k] = convertBlobRefs(v)
  return out
}

/**
 * Canonical DAG-CBOR encoding (map keys length-first then bytewise). Throws DataModelError on floats,
 * undefined, non-plain objects and other values outside the atproto data model.
 */
export function cborEncode(value: unknown): Uint8Array {
  const convert = checkEncodable(value, '$', 0)
  try {
    return dagCbor.encode(convert ? convertBlobRefs(value) : value)
  } catch (err) {
    throw new DataModelError(`cannot encode as DAG-CBOR: ${(err as Error).message}`)
  }
}

/**
 * Decodes exactly one DAG-CBOR item. Refuses floats, tags other than 42, indefinite lengths, simple values
 * other than true/false/null, non-string map keys, the map key "__proto__" (which would become a
 * prototype, not data), duplicate keys, non-shortest integer forms and
 * trailing bytes (DataModelError). Integers outside ±2^53 come back as bigint.
 */
export function cborDecode<T = unknown>(bytes: Uint8Array, limits?: CborLimits): T {
  const end = scanCborItem(bytes, 0, limits)
  if (end !== bytes.length) throw new DataModelError(`invalid CBOR: ${bytes.length - end} trailing bytes`)
  return decodeChecked(bytes) as T
}

/** Decodes a sequence of concatenated DAG-CBOR items (for example an event-stream frame: header, body). */
export function cborDecodeMulti(bytes: Uint8Array, limits?: CborLimits): unknown[] {
  const out: unknown[] = []
  let pos = 0
  while (pos < bytes.length) {
    const end = scanCborItem(bytes, pos, limits)
    out.push(decodeChecked(bytes.subarray(pos, end)))
    pos = end
  }
  return out
}

/** Decodes the first item and returns it with the rest of the bytes. */
export function cborDecodeFirst<T = unknown>(bytes: Uint8Array, limits?: CborLimits): [T, Uint8Array] {
  const end = scanCborItem(bytes, 0, limits)
  return [decodeChecked(bytes.subarray(0, end)) as T, bytes.subarray(end)]
}

function decodeChecked(bytes: Uint8Array): unknown {
  try {
    return dagCbor.decode(bytes)
  } catch (err) {
    throw new DataModelError(`invalid DAG-CBOR: ${(err as Error).message}`)
  }
}

/** CIDv1, sha2-256, for a block with the given codec (0x71 dag-cbor, 0x55 raw). */
export function cidForBlock(bytes: Uint8Array, codec: number): CID {
  return CID.createV1(codec, createDigest(SHA256_CODE, sha256(bytes)))
}

/** CID of the canonical DAG-CBOR encoding of `value` (synchronous). */
export function cidForCbor(value: unknown): CID {
  return cidForBlock(cborEncode(value), DAG_CBOR_CODEC)
}

/** CID of raw bytes (codec raw 0x55), as used for blobs. */
export function cidForRawBytes(bytes: Uint8Array): CID {
  return cidForBlock(bytes, RAW_CODEC)
}

/** Encodes `value` and returns both the bytes and their CID. */
export function encodeBlock(value: unknown): { cid: CID; bytes: Uint8Array } {
  const bytes = cborEncode(value)
  return { cid: cidForBlock(bytes, DAG_CBOR_CODEC), bytes }
}

/** True when `bytes` hash (sha2-256) to `cid`. Only sha2-256 CIDs are supported (others → false). */
export function verifyCidForBytes(cid: CID, bytes: Uint8Array): boolean {
  if (cid.multihash.code !== SHA256_CODE) return false
  const digest = sha256(bytes)
  const expected = cid.multihash.digest
  if (expected.length !== digest.length) return false
  for (let i = 0; i < digest.length; i++) if (digest[i] !== expected[i]) return false
  return true
}

/**
 * A "blessed" atproto CID: v1, sha2-256 with a 32-byte digest, codec dag-cbor (0x71) or raw (0x55).
 */
export function isBlessedCid(cid: CID, codec?: number): boolean {
  return (
    cid.version === 1 &&
    (codec === undefined ? cid.code === DAG_CBOR_CODEC || cid.code === RAW_CODEC : cid.code === codec) &&
    cid.multihash.code === SHA256_CODE &&
    cid.multihash.size === 32
  )
}

export { DEFAULT_MAX_DEPTH, type CborLimits }
