import { randomBytes } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { create as digestOf } from 'multiformats/hashes/digest'
import { describe, expect, it } from 'vitest'
import { cidString } from '../../src/data/index.js'

describe('cidString', () => {
  it('is cid.toString() (multiformats as the oracle) for v1 CIDs of any codec and digest length, and for v0', () => {
    const codecs = [0x71, 0x55, 0x70, 0x0129]
    const hashes = [0x12, 0x1e, 0x00]
    for (let i = 0; i < 2000; i++) {
      const len = i % 70
      const cid = CID.createV1(codecs[i % codecs.length]!, digestOf(hashes[i % hashes.length]!, randomBytes(len)))
      // a fresh object each time (toString would answer from its per-CID cache)
      const oracle = CID.decode(cid.bytes).toString()
      expect(cidString(CID.decode(cid.bytes))).toBe(oracle)
    }
    const v0 = CID.createV0(digestOf(0x12, randomBytes(32)))
    expect(cidString(v0)).toBe(v0.toString())
    expect(CID.parse(cidString(CID.decode(CID.createV1(0x71, digestOf(0x12, randomBytes(32))).bytes))).version).toBe(1)
  })
})
