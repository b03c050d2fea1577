import { describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { cborEncode } from '@stratos/core/data'
import { encodeRecordCbor } from '../src/actor-store/record-cbor.js'

/** A small deterministic PRNG, so a failure can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const CID_A = CID.parse('bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq')
const STRINGS = ['', 'a', 'text', 'é', 'naïve café', '日本語のテキスト', '🦋 butterfly', 'x'.repeat(23), 'y'.repeat(24), 'z'.repeat(255), 'w'.repeat(256), 'v'.repeat(70000), 'ascii '.repeat(20)]
const KEYS = ['a', 'b', 'aa', 'ab', 'B', '$type', 'text', 'createdAt', 'langs', 'reply', 'embed', 'facets', 'z', 'zz', 'zzz', '0', '__x']
const INTS = [0, -0, 1, -1, 23, 24, -24, -25, 255, 256, -256, -257, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -(2 ** 32), Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]

function randomValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 6 : 9))
  switch (k) {
    case 0:
      return STRINGS[Math.floor(r() * STRINGS.length)]
    case 1:
      return INTS[Math.floor(r() * INTS.length)]
    case 2:
      return r() < 0.5
    case 3:
      return null
    case 4:
      return r() < 0.5 ? CID_A : Uint8Array.from({ length: Math.floor(r() * 40) }, (_, i) => i * 7)
    case 5:
      return STRINGS[Math.floor(r() * STRINGS.length)]! + String(Math.floor(r() * 1e6))
    case 6:
    case 7: {
      const obj: Record<string, unknown> = {}
      const n = Math.floor(r() * 6)
      for (let i = 0; i < n; i++) obj[KEYS[Math.floor(r() * KEYS.length)]!] = randomValue(r, depth + 1)
      return obj
    }
    default:
      return Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r, depth + 1))
  }
}

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex') : 'undefined')

describe('encodeRecordCbor', () => {
  it('writes the bytes cborEncode writes for 5,000 random records', () => {
    const r = rng(11)
    for (let i = 0; i < 5000; i++) {
      const record = { $type: 'com.example.thing', value: randomValue(r, 0), more: randomValue(r, 1) }
      const mine = hex(encodeRecordCbor(record))
      expect(mine, JSON.stringify(record, (_k, v) => (typeof v === 'string' && v.length > 100 ? `${v.slice(0, 10)}…` : v))).toBe(hex(cborEncode(record)))
    }
  })

  it('writes a typical post as cborEncode does', () => {
    const post = {
      $type: 'app.bsky.feed.post',
      text: 'bench post: the quick brown fox jumps over the lazy dog 🦊',
      createdAt: '2026-12-07T12:00:00.000Z',
      langs: ['en'],
      reply: { root: { uri: 'at://did:plc:abc/app.bsky.feed.post/3k', cid: 'bafy' }, parent: { uri: 'at://did:plc:abc/app.bsky.feed.post/3k', cid: 'bafy' } },
      embed: { $type: 'app.bsky.embed.images', images: [{ alt: '', image: { $type: 'blob', ref: CID_A, mimeType: 'image/png', size: 12345 } }] },
    }
    expect(hex(encodeRecordCbor(post))).toBe(hex(cborEncode(post)))
  })

  it('leaves to cborEncode what it does not take (which encodes it or refuses it)', () => {
    const lone = 'a\ud800b'
    const cases: unknown[] = [
      { n: 1.5 },
      { n: undefined },
      { n: 2 ** 53 },
      { n: 1n },
      { 'clé': 1 },
      { s: lone },
      { a: [1, , 3] },
      { d: new Date(0) },
      { m: new Map() },
      { f: () => 1 },
    ]
    let nested: unknown = 1
    for (let i = 0; i < 40; i++) nested = { n: nested }
    cases.push(nested)
    for (const c of cases) expect(encodeRecordCbor(c)).toBeUndefined()
    // what cborEncode makes of those it accepts
    expect(cborEncode({ 'clé': 1 }).length).toBeGreaterThan(0)
    expect(cborEncode(nested).length).toBeGreaterThan(0)
  })
})
