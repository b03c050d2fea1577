import { Secp256k1Keypair } from '@atproto/crypto'
import { BlockMap, MST, MemoryBlockstore, mstUtil, signCommit } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { cborEncode, cidForCbor } from '../../src/data/index.js'
import {
  buildProofBlocks,
  commonPrefixLength,
  invertCommitOps,
  mstKeyLayer,
  verifyCommitEvent,
  walkMst,
  writeCar,
  type CommitEventOp,
} from '../../src/repo/index.js'
import { readInteropJson, readInteropLines, reportVectors } from '../util/vectors.js'

interface ProofFixture {
  comment: string
  leafValue: string
  keys: string[]
  adds: string[]
  dels: string[]
  rootBeforeCommit: string
  rootAfterCommit: string
  blocksInProof: string[]
}

const utf8 = new TextEncoder()

/** An MST with every block (stored or not) readable from one BlockMap. */
async function allBlocks(store: MemoryBlockstore, tree: MST): Promise<BlockMap> {
  const out = new BlockMap()
  out.addMap(store.blocks)
  out.addMap((await tree.getUnstoredBlocks()).blocks)
  return out
}

describe('firehose/commit-proof-fixtures.json', () => {
  const fixtures = readInteropJson<ProofFixture[]>('firehose/commit-proof-fixtures.json')

  it('builds both trees, covers the proof set and inverts with exactly it', async () => {
    const keypair = await Secp256k1Keypair.create()
    const did = 'did:plc:prooffixtures0000000000'
    let passed = 0
    let extraBlocks = 0
    let needed = 0
    let notNeeded = 0
    for (const f of fixtures) {
      const leaf = CID.parse(f.leafValue)
      const store = new MemoryBlockstore()
      let before = await MST.create(store)
      for (const k of f.keys) before = await before.add(k, leaf)
      expect(String(await before.getPointer()), f.comment).toBe(f.rootBeforeCommit)
      store.blocks.addMap((await before.getUnstoredBlocks()).blocks)
      before = MST.load(store, await before.getPointer())

      let after = before
      for (const k of f.adds) after = await after.add(k, leaf)
      for (const k of f.dels) after = await after.delete(k)
      const afterRoot = CID.decode((await after.getPointer()).bytes)
      expect(String(afterRoot), f.comment).toBe(f.rootAfterCommit)

      // our slice (new nodes + covering proofs of the changed keys) covers the fixture's proof set
      const slice = await buildProofBlocks(after, before, [...f.adds, ...f.dels])
      const sliceCids = new Set(slice.cids().map(String))
      for (const c of f.blocksInProof) expect(sliceCids.has(c), `${f.comment}: ${c}`).toBe(true)
      extraBlocks += sliceCids.size - f.blocksInProof.length

      // inversion with exactly the proof nodes gives the old root
      const everything = await allBlocks(store, after)
      const proofOnly = new BlockMap()
      for (const c of f.blocksInProof) {
        const cid = CID.parse(c)
        proofOnly.set(cid, everything.get(cid)!)
      }
      const ops: CommitEventOp[] = [
        ...f.adds.map((path): CommitEventOp => ({ action: 'create', path, cid: leaf })),
        ...f.dels.map((path): CommitEventOp => ({ action: 'delete', path, cid: null, prev: leaf })),
      ]
      const inv = await invertCommitOps(proofOnly, afterRoot, ops)
      expect(inv, f.comment).toMatchObject({ ok: true })
      expect(inv.ok && String(inv.root)).toBe(f.rootBeforeCommit)

      // without one of the proof nodes the inversion either reports the missing node or (when this
      // MST implementation happens not to need that node) still gives the right root; never a wrong one
      for (const c of f.blocksInProof) {
        const fewer = new BlockMap()
        for (const [cid, bytes] of proofOnly) if (String(cid) !== c) fewer.set(cid, bytes)
        const res = await invertCommitOps(fewer, afterRoot, ops)
        if (res.ok) {
          expect(String(res.root), `${f.comment} without ${c}`).toBe(f.rootBeforeCommit)
          notNeeded++
        } else {
          expect(res, `${f.comment} without ${c}`).toMatchObject({ ok: false, reason: 'missing-block' })
          needed++
        }
        if (c === f.rootAfterCommit) expect(res.ok).toBe(false)
      }

      // the same as a signed #commit with exactly those blocks plus the commit
      const rev = '3lzzzzzzzzz22'
      const commit = await signCommit({ did, version: 3, data: afterRoot, rev, prev: null }, keypair)
      const commitCid = cidForCbor(commit)
      const carBlocks = new BlockMap()
      carBlocks.set(commitCid, cborEncode(commit))
      carBlocks.addMap(proofOnly)
      const res = await verifyCommitEvent(
        {
          repo: did,
          commit: commitCid,
          rev,
          since: '3lzzzzzzzzy22',
          blocks: writeCar(commitCid, carBlocks),
          ops,
          prevData: CID.parse(f.rootBeforeCommit),
        },
        { signingKey: keypair.did(), allowMissingRecords: true, now: Date.parse('2100-01-01') },
      )
      expect(res, f.comment).toMatchObject({ ok: true, inverted: true })
      // and a wrong prevData is caught
      const wrong = await verifyCommitEvent(
        {
          repo: did,
          commit: commitCid,
          rev,
          since: null,
          blocks: writeCar(commitCid, carBlocks),
          ops,
          prevData: afterRoot,
        },
        { signingKey: keypair.did(), allowMissingRecords: true, now: Date.parse('2100-01-01') },
      )
      expect(wrong.ok ? 'ok' : wrong.reason, f.comment).toBe('inversion-mismatch')
      passed++
    }
    reportVectors('firehose/commit-proof-fixtures.json', passed, fixtures.length)
    console.log(
      `commit proofs: our slices carry ${extraBlocks} node(s) beyond blocksInProof in total; ` +
        `${needed} proof nodes are needed by @atproto/repo's inversion, ${notNeeded} are not`,
    )
    expect(passed).toBe(fixtures.length)
  })
})

