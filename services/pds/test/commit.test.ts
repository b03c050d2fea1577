/**
 * Differential test of the write path's commit builder (formatCommitKeepingTree) against @atproto/repo's
 * Repo#formatCommit on the same repo and writes: same MST root, same new and relevant blocks (the commit
 * block aside, whose rev is time-based), same removed CIDs; and the tree it keeps equals a fresh load.
 */
import { describe, expect, it } from 'vitest'
import { MemoryBlockstore, Repo, WriteOpAction } from '@atproto/repo'
import { generateKeypair } from '@stratos/core/crypto'
import { formatCommitKeepingTree } from '../src/actor-store/commit.js'
import { prepareCreateOrUpdate, prepareDelete, type PreparedWrite } from '../src/actor-store/index.js'

const DID = 'did:plc:committest000000000000'
const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: '2026-01-01T00:00:00.000Z' })
const S32 = '234567abcdefghijklmnopqrstuvwxyz'
/** a valid TID rkey for i (sortable base32, 13 characters) */
const rkey = (i: number) => `3l${Array.from({ length: 11 }, (_, d) => S32[Math.floor(i / 32 ** (10 - d)) % 32]).join('')}`

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
  return out.sort()
}

describe('formatCommitKeepingTree', () => {
  it('builds the commit @atproto/repo builds, over successive commits of creates, updates and deletes', async () => {
    const key = await generateKeypair('k256')
    const storage = new MemoryBlockstore()
    let ours = await Repo.create(storage, DID, key as never)
    let n = 0
    for (let round = 0; round < 12; round++) {
      const writes: PreparedWrite[] = []
      for (let i = 0; i < 1 + (round % 4); i++) {
        n++
        writes.push(prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', rkey: rkey(n), record: post(`post ${n}`) }))
      }
      if (round > 2) writes.push(prepareCreateOrUpdate({ action: 'update', did: DID, collection: 'app.bsky.feed.post', rkey: rkey(round), record: post(`edited ${round}`) }))
      if (round > 4) writes.push(prepareDelete({ did: DID, collection: 'app.bsky.feed.post', rkey: rkey(round - 4) }))

      const lib = await ours.formatCommit(toLibOps(writes), key as never)
      const { commit, next } = await formatCommitKeepingTree(ours, writes, key)
      const commitCid = String(commit.cid)
      const drop = (ks: string[], c: string) => ks.filter((k) => k !== c)
      expect(drop(keys(commit.newBlocks), commitCid)).toEqual(drop(keys(lib.newBlocks), String(lib.cid)))
      expect(drop(keys(commit.relevantBlocks), commitCid)).toEqual(drop(keys(lib.relevantBlocks), String(lib.cid)))
      expect(commit.removedCids.toList().map(String).sort()).toEqual(lib.removedCids.toList().map(String).sort())
      expect(String(await next.data.getPointer())).toBe(String((await ours.applyCommit(lib)).commit.data))
      expect(commit.since).toBe(ours.commit.rev)
      expect(commit.rev > ours.commit.rev).toBe(true)

      await storage.applyCommit(commit)
      const loaded = await Repo.load(storage, commit.cid as never)
      expect(String(loaded.commit.data)).toBe(String(await next.data.getPointer()))
      expect(await next.data.list()).toEqual(await loaded.data.list())
      ours = next
    }
  })
})
