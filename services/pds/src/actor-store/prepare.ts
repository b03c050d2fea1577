import type { CID } from 'multiformats/cid'
import { validateRecord } from '@stratos/core/lexicon'
import { isValidNsid, isValidRecordKey, nextTid as coreNextTid } from '@stratos/core/syntax'
import { InvalidRequestError } from '../errors.js'
import { cborEncode, cidForBlock, DataModelError, findBlobRefs, ipldToJson, jsonToIpld, type FoundBlob } from '../util/ipld.js'
import { encodeRecordCbor } from './record-cbor.js'

/** Largest record block the PDS accepts (the sync spec's per-record limit). */
export const MAX_RECORD_BYTES = 1_000_000

export type ValidationStatus = 'valid' | 'unknown' | undefined

export interface Backlink {
  path: string
  linkTo: string
}

export interface PreparedCreateOrUpdate {
  action: 'create' | 'update'
  did: string
  collection: string
  rkey: string
  uri: string
  record: Record<string, unknown>
  cid: CID
  bytes: Uint8Array
  /** for update: the expected current CID (null = must not exist); undefined = no check */
  swapCid?: CID | null
  validationStatus: ValidationStatus
  blobs: FoundBlob[]
  backlinks: Backlink[]
}

export interface PreparedDelete {
  action: 'delete'
  did: string
  collection: string
  rkey: string
  uri: string
  swapCid?: CID | null
}

export type PreparedWrite = PreparedCreateOrUpdate | PreparedDelete

export const atUri = (did: string, collection: string, rkey: string) => `at://${did}/${collection}/${rkey}`

/** A fresh record key (TID, strictly increasing in this process). */
export function nextTid(): string {
  return coreNextTid()
}

function checkCollectionAndKey(collection: string, rkey: string) {
  if (!isValidNsid(collection)) throw new InvalidRequestError(`Invalid collection: ${collection}`)
  if (!isValidRecordKey(rkey)) throw new InvalidRequestError(`Invalid record key: ${rkey}`)
}

/**
 * Validation modes (com.atproto.repo.* `validate` param): true → the collection must be known and the
 * record valid; false → only data-model checks; unset → validate known collections, accept unknown ones
 * with validationStatus "unknown".
 */
function validate(collection: string, rkey: string, record: unknown, mode: boolean | undefined): ValidationStatus {
  if (mode === false) return undefined
  // `record` is the JSON form ipldToJson gave
  const res = validateRecord(collection, record, { rkey, jsonForm: true })
  if (res.valid === 'unknown') {
    if (mode === true) throw new InvalidRequestError(`Lexicon not found: lex:${collection}`)
    return 'unknown'
  }
  if (res.valid === false) throw new InvalidRequestError(`Invalid ${collection} record: ${res.message}`)
  return 'valid'
}

/** Backlinks the PDS indexes, so a second like/repost/follow/block of the same subject replaces the first. */
export function backlinksFor(collection: string, record: Record<string, unknown>): Backlink[] {
  const subject = record.subject
  if (collection === 'app.bsky.graph.follow' || collection === 'app.bsky.graph.block') {
    return typeof subject === 'string' && subject.startsWith('did:') ? [{ path: 'subject', linkTo: subject }] : []
  }
  if (collection === 'app.bsky.feed.like' || collection === 'app.bsky.feed.repost') {
    const uri = (subject as { uri?: unknown } | undefined)?.uri
    return typeof uri === 'string' && uri.startsWith('at://') ? [{ path: 'subject.uri', linkTo: uri }] : []
  }
  return []
}

/** Plain values nested deeper than this take the general path (which enforces the data model's own limit). */
const PLAIN_MAX_DEPTH = 32

