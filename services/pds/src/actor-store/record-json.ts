import { cborDecode, lexToJson } from '@stratos/core/data'

/**
 * Record values as JSON text (what getRecord and listRecords send), by record CID. A CID names its bytes,
 * so an entry never goes stale and one cache serves every account; LRU, bounded by total characters.
 * A read served from it skips the block read, the CBOR decode and the JSON conversion.
 */
export class RecordJsonCache {
  private readonly entries = new Map<string, string>()
  private chars = 0

  constructor(private readonly maxChars = 32 * 1024 * 1024) {}

  /** The value's JSON text: cached, or made from the bytes `load` reads (null when it finds none). */
  get(cid: string, load: () => Uint8Array | null): string | null {
    const hit = this.entries.get(cid)
    if (hit !== undefined) {
      this.entries.delete(cid)
      this.entries.set(cid, hit)
      return hit
    }
    const bytes = load()
    if (!bytes) return null
    const json = recordJson(bytes)
    if (json.length <= this.maxChars / 64) {
      this.entries.set(cid, json)
      this.chars += json.length
      for (const [k, v] of this.entries) {
        if (this.chars <= this.maxChars) break
        this.entries.delete(k)
        this.chars -= v.length
      }
    }
    return json
  }

  get size(): number {
    return this.entries.size
  }
}

/** JSON text of a record block's value, as the XRPC server would serialize it. */
export function recordJson(bytes: Uint8Array): string {
  return JSON.stringify(lexToJson(cborDecode(bytes)))
}

/** One process-wide cache (content-addressed, so shared safely by every account and PDS instance). */
export const recordJsonCache = new RecordJsonCache()

/** `{"uri":…,"cid":…,"value":…}` with the value's JSON text spliced in. */
export function recordView(uri: string, cid: string, valueJson: string): string {
  return `{"uri":${JSON.stringify(uri)},"cid":${JSON.stringify(cid)},"value":${valueJson}}`
}
