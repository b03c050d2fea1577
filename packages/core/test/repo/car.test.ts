import {
  BlockMap,
  MemoryBlockstore,
  Repo,
  blocksToCarFile,
  getFullRepo,
  readCar as refReadCar,
  verifyRepoCar as refVerifyRepoCar,
} from '@atproto/repo'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { beforeAll, describe, expect, it } from 'vitest'
import { cborEncode, cidForCbor } from '../../src/data/index.js'
import {
  CarError,
  SqliteRepoStorage,
  carStream,
  concatChunks,
  encodeCarBlock,
  encodeCarHeader,
  encodeVarint,
  readCar,
  readCarSync,
  readCarWithRoot,
  repoCarStream,
  verifyRepoCar,
  writeCar,
} from '../../src/repo/index.js'
import { COLL, createOp, newKeypair, post, toCid } from './helpers.js'

const DID = 'did:plc:cartest00000000000000000'

let repoBlocks: BlockMap
let repoRoot: CID
let refCar: Uint8Array

beforeAll(async () => {
  const keypair = await newKeypair()
  const store = new MemoryBlockstore()
  const writes = Array.from({ length: 60 }, (_, i) => createOp(`3l${String(i).padStart(11, 'a')}`, post(`hello ${i}`)))
  const repo = await Repo.create(store, DID, keypair, writes)
  repoBlocks = store.blocks
  repoRoot = toCid(repo.cid)
  refCar = await blocksToCarFile(repo.cid, store.blocks)
})

function expectCarError(fn: () => unknown, code: string) {
  let err: unknown
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(CarError)
  expect((err as CarError).code).toBe(code)
  expect((err as CarError).message).toMatch(/^invalid CAR/)
}