describe('mst vectors', () => {
  it('mst/key_heights.json', async () => {
    const vectors = readInteropJson<{ key: string; height: number }[]>('mst/key_heights.json')
    let passed = 0
    for (const v of vectors) {
      expect(await mstUtil.leadingZerosOnHash(v.key), v.key).toBe(v.height)
      expect(mstKeyLayer(v.key), v.key).toBe(v.height)
      passed++
    }
    reportVectors('mst/key_heights.json', passed, vectors.length)
    expect(passed).toBe(9)
  })

  it('mst/common_prefix.json', () => {
    const vectors = readInteropJson<{ left: string; right: string; len: number }[]>('mst/common_prefix.json')
    let passed = 0
    for (const v of vectors) {
      expect(mstUtil.countPrefixLen(v.left, v.right), `${v.left}|${v.right}`).toBe(v.len)
      expect(commonPrefixLength(utf8.encode(v.left), utf8.encode(v.right))).toBe(v.len)
      passed++
    }
    reportVectors('mst/common_prefix.json', passed, vectors.length)
    expect(passed).toBe(13)
  })

  it('mst/example_keys.txt: layers from the names; a tree of all of them walks valid and sorted', async () => {
    const keys = readInteropLines('mst/example_keys.txt')
    const leaf = cidForCbor({ leaf: true })
    let passed = 0
    const store = new MemoryBlockstore()
    let tree = await MST.create(store)
    for (const key of keys) {
      const height = Number(/^[A-Z](\d)\//.exec(key)![1])
      expect(mstUtil.isValidMstKey(key), key).toBe(true)
      expect(await mstUtil.leadingZerosOnHash(key), key).toBe(height)
      expect(mstKeyLayer(key), key).toBe(height)
      tree = await tree.add(key, leaf)
      passed++
    }
    const blocks = await allBlocks(store, tree)
    const root = CID.decode((await tree.getPointer()).bytes)
    const walked: string[] = []
    let rootLayer = -1
    for (const item of walkMst((cid) => blocks.get(cid), root)) {
      if (item.type === 'leaf') walked.push(item.key)
      else if (rootLayer < 0) rootLayer = item.layer
    }
    expect(walked).toEqual([...keys].sort())
    expect(rootLayer).toBe(5)
    reportVectors('mst/example_keys.txt', passed, keys.length)
    expect(passed).toBe(156)
  })
})
