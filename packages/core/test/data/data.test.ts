import { BlobRef as LexBlobRef, jsonToLex as refJsonToLex, lexToJson as refLexToJson } from '@atproto/lexicon'
import { describe, expect, it } from 'vitest'
import * as dagCbor from '@ipld/dag-cbor'
import {
  blobCid,
  blobRef,
  blobRefJson,
  cborDecode,
  cborDecodeFirst,
  cborDecodeMulti,
  cborEncode,
  CID,
  cidForBlock,
  cidForCbor,
  cidForRawBytes,
  DataModelError,
  isBlessedCid,
  isBlobRef,
  isLegacyBlobRef,
  jsonToLex,
  lexToJson,
  validateDataModelJson,
  verifyCidForBytes,
} from '@stratos/core/data'
import { readInteropJson, reportVectors } from '../util/vectors.js'

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'))
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex')

describe('data model: interop fixtures', () => {
  const fixtures = readInteropJson<{ json: unknown; cbor_base64: string; cid: string }[]>(
    'data-model/data-model-fixtures.json',
  )

  it('JSON → CBOR bytes, CID, and CBOR → JSON all match', () => {
    let passed = 0
    for (const f of fixtures) {
      const expectedBytes = Uint8Array.from(Buffer.from(f.cbor_base64, 'base64'))
      const lex = jsonToLex(f.json)
      const bytes = cborEncode(lex)
      expect(toHex(bytes)).toBe(toHex(expectedBytes))
      const cid = cidForCbor(lex)
      expect(cid.toString()).toBe(f.cid)
      expect(isBlessedCid(cid)).toBe(true)
      expect(cidForBlock(expectedBytes, 0x71).toString()).toBe(f.cid)
      expect(verifyCidForBytes(CID.parse(f.cid), expectedBytes)).toBe(true)
      const back = lexToJson(cborDecode(expectedBytes))
      expect(back).toEqual(f.json)
      // the reference library reads and writes the same JSON
      expect(refLexToJson(cborDecode(expectedBytes) as never)).toEqual(back)
      passed++
    }
    reportVectors('data-model-fixtures.json', passed, fixtures.length)
    expect(passed).toBe(fixtures.length)
  })
})

describe('data model: valid / invalid JSON', () => {
  it('accepts every data-model-valid.json vector and round-trips it through CBOR', () => {
    const vectors = readInteropJson<{ note: string; json: unknown }[]>('data-model/data-model-valid.json')
    let passed = 0
    for (const v of vectors) {
      expect(() => validateDataModelJson(v.json), v.note).not.toThrow()
      const bytes = cborEncode(jsonToLex(v.json))
      expect(lexToJson(cborDecode(bytes)), v.note).toEqual(v.json)
      passed++
    }
    reportVectors('data-model-valid.json', passed, vectors.length)
    expect(passed).toBe(vectors.length)
  })

  it('rejects every data-model-invalid.json vector with a DataModelError', () => {
    const vectors = readInteropJson<{ note: string; json: unknown }[]>('data-model/data-model-invalid.json')
    let passed = 0
    for (const v of vectors) {
      expect(() => validateDataModelJson(v.json), v.note).toThrow(DataModelError)
      expect(() => jsonToLex(v.json), v.note).toThrow(DataModelError)
      passed++
    }
    reportVectors('data-model-invalid.json', passed, vectors.length)
    expect(passed).toBe(vectors.length)
  })

  it('checks $bytes base64 and other edge cases', () => {
    expect(jsonToLex({ b: { $bytes: 'AQID' } })).toEqual({ b: Uint8Array.of(1, 2, 3) })
    expect(jsonToLex({ b: { $bytes: 'AQI=' } })).toEqual({ b: Uint8Array.of(1, 2) }) // padding accepted
    expect(jsonToLex({ b: { $bytes: 'AQI' } })).toEqual({ b: Uint8Array.of(1, 2) })
    expect(() => jsonToLex({ b: { $bytes: 'A-_B' } })).toThrow(DataModelError) // url-safe alphabet
    expect(() => jsonToLex({ b: { $bytes: 'A' } })).toThrow(DataModelError)
    expect(() => jsonToLex({ b: { $bytes: 'AQ=I' } })).toThrow(DataModelError)
    expect(lexToJson({ b: Uint8Array.of(1, 2) })).toEqual({ b: { $bytes: 'AQI' } })
    expect(() => jsonToLex([1])).toThrow(DataModelError)
    expect(() => jsonToLex({ a: { $type: 'blob', ref: { $link: 'bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity' }, mimeType: '', size: 1 } })).toThrow(DataModelError)
    expect(() => jsonToLex({ a: { $type: 'blob', ref: { $link: 'bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity' }, mimeType: 'a/b', size: 1.5 } })).toThrow(DataModelError)
    // unknown $-keys are ignored, legacy blobs pass
    expect(jsonToLex({ $foo: 1, blob: { cid: 'bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity', mimeType: 'image/png' } })).toBeTruthy()
    // the reference agrees on links and bytes
    const json = { l: { $link: 'bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a' }, b: { $bytes: 'AQID' } }
    expect(toHex(cborEncode(jsonToLex(json)))).toBe(toHex(cborEncode(refJsonToLex(json))))
  })
})