describe('writeCar / readCar', () => {
  it('writes the same bytes as @atproto/repo and reads them back', async () => {
    const mine = writeCar(repoRoot, repoBlocks)
    expect(Buffer.from(mine).equals(Buffer.from(refCar))).toBe(true)

    const parsed = await readCar(refCar)
    expect(parsed.roots.map(String)).toEqual([repoRoot.toString()])
    expect(parsed.blocks.size).toBe(repoBlocks.size)
    expect(parsed.blocks.equals(repoBlocks)).toBe(true)

    // and the reference reads ours
    const ref = await refReadCar(mine)
    expect(ref.roots.map(String)).toEqual([repoRoot.toString()])
    expect(ref.blocks.equals(repoBlocks)).toBe(true)
  })

  it('accepts {cid, bytes} iterables, multiple roots and no root', async () => {
    const list = [...repoBlocks].map(([cid, bytes]) => ({ cid, bytes }))
    const other = cidForCbor({ other: true })
    const car = writeCar([repoRoot, other], list)
    const parsed = readCarSync(car)
    expect(parsed.roots.map(String)).toEqual([repoRoot.toString(), other.toString()])
    const empty = writeCar(null, [])
    expect(readCarSync(empty)).toMatchObject({ roots: [] })
    await expect(readCarWithRoot(empty)).rejects.toMatchObject({ code: 'no-root' })
    expect(String((await readCarWithRoot(car)).root)).toBe(repoRoot.toString())
  })

  it('writes the header as cborEncode({ version: 1, roots }) does, for no root, one, several and other CID forms', () => {
    const v0 = CID.createV0(Digest.create(0x12, new Uint8Array(32).fill(7)))
    const rawCid = CID.createV1(0x55, Digest.create(0x12, new Uint8Array(32).fill(9)))
    const longHash = CID.createV1(0x71, Digest.create(0x13, new Uint8Array(64).fill(3)))
    const cases: (CID | CID[] | null)[] = [null, [], repoRoot, [repoRoot, rawCid], v0, longHash, Array.from({ length: 30 }, () => repoRoot)]
    for (const root of cases) {
      const roots = root === null ? [] : Array.isArray(root) ? root : [root]
      const header = cborEncode({ version: 1, roots })
      const expected = Buffer.concat([Buffer.from(encodeVarint(header.length)), Buffer.from(header)])
      expect(Buffer.from(encodeCarHeader(root)).equals(expected)).toBe(true)
    }
  })

  it('streams the same bytes in chunks of bounded size', async () => {
    const whole = writeCar(repoRoot, repoBlocks)
    for (const chunkSize of [64, 1000, 64 * 1024]) {
      const chunks: Uint8Array[] = []
      for await (const c of carStream(repoRoot, repoBlocks, { chunkSize })) chunks.push(c)
      expect(Buffer.concat(chunks).equals(Buffer.from(whole))).toBe(true)
      const biggestBlock = Math.max(...[...repoBlocks].map(([c, b]) => c.bytes.length + b.length + 2))
      for (const c of chunks) expect(c.length).toBeLessThanOrEqual(Math.max(chunkSize, biggestBlock))
      if (chunkSize === 64 * 1024) expect(chunks.length).toBe(1)
      else expect(chunks.length).toBeGreaterThan(1)
    }
    // async block source
    async function* gen() {
      for (const entry of repoBlocks) yield entry
    }
    const streamed = await concatChunks(carStream(repoRoot, gen()))
    expect(Buffer.from(streamed).equals(Buffer.from(whole))).toBe(true)
  })

  it('exports a full repo from SqliteRepoStorage in walk order, readable by @atproto/repo', async () => {
    const keypair = await newKeypair()
    const storage = new SqliteRepoStorage(':memory:')
    const writes = Array.from({ length: 120 }, (_, i) => createOp(`3m${String(i).padStart(11, 'b')}`, post(`p${i}`)))
    const repo = await Repo.create(storage, DID, keypair, writes)
    const car = await concatChunks(repoCarStream((cid) => storage.getBytesSync(cid), toCid(repo.cid), { chunkSize: 4096 }))

    const parsed = readCarSync(car)
    expect(parsed.blocks.size).toBe(storage.stats().blocks)
    const order = parsed.blocks.cids().map(String)
    expect(order[0]).toBe(repo.cid.toString())
    expect(order[1]).toBe(repo.commit.data.toString())

    const ref = await refVerifyRepoCar(car, DID, keypair.did())
    expect(ref.creates).toHaveLength(120)
    const mine = await verifyRepoCar(car, DID, keypair.did())
    expect(mine.records.map((r) => r.rkey)).toEqual(ref.creates.map((c) => c.rkey))
    const seventh = mine.records.find((r) => r.rkey === `3m${'7'.padStart(11, 'b')}`)
    expect(seventh?.value).toMatchObject({ text: 'p7', $type: COLL })
    expect(mine.records.every((r, i) => r.cid.equals(ref.creates[i]!.cid))).toBe(true)

    // the reference exporter's CAR verifies with ours too
    const refExport = await concatChunks(getFullRepo(storage, repo.cid))
    expect((await verifyRepoCar(refExport, DID, keypair.did())).records).toHaveLength(120)
  })
})

