import { CID } from 'multiformats/cid'
import { isLexiconBlobRefInstance, RAW_CODEC } from './cbor.js'

/** A blob reference in the in-memory data model (what cborEncode encodes). */
export interface BlobRef {
  $type: 'blob'
  ref: CID
  mimeType: string
  size: number
}

/** JSON form of a blob reference. */
export interface BlobRefJson {
  $type: 'blob'
  ref: { $link: string }
  mimeType: string
  size: number
}

/** Legacy blob (read-only, never written): `{ cid, mimeType }`. */
export interface LegacyBlobRef {
  cid: string
  mimeType: string
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function validBlobFields(v: Record<string, unknown>): boolean {
  return (
    typeof v.mimeType === 'string' &&
    v.mimeType.length > 0 &&
    typeof v.size === 'number' &&
    Number.isSafeInteger(v.size) &&
    v.size >= 0
  )
}

/**
 * True for a blob reference in any of its forms: in-memory (`ref` is a CID), JSON (`ref` is
 * `{ $link }`), or an @atproto/lexicon BlobRef instance. Legacy `{cid, mimeType}` blobs: see isLegacyBlobRef.
 */
export function isBlobRef(v: unknown): v is BlobRef | BlobRefJson {
  if (isLexiconBlobRefInstance(v)) return true
  if (!isRecord(v) || v.$type !== 'blob' || !validBlobFields(v)) return false
  const ref = v.ref
  if (CID.asCID(ref)) return true
  if (isRecord(ref) && typeof ref.$link === 'string' && Object.keys(ref).length === 1) {
    try {
      CID.parse(ref.$link)
      return true
    } catch {
      return false
    }
  }
  return false
}

export function isLegacyBlobRef(v: unknown): v is LegacyBlobRef {
  if (!isRecord(v) || '$type' in v || typeof v.cid !== 'string' || typeof v.mimeType !== 'string') return false
  try {
    CID.parse(v.cid)
    return true
  } catch {
    return false
  }
}

/** JSON form of a blob reference. */
export function blobRefJson(cid: CID | string, mimeType: string, size: number): BlobRefJson {
  return { $type: 'blob', ref: { $link: cid.toString() }, mimeType, size }
}

/** In-memory form of a blob reference (encodes to the canonical CBOR blob map). */
export function blobRef(cid: CID | string, mimeType: string, size: number): BlobRef {
  return { $type: 'blob', ref: typeof cid === 'string' ? CID.parse(cid) : cid, mimeType, size }
}

/** The blob CID of any blob form (modern, JSON, lexicon instance, legacy), or null. */
export function blobCid(v: unknown): CID | null {
  if (isLexiconBlobRefInstance(v)) return blobCid(v.ipld())
  if (isBlobRef(v)) {
    const ref = (v as { ref: unknown }).ref
    return CID.asCID(ref) ?? CID.parse((ref as { $link: string }).$link)
  }
  if (isLegacyBlobRef(v)) return CID.parse(v.cid)
  return null
}

export { RAW_CODEC }