describe('data model: CBOR encoding', () => {
  it('refuses floats, undefined, non-data-model objects and out-of-range integers', () => {
    const bad: unknown[] = [
      { a: 1.5 },
      1.5,
      { a: NaN },
      { a: Infinity },
      { a: undefined },
      [1, undefined],
      // eslint-disable-next-line no-sparse-arrays
      [1, , 3],
      { a: new Date() },
      { a: new Map() },
      { a: new Set() },
      { a: () => 1 },
      { a: Symbol('x') },
      { a: 2 ** 60 },
      { a: 2n ** 63n },
      { a: -(2n ** 63n) - 1n },
    ]
    for (const v of bad) expect(() => cborEncode(v)).toThrow(DataModelError)
  })

  it('encodes canonically (length-first key order), CIDs as tag 42 and bigints in int64', () => {
    expect(toHex(cborEncode({ bb: 1, a: 2, c: 3 }))).toBe('a3' + '616102' + '616303' + '62626201')
    const cid = CID.parse('bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a')
    expect(toHex(cborEncode(cid))).toBe('d82a582500' + toHex(cid.bytes))
    expect(toHex(cborEncode(2n ** 62n))).toBe('1b4000000000000000')
    expect(cborDecode(cborEncode(-(2n ** 63n)))).toBe(-(2n ** 63n))
  })

  it('encodes @atproto/lexicon BlobRef instances as the plain blob map', () => {
    const cid = cidForRawBytes(new TextEncoder().encode('hello'))
    expect(cid.toString()).toMatch(/^bafkrei/)
    const plain = blobRef(cid, 'text/plain', 5)
    const inst = new LexBlobRef(cid, 'text/plain', 5)
    expect(toHex(cborEncode({ b: inst }))).toBe(toHex(cborEncode({ b: plain })))
    expect(lexToJson({ b: inst })).toEqual({ b: blobRefJson(cid, 'text/plain', 5) })
    // canonical blob key order: ref, size, $type, mimeType
    const decoded = cborDecode<Record<string, unknown>>(cborEncode(plain))
    expect(Object.keys(decoded)).toEqual(['ref', 'size', '$type', 'mimeType'])
  })
})

