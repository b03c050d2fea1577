import { describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { cborEncode, jsonToLex, lexToJson } from '@stratos/core/data'
import { rng } from '../../../packages/core/test/repo/helpers.js'
import { prepareCreateOrUpdate, sameInJsonAndLex } from '../src/actor-store/prepare.js'
import { cidForBlock, findBlobRefs } from '../src/util/ipld.js'

const CID_A = CID.parse('bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq')
const KEYS = ['text', 'createdAt', 'langs', 'a', '$type', '$link', '$bytes', '__proto__', 'ref', 'mimeType', 'size', 'uri']
const ATOMS: unknown[] = [
  '',
  'x',
  'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq',
  'blob',
  'a\ud800b',
  0,
  -0,
  7,
  -3,
  Number.MAX_SAFE_INTEGER,
  2 ** 53,
  1.5,
  NaN,
  true,
  false,
  null,
  undefined,
  1n,
  CID_A,
  Uint8Array.of(1, 2, 3),
]

function randomValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 4 ? 2 : 5))
  if (k <= 1) return ATOMS[Math.floor(r() * ATOMS.length)]
  if (k === 2) {
    const arr = Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1))
    if (r() < 0.05) arr.length += 1 // a hole
    return arr
  }
  // own "__proto__" keys as JSON.parse makes them
  const obj: Record<string, unknown> = {}
  const n = Math.floor(r() * 4)
  for (let i = 0; i < n; i++) Object.defineProperty(obj, KEYS[Math.floor(r() * KEYS.length)]!, { value: randomValue(r, depth + 1), enumerable: true, writable: true, configurable: true })
  if (r() < 0.1) return { $type: 'blob', ref: r() < 0.5 ? CID_A : 'bafy', mimeType: 'image/png', size: 10 }
  if (r() < 0.03) return Object.assign(Object.create(null), obj)
  return obj
}

/** what prepareCreateOrUpdate gave before plain records skipped the conversions (the oracle) */
function generalPath(collection: string, value: unknown) {
  let json = lexToJson(value) as Record<string, unknown>
  if (json.$type === undefined) json = { ...json, $type: collection }
  const record = jsonToLex(json) as Record<string, unknown>
  const bytes = cborEncode(record)
  return { cid: cidForBlock(bytes, 0x71).toString(), bytes: Buffer.from(bytes).toString('hex'), blobs: findBlobRefs(record) }
}

describe('plain records (the same in JSON and lex form)', () => {
  it('are only those both conversions copy unchanged', () => {
    const r = rng(29)
    let plain = 0
    for (let i = 0; i < 20_000; i++) {
      const value = { v: randomValue(r, 0) }
      if (!sameInJsonAndLex(value, 0)) continue
      plain++
      expect(lexToJson(value)).toStrictEqual(value)
      expect(jsonToLex(value as never)).toStrictEqual(value)
    }
    expect(plain).toBeGreaterThan(2_000)
  })

  it('prepare as the general path does: same bytes, CID and blobs, same refusals', () => {
    const r = rng(7)
    let plain = 0
    for (let i = 0; i < 5_000; i++) {
      const value: Record<string, unknown> = { text: randomValue(r, 1), createdAt: '2026-12-07T12:00:00.000Z', more: randomValue(r, 1) }
      if (r() < 0.5) value.$type = 'com.example.thing'
      if (sameInJsonAndLex(value, 0)) plain++
      let expected: ReturnType<typeof generalPath> | 'error'
      try {
        expected = generalPath('com.example.thing', value)
      } catch {
        expected = 'error'
      }
      let got: ReturnType<typeof generalPath> | 'error'
      try {
        const w = prepareCreateOrUpdate({ action: 'create', did: 'did:plc:abc', collection: 'com.example.thing', rkey: '3kabc', record: value, validate: false })
        got = { cid: w.cid.toString(), bytes: Buffer.from(w.bytes).toString('hex'), blobs: w.blobs }
      } catch {
        got = 'error'
      }
      expect(got).toStrictEqual(expected)
    }
    expect(plain).toBeGreaterThan(500)
  })

  it('keeps CIDs, bytes and blobs on the general path', () => {
    expect(sameInJsonAndLex({ ref: CID_A }, 0)).toBe(false)
    expect(sameInJsonAndLex({ b: Uint8Array.of(1) }, 0)).toBe(false)
    expect(sameInJsonAndLex({ $link: CID_A.toString() }, 0)).toBe(false)
    expect(sameInJsonAndLex({ $type: 'blob', ref: { $link: CID_A.toString() }, mimeType: 'image/png', size: 1 }, 0)).toBe(false)
    const w = prepareCreateOrUpdate({
      action: 'create',
      did: 'did:plc:abc',
      collection: 'com.example.thing',
      rkey: '3kabc',
      record: { img: { $type: 'blob', ref: CID_A, mimeType: 'image/png', size: 10 } },
      validate: false,
    })
    expect(w.blobs).toStrictEqual([{ cid: CID_A, mimeType: 'image/png', size: 10 }])
    expect(sameInJsonAndLex({ $type: 'app.bsky.feed.post', text: 'hi', langs: ['en'], n: 3 }, 0)).toBe(true)
  })
})
