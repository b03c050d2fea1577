/**
 * Differential test of the write path's commit builder (buildCommit on RepoMst) against @atproto/repo's
 * Repo#formatCommit on the same repo and writes: same MST root, same new blocks, same removed CIDs, a
 * `#commit` slice holding the library's new and relevant blocks (the commit blocks aside: their revs are
 * time-based) that lets a reader undo the ops (core's MST inversion gives back the previous root); the
 * tree it keeps equals a fresh load; a tree stays usable after a commit built on it is dropped.
 */
import { describe, expect, it } from 'vitest'
import { MemoryBlockstore, Repo, WriteOpAction } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { generateKeypair, type SigningKeypair } from '@stratos/core/crypto'
import { invertMstOps } from '@stratos/core/repo'
import { cborEncode } from '@stratos/core/data'
import { buildCommit, encodeCommitObject, type CommitObject, type RepoHead } from '../src/actor-store/commit.js'
import { RepoMst } from '../src/actor-store/mst.js'
import { prepareCreateOrUpdate, prepareDelete, type PreparedWrite } from '../src/actor-store/index.js'

const DID = 'did:plc:committest000000000000'
const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: '2026-01-01T00:00:00.000Z' })
const S32 = '234567abcdefghijklmnopqrstuvwxyz'
/** a valid TID rkey for i (sortable base32, 13 characters) */
const rkey = (i: number) => `3l${Array.from({ length: 11 }, (_, d) => S32[Math.floor(i / 32 ** (10 - d)) % 32]).join('')}`
const COLLECTIONS = ['app.bsky.feed.post', 'app.bsky.feed.like', 'app.bsky.graph.follow']

function toLibOps(writes: PreparedWrite[]) {
  return writes.map((w) =>
    w.action === 'delete'
      ? { action: WriteOpAction.Delete, collection: w.collection, rkey: w.rkey }
      : { action: w.action === 'create' ? WriteOpAction.Create : WriteOpAction.Update, collection: w.collection, rkey: w.rkey, record: w.record },
  ) as never
}

const keys = (m: unknown) => {
  const out: string[] = []
  ;(m as { forEach(cb: (v: unknown, k: unknown) => void): void }).forEach((_v, k) => out.push(String(k)))
  return out
}
const uniqSorted = (xs: string[]) => [...new Set(xs)].sort()

/** a deterministic PRNG (mulberry32) */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

class Harness {
  /** our block store (what the actor store's repo_block holds) */
  readonly ours = new Map<string, Uint8Array>()
  head!: RepoHead
  lib!: Repo
  readonly libStore = new MemoryBlockstore()
  /** live keys → collection/rkey */
  readonly live = new Map<string, { collection: string; rkey: string }>()
  n = 0

  constructor(readonly key: SigningKeypair) {}

  get = (cid: CID) => this.ours.get(cid.toString()) ?? null

  async init() {
    this.lib = await Repo.create(this.libStore, DID, this.key as never)
    for (const [cid, bytes] of this.libStore.blocks) this.ours.set(cid.toString(), bytes)
    const cid = CID.decode(this.lib.cid.bytes)
    this.head = { did: DID, cid, rev: this.lib.commit.rev, tree: RepoMst.load(this.get, CID.decode(this.lib.commit.data.bytes)) }
  }

  /** random writes: creates (some with content equal to another record's), updates, deletes */
  writes(rand: () => number, count: number): PreparedWrite[] {
    const out: PreparedWrite[] = []
    const touched = new Set<string>()
    const liveKeys = [...this.live.keys()]
    for (let i = 0; i < count; i++) {
      const r = rand()
      if (r < 0.6 || liveKeys.length < 4) {
        const collection = COLLECTIONS[Math.floor(rand() * COLLECTIONS.length)]!
        const k = rkey(++this.n * 7 + Math.floor(rand() * 5))
        if (touched.has(`${collection}/${k}`) || this.live.has(`${collection}/${k}`)) continue
        touched.add(`${collection}/${k}`)
        // every fifth record has the text of an earlier one: the same record block under two keys
        const text = rand() < 0.2 ? `post ${Math.floor(rand() * 5)}` : `post ${this.n}`
        out.push(prepareCreateOrUpdate({ action: 'create', did: DID, collection, rkey: k, record: { ...post(text), $type: collection }, validate: false }))
      } else {
        const key = liveKeys[Math.floor(rand() * liveKeys.length)]!
        if (touched.has(key)) continue
        touched.add(key)
        const { collection, rkey: rk } = this.live.get(key)!
        if (r < 0.8) {
          const text = rand() < 0.3 ? `post ${Math.floor(rand() * 5)}` : `edited ${this.n++}`
          out.push(prepareCreateOrUpdate({ action: 'update', did: DID, collection, rkey: rk, record: { ...post(text), $type: collection }, validate: false }))
        } else {
          out.push(prepareDelete({ did: DID, collection, rkey: rk }))
        }
      }
    }
    return out
  }