describe('readCar refuses hostile input', () => {
  it('truncated input at every cut point', () => {
    const entries = [...repoBlocks].slice(0, 4)
    const car = writeCar(repoRoot, entries)
    // a cut exactly on a section boundary is a shorter valid CAR; every other cut must be refused
    const boundaries = new Map<number, number>()
    let pos = encodeCarHeader(repoRoot).length
    boundaries.set(pos, 0)
    entries.forEach(([cid, bytes], i) => {
      pos += encodeCarBlock(cid, bytes).length
      boundaries.set(pos, i + 1)
    })
    let refused = 0
    let shorter = 0
    for (let cut = 0; cut < car.length; cut++) {
      const piece = car.subarray(0, cut)
      if (boundaries.has(cut)) {
        expect(readCarSync(piece).blocks.size).toBe(boundaries.get(cut))
        shorter++
      } else {
        expect(() => readCarSync(piece), `cut at ${cut}`).toThrow(CarError)
        refused++
      }
    }
    expect(shorter).toBe(4)
    expect(refused).toBe(car.length - 4)
    expectCarError(() => readCarSync(car.subarray(0, car.length - 5)), 'truncated')
  })

  it('bad varints', () => {
    expectCarError(() => readCarSync(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), 'bad-varint')
    // non-minimal header length (0x8a 0x00 = 10 with a useless extra byte)
    const header = encodeCarHeader(repoRoot)
    const headerBody = header.subarray(1)
    const padded = new Uint8Array([header[0]! | 0x80, 0x00, ...headerBody])
    expectCarError(() => readCarSync(padded), 'bad-varint')
    // block section length varint cut off
    expectCarError(() => readCarSync(new Uint8Array([...header, 0x80])), 'truncated')
  })

  it('CID that does not match the block bytes', () => {
    const [cid, bytes] = [...repoBlocks][0]!
    const tampered = new Uint8Array(bytes)
    tampered[tampered.length - 1]! ^= 0x01
    const car = new Uint8Array([...encodeCarHeader(repoRoot), ...encodeCarBlock(cid, tampered)])
    expectCarError(() => readCarSync(car), 'cid-mismatch')
    // the same through the async API
    return expect(readCar(car)).rejects.toMatchObject({ code: 'cid-mismatch' })
  })

  it('unsupported hashes and broken CIDs', () => {
    const data = cborEncode({ a: 1 })
    const identity = CID.createV1(0x71, Digest.create(0x00, data))
    expectCarError(
      () => readCarSync(new Uint8Array([...encodeCarHeader(repoRoot), ...encodeCarBlock(identity, data)])),
      'unsupported-hash',
    )
    const v2 = new Uint8Array([...cidForCbor({ a: 1 }).bytes])
    v2[0] = 0x02
    expectCarError(
      () => readCarSync(new Uint8Array([...encodeCarHeader(repoRoot), ...encodeCarBlock({ bytes: v2 }, data)])),
      'bad-cid',
    )
    // zero-length section
    expectCarError(() => readCarSync(new Uint8Array([...encodeCarHeader(repoRoot), 0x00])), 'bad-cid')
  })

  it('bad headers', () => {
    const withHeader = (obj: unknown) => {
      const h = cborEncode(obj)
      return new Uint8Array([...encodeVarint(h.length), ...h])
    }
    expectCarError(() => readCarSync(withHeader({ version: 2, roots: [] })), 'bad-header')
    expectCarError(() => readCarSync(withHeader({ version: 1, roots: 'x' })), 'bad-header')
    expectCarError(() => readCarSync(withHeader({ version: 1, roots: ['not a cid'] })), 'bad-header')
    expectCarError(() => readCarSync(withHeader([1, 2])), 'bad-header')
    expectCarError(() => readCarSync(new Uint8Array([0x03, 0xff, 0xff, 0xff])), 'bad-header')
    expectCarError(() => readCarSync(new Uint8Array([0x00])), 'bad-header')
    expectCarError(() => readCarSync(new Uint8Array([])), 'truncated')
  })

  it('size and count limits', () => {
    const car = writeCar(repoRoot, repoBlocks)
    expectCarError(() => readCarSync(car, { maxBytes: car.length - 1 }), 'too-big')
    expect(readCarSync(car, { maxBytes: car.length }).blocks.size).toBe(repoBlocks.size)
    expectCarError(() => readCarSync(car, { maxBlocks: repoBlocks.size - 1 }), 'too-many-blocks')
    const biggest = Math.max(...[...repoBlocks].map(([, b]) => b.length))
    expectCarError(() => readCarSync(car, { maxBlockBytes: biggest - 1 }), 'block-too-big')
  })
})
