import { CID } from 'multiformats/cid'
import { cborEncode, cidForBlock, cidForCbor, DataModelError, jsonToLex, lexToJson } from '@stratos/core/data'

/**
 * Record data as the PDS handles it: JSON form on the wire, the in-memory data model ("lex" form: CIDs,
 * bytes, plain blob objects) for hashing and storage. Thin names over @stratos/core/data.
 */
export { cborEncode, cidForBlock, cidForCbor, DataModelError }
export const jsonToIpld = (json: unknown): unknown => jsonToLex(json)
export const ipldToJson = (value: unknown): unknown => lexToJson(value)

export interface FoundBlob {
  cid: CID
  mimeType: string
  size: number
}

const MAX_DEPTH = 64

/** Every blob object in a record (lex form). */
export function findBlobRefs(value: unknown, out: FoundBlob[] = [], depth = 0): FoundBlob[] {
  if (depth > MAX_DEPTH || value === null || typeof value !== 'object') return out
  if (CID.asCID(value) || value instanceof Uint8Array) return out
  if (Array.isArray(value)) {
    for (const v of value) findBlobRefs(v, out, depth + 1)
    return out
  }
  const obj = value as Record<string, unknown>
  if (obj.$type === 'blob') {
    const ref = CID.asCID(obj.ref)
    if (ref) out.push({ cid: ref, mimeType: String(obj.mimeType), size: Number(obj.size) })
    return out
  }
  for (const v of Object.values(obj)) findBlobRefs(v, out, depth + 1)
  return out
}