  /** builds the commit both ways, compares, and stores both */
  async commit(writes: PreparedWrite[]) {
    const lib = await this.lib.formatCommit(toLibOps(writes), this.key as never)
    const { commit, next, prevData } = await buildCommit(this.head, writes, this.key)
    const libCommit = String(lib.cid)
    const ourCommit = String(commit.cid)
    const notCommit = (ks: string[]) => ks.filter((k) => k !== libCommit && k !== ourCommit)

    expect(next.tree.rootCid.toString()).toBe(String((await this.lib.applyCommit(lib)).commit.data))
    expect(uniqSorted(notCommit(commit.newBlocks.map((b) => String(b.cid))))).toEqual(uniqSorted(notCommit(keys(lib.newBlocks))))
    const prevCommits = new Set([String(this.head.cid), String(this.lib.cid)])
    const removedOurs = commit.removedCids.map(String).filter((c) => !prevCommits.has(c))
    const removedLib = lib.removedCids.toList().map(String).filter((c) => !prevCommits.has(c))
    expect(uniqSorted(removedOurs)).toEqual(uniqSorted(removedLib))
    expect(uniqSorted(notCommit(commit.sliceBlocks.map((b) => String(b.cid))))).toEqual(
      uniqSorted(notCommit([...keys(lib.newBlocks), ...keys(lib.relevantBlocks)])),
    )
    expect(commit.since).toBe(this.head.rev)
    expect(commit.prev!.equals(this.head.cid)).toBe(true)
    expect(commit.rev > this.head.rev).toBe(true)
    expect(prevData.equals(this.head.tree.rootCid)).toBe(true)

    // the slice alone lets a reader undo the ops and find the previous root
    const slice = new Map(commit.sliceBlocks.map((b) => [String(b.cid), b.bytes]))
    const ops = writes.map((w) => {
      const path = `${w.collection}/${w.rkey}`
      const prev = this.head.tree.get(path)
      return { action: w.action, path, cid: w.action === 'delete' ? null : w.cid, prev }
    })
    const inverted = invertMstOps((cid) => slice.get(String(cid)), next.tree.rootCid, ops)
    expect(inverted.ok && String(inverted.root)).toBe(String(prevData))

    this.lib = (await Repo.load(this.libStore, lib.cid)) as Repo
    for (const cid of commit.removedCids) this.ours.delete(String(cid))
    for (const b of commit.newBlocks) this.ours.set(String(b.cid), b.bytes)
    this.head = next
    for (const w of writes) {
      const key = `${w.collection}/${w.rkey}`
      if (w.action === 'delete') this.live.delete(key)
      else this.live.set(key, { collection: w.collection, rkey: w.rkey })
    }
    // the kept tree equals one loaded from the stored blocks
    const fresh = RepoMst.load(this.get, next.tree.rootCid)
    for (const key of this.live.keys()) expect(String(fresh.get(key))).toBe(String(next.tree.get(key)))
  }
}

describe('buildCommit', () => {
  it('builds the commit @atproto/repo builds, over successive commits of creates, updates and deletes', async () => {
    const h = new Harness(await generateKeypair('k256'))
    await h.init()
    const rand = rng(7)
    for (let round = 0; round < 60; round++) await h.commit(h.writes(rand, 1 + Math.floor(rand() * (round % 5 === 0 ? 20 : 3))))
    expect(h.live.size).toBeGreaterThan(50)
  })

  it('deletes every record (back to the empty tree) and starts again', async () => {
    const h = new Harness(await generateKeypair('k256'))
    await h.init()
    const emptyRoot = h.head.tree.rootCid.toString()
    const rand = rng(11)
    for (let round = 0; round < 5; round++) await h.commit(h.writes(rand, 8))
    const all = [...h.live.values()].map((v) => prepareDelete({ did: DID, ...v }))
    for (let i = 0; i < all.length; i += 7) await h.commit(all.slice(i, i + 7))
    expect(h.head.tree.rootCid.toString()).toBe(emptyRoot)
    for (let round = 0; round < 5; round++) await h.commit(h.writes(rand, 3))
  })

  it('leaves the tree it starts from intact when a commit built on it is not kept', async () => {
    const h = new Harness(await generateKeypair('k256'))
    await h.init()
    const rand = rng(3)
    for (let round = 0; round < 20; round++) await h.commit(h.writes(rand, 5))
    const before = h.head.tree.rootCid.toString()
    // a commit that is built and dropped (as when storing it fails)
    await buildCommit(h.head, h.writes(rand, 10), h.key)
    expect(h.head.tree.rootCid.toString()).toBe(before)
    for (const key of h.live.keys()) expect(h.head.tree.get(key)).not.toBeNull()
    for (let round = 0; round < 10; round++) await h.commit(h.writes(rand, 4))
  })
})

describe('encodeCommitObject', () => {
  it('writes the bytes cborEncode writes: unsigned and signed, with and without prev, short and long fields', () => {
    const rand = rng(5)
    const cids = ['bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm', 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'].map((c) => CID.parse(c))
    const cid = (n: number) => cids[n % 2]!
    const dids = [DID, 'did:web:a.b', `did:web:${'x'.repeat(300)}.example`, 'did:plc:é']
    for (let i = 0; i < 40; i++) {
      const sigLen = [0, 64, 23, 24, 255, 256][i % 6]!
      const commit: CommitObject = {
        did: dids[i % dids.length]!,
        version: 3,
        rev: i % 5 === 0 ? 'x'.repeat(30) : '3kabcdefghijk',
        prev: i % 2 === 0 ? null : cid(i),
        data: cid(i + 1),
      }
      if (sigLen > 0) commit.sig = Uint8Array.from({ length: sigLen }, () => Math.floor(rand() * 256))
      expect(Buffer.from(encodeCommitObject(commit)).equals(Buffer.from(cborEncode(commit)))).toBe(true)
    }
  })
})

