/**
 * The read path's pre-serialized record JSON (getRecord, listRecords): the text spliced together from the
 * cached value JSON is exactly what the XRPC server's generic serialization gives for the same body, for
 * records with links, blobs, bytes, unicode and nesting; the cache serves repeats and stays bounded.
 */
import { describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { cborDecode, cborEncode, cidForCbor, lexToJson } from '@stratos/core/data'
import { RecordJsonCache, recordJson, recordView } from '../src/actor-store/record-json.js'

const link = cidForCbor({ hello: 'world' })
const RECORDS: Record<string, unknown>[] = [
  { $type: 'app.bsky.feed.post', text: 'plain', createdAt: '2026-01-01T00:00:00.000Z' },
  { $type: 'app.bsky.feed.post', text: 'ünïcødé "quoted" \\ back\nslash \u2028 😀', langs: ['en', 'fr'], createdAt: '2026-01-01T00:00:00.000Z' },
  {
    $type: 'app.bsky.feed.post',
    text: 'with an image',
    embed: { $type: 'app.bsky.embed.images', images: [{ alt: '', image: { $type: 'blob', ref: link, mimeType: 'image/png', size: 1234 } }] },
    createdAt: '2026-01-01T00:00:00.000Z',
  },
  { $type: 'com.example.thing', link, bytes: new Uint8Array([0, 1, 2, 250, 255]), nested: { deep: [[1, 2], { x: null, y: true }] }, n: -42 },
]

describe('record JSON', () => {
  it('splices the same text the generic serialization gives', () => {
    for (const value of RECORDS) {
      const bytes = cborEncode(value)
      const cid = cidForCbor(value).toString()
      const uri = `at://did:plc:abc/${String(value.$type)}/3l2222222222a`
      // what the generic path sends: the stored block decoded (canonical key order), the whole body converted
      const generic = JSON.stringify(lexToJson({ uri, cid, value: cborDecode(bytes) } as never))
      expect(recordView(uri, cid, recordJson(bytes))).toBe(generic)
      expect(JSON.parse(recordView(uri, cid, recordJson(bytes)))).toEqual(lexToJson({ uri, cid, value } as never))
    }
  })

  it('serves repeats from the cache and stays within its bound', () => {
    const cache = new RecordJsonCache(64 * 200)
    let loads = 0
    const bytes = cborEncode(RECORDS[0])
    const cid = CID.asCID(cidForCbor(RECORDS[0]))!.toString()
    const first = cache.get(cid, () => (loads++, bytes))
    expect(cache.get(cid, () => (loads++, bytes))).toBe(first)
    expect(loads).toBe(1)
    expect(cache.get('bafymissing', () => null)).toBeNull()
    for (let i = 0; i < 500; i++) {
      const v = { $type: 'app.bsky.feed.post', text: `post ${i}`, createdAt: '2026-01-01T00:00:00.000Z' }
      cache.get(`cid-${i}`, () => cborEncode(v))
    }
    // ~90 characters each: at most 64 × 200 characters kept
    expect(cache.size).toBeLessThan(150)
    expect(cache.size).toBeGreaterThan(50)
  })
})