/**
 * Whether a record value is the same in JSON form and in lex form, so that core's lexToJson and jsonToLex
 * would each return an equal copy of it: only plain objects, arrays without holes, strings, booleans, null
 * and safe integers; no `$link`, `$bytes` or `__proto__` key (jsonToLex converts or refuses them), every
 * `$type` a non-empty string other than "blob". Anything else (CIDs, bytes, blobs, floats, undefined, other
 * prototypes, deep nesting) is left to the conversions, which convert it or throw the data-model error.
 */
export function sameInJsonAndLex(v: unknown, depth: number): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isSafeInteger(v)
    case 'object': {
      if (v === null) return true
      if (depth >= PLAIN_MAX_DEPTH) return false
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          if (!(i in v) || !sameInJsonAndLex(v[i], depth + 1)) return false
        }
        return true
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return false
      const obj = v as Record<string, unknown>
      for (const k of Object.keys(obj)) {
        if (k === '$link' || k === '$bytes' || k === '__proto__') return false
        if (k === '$type' && (typeof obj.$type !== 'string' || obj.$type === '' || obj.$type === 'blob')) return false
        if (!sameInJsonAndLex(obj[k], depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

export function prepareCreateOrUpdate(opts: {
  action: 'create' | 'update'
  did: string
  collection: string
  rkey?: string
  record: unknown
  validate?: boolean
  swapCid?: CID | null
}): PreparedCreateOrUpdate {
  const { did, collection } = opts
  const rkey = opts.rkey ?? nextTid()
  checkCollectionAndKey(collection, rkey)
  if (typeof opts.record !== 'object' || opts.record === null || Array.isArray(opts.record)) {
    throw new InvalidRequestError('Record must be an object')
  }
  // the record may come in JSON form or already decoded (CIDs, blob refs): normalise through JSON form,
  // unless it reads the same in both (no CID, bytes or blob: most records), when it is used as both
  const plain = sameInJsonAndLex(opts.record, 0)
  let json: unknown
  if (plain) {
    json = opts.record
  } else {
    try {
      json = ipldToJson(opts.record)
    } catch (err) {
      throw new InvalidRequestError(`Invalid record: ${(err as Error).message}`)
    }
  }
  // a record without $type is of the collection it is written to (as the reference PDS fills it in)
  if ((json as { $type?: unknown }).$type === undefined) json = { ...(json as object), $type: collection }
  const $type = (json as { $type?: unknown }).$type
  if ($type !== collection) {
    throw new InvalidRequestError(`Invalid $type: expected ${collection}, got ${String($type)}`)
  }
  let record: Record<string, unknown>
  if (plain) {
    record = json as Record<string, unknown>
  } else {
    try {
      record = jsonToIpld(json) as Record<string, unknown>
    } catch (err) {
      if (err instanceof DataModelError) throw new InvalidRequestError(`Invalid record: ${err.message}`)
      throw err
    }
  }
  const validationStatus = validate(collection, rkey, json, opts.validate)
  let bytes: Uint8Array
  try {
    bytes = encodeRecordCbor(record) ?? cborEncode(record)
  } catch (err) {
    throw new InvalidRequestError(`Invalid record: ${(err as Error).message}`)
  }
  if (bytes.byteLength > MAX_RECORD_BYTES) {
    throw new InvalidRequestError(`Record is too large (${bytes.byteLength} bytes, limit ${MAX_RECORD_BYTES})`)
  }
  return {
    action: opts.action,
    did,
    collection,
    rkey,
    uri: atUri(did, collection, rkey),
    record,
    cid: cidForBlock(bytes, 0x71),
    bytes,
    swapCid: opts.swapCid,
    validationStatus,
    // a blob holds a CID: a plain record has none
    blobs: plain ? [] : findBlobRefs(record),
    backlinks: backlinksFor(collection, record),
  }
}

export function prepareDelete(opts: { did: string; collection: string; rkey: string; swapCid?: CID | null }): PreparedDelete {
  checkCollectionAndKey(opts.collection, opts.rkey)
  return { action: 'delete', ...opts, uri: atUri(opts.did, opts.collection, opts.rkey) }
}