describe('data model: CBOR decoding of hand-made bytes', () => {
  const rejected: [string, string][] = [
    ['half float', 'a1 6161 f93c00'],
    ['single float', 'a1 6161 fa3f800000'],
    ['double float', 'fb3ff0000000000000'],
    ['tag 0 (date string)', 'c0 6a323032302d30312d3031'],
    ['tag 1 (epoch)', 'a1 6161 c1 01'],
    ['tag 2 (bignum)', 'c2 4101'],
    ['tag 42 over a text string', 'd82a 6161'],
    ['tag 42 without the 0x00 prefix', 'd82a 5825 01' + '71' + '1220' + '00'.repeat(32) + '00'],
    ['indefinite array', '9f 01 ff'],
    ['indefinite map', 'bf 6161 01 ff'],
    ['indefinite bytes', '5f 4100 ff'],
    ['indefinite string', '7f 6161 ff'],
    ['undefined', 'a1 6161 f7'],
    ['simple value 16', 'f0'],
    ['simple value 32', 'f820'],
    ['integer map key', 'a1 01 02'],
    ['duplicate map key', 'a2 6161 01 6161 02'],
    ['non-shortest integer', '1801'],
    ['trailing bytes', '01 02'],
    ['truncated', 'a1 61'],
    ['uint64 beyond int64', '1bffffffffffffffff'],
    ['negative beyond int64', '3b8000000000000000'],
    ['byte string longer than the data', '5b0000000100000000'],
    ['array count larger than the data', '9a00010000 01'],
    ['break byte alone', 'ff'],
    ['reserved additional info', '1c'],
    ['empty input', ''],
  ]

  it('refuses floats, non-42 tags, indefinite lengths and other malformed CBOR', () => {
    for (const [name, bytes] of rejected) {
      expect(() => cborDecode(hex(bytes)), name).toThrow(DataModelError)
      // the message names the actual problem
      const word = /float|indefinite|undefined|simple|trailing/.exec(name)?.[0] ?? (name.startsWith('tag') ? 'tag' : null)
      if (word) expect(() => cborDecode(hex(bytes)), name).toThrow(new RegExp(word === 'trailing' ? 'trailing' : word))
    }
  })

  it('accepts what the data model allows', () => {
    expect(cborDecode(hex('a2 6161 01 6162 f6'))).toEqual({ a: 1, b: null })
    expect(cborDecode(hex('83 f4 f5 f6'))).toEqual([false, true, null])
    expect(cborDecode(hex('3b7fffffffffffffff'))).toBe(-(2n ** 63n))
    expect(cborDecode(hex('1b001fffffffffffff'))).toBe(2 ** 53 - 1)
    const cid = CID.parse('bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a')
    expect(cborDecode<CID>(hex('d82a582500' + toHex(cid.bytes))).equals(cid)).toBe(true)
  })

  it('refuses a "__proto__" map key at any depth, in any length form, instead of decoding something else', () => {
    const proto = toHex(new TextEncoder().encode('__proto__'))
    // what the plain decoder makes of {"__proto__": {"a": 1}}: no own key, a prototype; the value differs from the bytes
    const raw = dagCbor.decode(hex(`a1 69${proto} a1 6161 01`)) as Record<string, unknown>
    expect(Object.keys(raw)).toEqual([])
    expect(raw.a).toBe(1)
    const cases = [
      `a1 69${proto} a1 6161 01`, // the record itself
      `a2 6161 01 69${proto} f6`, // next to another key
      `a1 6161 81 a1 69${proto} 01`, // nested in an array
      `a1 6161 a1 69${proto} 02`, // nested in a map
    ]
    for (const c of cases) {
      expect(() => cborDecode(hex(c)), c).toThrow(DataModelError)
      expect(() => cborDecode(hex(c)), c).toThrow(/"__proto__" is not allowed/)
      expect(() => cborDecodeMulti(hex('a0' + c)), c).toThrow(/"__proto__"/)
      expect(() => cborDecodeFirst(hex(c + 'a0')), c).toThrow(/"__proto__"/)
    }
    // the same key in a non-shortest length form is refused too (by the strict decoder if not by the scan)
    expect(() => cborDecode(hex(`a1 7809${proto} 01`))).toThrow(DataModelError)
    // look-alikes and the string as a value are ordinary data
    const like = toHex(new TextEncoder().encode('__proto_'))
    const longer = toHex(new TextEncoder().encode('__proto__x'))
    expect(cborDecode(hex(`a2 68${like} 01 6a${longer} 02`))).toEqual({ __proto_: 1, __proto__x: 2 })
    expect(cborDecode(hex(`a1 6161 69${proto}`))).toEqual({ a: '__proto__' })
    expect(Object.getPrototypeOf(cborDecode(hex('a1 6161 01')))).toBe(Object.prototype)
  })

  it('limits nesting depth', () => {
    const nested = (n: number) => hex('81'.repeat(n) + '01')
    expect(() => cborDecode(nested(100))).not.toThrow()
    expect(() => cborDecode(nested(300))).toThrow(DataModelError)
    expect(() => cborDecode(nested(100), { maxDepth: 50 })).toThrow(DataModelError)
  })

  it('decodes concatenated items (event-stream frames)', () => {
    const header = { op: 1, t: '#commit' }
    const body = { seq: 5, blocks: Uint8Array.of(1, 2, 3) }
    const frame = new Uint8Array([...cborEncode(header), ...cborEncode(body)])
    expect(cborDecodeMulti(frame)).toEqual([header, body])
    const [first, rest] = cborDecodeFirst(frame)
    expect(first).toEqual(header)
    expect(cborDecode(rest)).toEqual(body)
    expect(() => cborDecodeMulti(new Uint8Array([...frame, 0xf9, 0x3c, 0x00]))).toThrow(DataModelError)
  })
})

describe('data model: CIDs and blobs', () => {
  it('computes raw and dag-cbor CIDs', () => {
    const bytes = new TextEncoder().encode('abc')
    const raw = cidForRawBytes(bytes)
    expect(raw.code).toBe(0x55)
    expect(isBlessedCid(raw, 0x55)).toBe(true)
    expect(isBlessedCid(raw, 0x71)).toBe(false)
    expect(verifyCidForBytes(raw, bytes)).toBe(true)
    expect(verifyCidForBytes(raw, new TextEncoder().encode('abd'))).toBe(false)
    expect(isBlessedCid(CID.parse('QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n'))).toBe(false)
  })

  it('recognizes blob references in every form', () => {
    const cid = 'bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity'
    expect(isBlobRef(blobRefJson(cid, 'image/jpeg', 10))).toBe(true)
    expect(isBlobRef(blobRef(cid, 'image/jpeg', 10))).toBe(true)
    expect(isBlobRef(new LexBlobRef(CID.parse(cid), 'image/jpeg', 10))).toBe(true)
    expect(isBlobRef({ $type: 'blob', ref: { $link: cid }, mimeType: 'image/jpeg', size: '10' })).toBe(false)
    expect(isBlobRef({ $type: 'blob', mimeType: 'image/jpeg', size: 10 })).toBe(false)
    expect(isBlobRef({ $type: 'blob', ref: { $link: '.' }, mimeType: 'image/jpeg', size: 10 })).toBe(false)
    expect(isLegacyBlobRef({ cid, mimeType: 'image/jpeg' })).toBe(true)
    expect(blobCid({ cid, mimeType: 'image/jpeg' })?.toString()).toBe(cid)
    expect(blobCid(blobRefJson(cid, 'image/jpeg', 10))?.toString()).toBe(cid)
    expect(blobCid({ foo: 1 })).toBeNull()
  })
})
