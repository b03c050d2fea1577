/**
 * The Jetstream conversion's CAR scan (no hashing: the relay verified the blocks on ingest) against core's
 * verifying readCarSync, the oracle: the same record blocks for every CID asked, and a give-up (null) on
 * input it does not expect, after which the conversion falls back to readCarSync.
 */
import { describe, expect, it } from 'vitest'
import { CID, cborEncode, cidForCbor } from '@stratos/core/data'
import { readCarSync, writeCar } from '@stratos/core/repo'
import { sha256 } from 'multiformats/hashes/sha2'
import { findBlocks } from '../src/jetstream/car-scan.js'

function blocksOf(n: number, seed: number): [CID, Uint8Array][] {
  return Array.from({ length: n }, (_, i) => {
    const value = { $type: 'app.bsky.feed.post', text: `record ${seed}-${i} ${'x'.repeat((i * 37 + seed) % 300)}`, n: i, nested: { list: [i, seed, null, true] } }
    const bytes = cborEncode(value)
    return [cidForCbor(value), bytes]
  })
}

describe('findBlocks (the CAR scan of Jetstream conversion)', () => {
  it('finds the same blocks as readCarSync for any subset of CIDs, and nothing for absent ones', () => {
    for (let seed = 0; seed < 20; seed++) {
      const blocks = blocksOf(1 + ((seed * 13) % 60), seed)
      const car = writeCar(blocks[0]![0], blocks)
      const oracle = readCarSync(car).blocks
      const wanted = blocks.filter((_, i) => (i + seed) % 3 === 0).map(([cid]) => cid)
      const absent = blocksOf(2, 1000 + seed).map(([cid]) => cid)
      const found = findBlocks(car, [...wanted, ...absent])!
      expect(found).not.toBeNull()
      expect([...found.keys()].sort()).toEqual(wanted.map((c) => c.toString()).sort())
      for (const cid of wanted) expect(Buffer.from(found.get(cid.toString())!).equals(Buffer.from(oracle.get(cid)!))).toBe(true)
    }
  })

  it('gives up on truncated input and on a CID version it does not read', async () => {
    const blocks = blocksOf(5, 7)
    const car = writeCar(blocks[0]![0], blocks)
    const wanted = blocks.map(([cid]) => cid)
    expect(findBlocks(car.subarray(0, car.length - 3), wanted)).toBeNull()
    expect(() => readCarSync(car.subarray(0, car.length - 3))).toThrow()
    // a CIDv0 block (a bare sha2-256 multihash): readCarSync reads it, the scan leaves it to readCarSync
    const bytes = new TextEncoder().encode('raw block')
    const v0 = CID.createV0(await sha256.digest(bytes))
    const withV0 = writeCar(blocks[0]![0], [...blocks, [v0, bytes]])
    expect(readCarSync(withV0).blocks.get(v0)).toBeDefined()
    expect(findBlocks(withV0, [...wanted, v0])).toBeNull()
  })
})
