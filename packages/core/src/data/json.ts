/**
 * atproto JSON form <-> in-memory data model ("lex" form, what cborEncode takes):
 * `{"$link": "<cid>"}` <-> CID, `{"$bytes": "<base64>"}` <-> Uint8Array, blobs stay
 * `{ $type: 'blob', ref: CID, mimeType, size }` objects.
 */
import { CID } from 'multiformats/cid'
import { isLexiconBlobRefInstance } from './cbor.js'
import { DataModelError } from './errors.js'

const MAX_DEPTH = 256
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/

/** RFC 4648 §4 standard base64, padding optional. Throws DataModelError. */
export function decodeBase64(s: string): Uint8Array {
  const unpadded = s.replace(/=+$/, '')
  if (!BASE64_RE.test(s) || unpadded.length % 4 === 1 || (s.length !== unpadded.length && s.length % 4 !== 0)) {
    throw new DataModelError('$bytes is not valid base64')
  }
  const buf = Buffer.from(unpadded, 'base64')
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
}

/** Unpadded standard base64, as the interop vectors emit. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '')
}

function fail(path: string, msg: string): never {
  throw new DataModelError(`${path}: ${msg}`)
}

function parseLink(value: unknown, path: string): CID {
  if (typeof value !== 'string') fail(path, '$link must be a string')
  try {
    return CID.parse(value)
  } catch {
    fail(path, `$link is not a valid CID: ${value.slice(0, 100)}`)
  }
}

function checkBlob(obj: Record<string, unknown>, path: string): void {
  const ref = obj.ref
  if (ref === undefined) fail(path, 'blob is missing "ref"')
  if (!(ref instanceof CID) && !CID.asCID(ref)) fail(path, 'blob "ref" must be a cid-link')
  if (typeof obj.mimeType !== 'string' || obj.mimeType.length === 0) {
    fail(path, 'blob "mimeType" must be a non-empty string')
  }
  if (typeof obj.size !== 'number' || !Number.isSafeInteger(obj.size) || obj.size < 0) {
    fail(path, 'blob "size" must be a non-negative integer')
  }
}

function fromJson(value: unknown, path: string, depth: number): unknown {
  if (depth > MAX_DEPTH) fail(path, `nesting deeper than ${MAX_DEPTH}`)
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      if (!Number.isInteger(value)) fail(path, `floats are not allowed (${value})`)
      if (!Number.isSafeInteger(value)) fail(path, `integer outside ±2^53 (${value})`)
      return value
    case 'object': {
      if (value === null) return null
      if (Array.isArray(value)) return value.map((v, i) => fromJson(v, `${path}[${i}]`, depth + 1))
      const obj = value as Record<string, unknown>
      if ('$link' in obj) {
        if (Object.keys(obj).length !== 1) fail(path, '$link object must have no other keys')
        return parseLink(obj.$link, path)
      }
      if ('$bytes' in obj) {
        if (Object.keys(obj).length !== 1) fail(path, '$bytes object must have no other keys')
        if (typeof obj.$bytes !== 'string') fail(path, '$bytes must be a string')
        try {
          return decodeBase64(obj.$bytes)
        } catch (err) {
          fail(path, (err as Error).message)
        }
      }
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(obj)) {
        // assigning "__proto__" would set the prototype instead of storing the key: the stored value would
        // silently differ from the submitted one, so such keys are refused
        if (k === '__proto__') fail(`${path}.${k}`, 'the key "__proto__" is not allowed')
        out[k] = fromJson(v, `${path}.${k}`, depth + 1)
      }
      if ('$type' in obj) {
        if (typeof obj.$type !== 'string' || obj.$type.length === 0) fail(path, '$type must be a non-empty string')
        if (obj.$type === 'blob') checkBlob(out, path)
      }
      return out
    }
    default:
      fail(path, `${typeof value} is not valid JSON data`)
  }
}

/**
 * Converts atproto JSON (already parsed) into the in-memory data model, validating it: `$link` → CID,
 * `$bytes` → Uint8Array, blob objects checked. The top level must be an object. Throws DataModelError.
 */
export function jsonToLex(json: unknown): unknown {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new DataModelError('$: top-level value must be an object')
  }
  return fromJson(json, '$', 0)
}

/** Like jsonToLex, for any value (no top-level object requirement). */
export function jsonValueToLex(json: unknown): unknown {
  return fromJson(json, '$', 0)
}

/** Validates atproto JSON against the data model (see jsonToLex). Throws DataModelError. */
export function validateDataModelJson(json: unknown): void {
  jsonToLex(json)
}

/** True when `json` is valid atproto data-model JSON with an object at the top. */
export function isValidDataModelJson(json: unknown): boolean {
  try {
    jsonToLex(json)
    return true
  } catch {
    return false
  }
}

/**
 * Converts the in-memory data model to atproto JSON: CID → `{"$link"}`, bytes → `{"$bytes"}` (unpadded
 * base64). @atproto/lexicon BlobRef instances become plain blob objects. Throws DataModelError for
 * values JSON cannot carry (floats never reach here from cborDecode; bigint outside ±2^53, undefined
 * inside arrays, functions...). Undefined object properties are dropped, as JSON.stringify would.
 */
export function lexToJson(value: unknown): unknown {
  return toJson(value, '$', 0)
}

function toJson(value: unknown, path: string, depth: number): unknown {
  if (depth > MAX_DEPTH) fail(path, `nesting deeper than ${MAX_DEPTH}`)
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      if (!Number.isInteger(value)) fail(path, `floats are not allowed (${value})`)
      return value
    case 'bigint':
      if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
        fail(path, 'integer outside ±2^53 cannot be represented in JSON')
      }
      return Number(value)
    case 'object': {
      if (value === null) return null
      if (value instanceof Uint8Array) return { $bytes: encodeBase64(value) }
      const cid = CID.asCID(value)
      if (cid) return { $link: cid.toString() }
      if (Array.isArray(value)) return value.map((v, i) => toJson(v, `${path}[${i}]`, depth + 1))
      if (isLexiconBlobRefInstance(value)) return toJson(value.ipld(), path, depth)
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value)) {
        if (v === undefined) continue
        out[k] = toJson(v, `${path}.${k}`, depth + 1)
      }
      return out
    }
    default:
      fail(path, `${typeof value} cannot be represented in JSON`)
  }
}
