import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import SqliteDatabase from 'better-sqlite3'
import { BlockMap, MemoryBlockstore, Repo } from '@atproto/repo'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cidForCbor } from '../../src/data/index.js'
import { SqliteRepoStorage } from '../../src/repo/index.js'
import { COLL, createOp, deleteOp, newKeypair, post, toCid, updateOp } from './helpers.js'

const DID = 'did:plc:storagetest000000000000'
let dir: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'stratos-repo-storage-'))
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

const rkey = (i: number) => `3k${String(i).padStart(11, 'a')}`

function batches() {
  const creates = Array.from({ length: 40 }, (_, i) => createOp(rkey(i), post(`post ${i}`)))
  return [
    creates.slice(0, 25),
    creates.slice(25),
    [updateOp(rkey(3), post('edited 3')), deleteOp(rkey(5)), deleteOp(rkey(30))],
    [createOp('self', { $type: 'app.bsky.actor.profile', displayName: 'Alice' }, 'app.bsky.actor.profile')],
  ]
}

describe('SqliteRepoStorage', () => {
  it('holds a repo built by @atproto/repo across reopen; MST root equals a MemoryBlockstore build', async () => {
    const path = join(dir, 'alice.sqlite')
    const keypair = await newKeypair()
    const storage = new SqliteRepoStorage(path)
    const memory = new MemoryBlockstore()
    let repo = await Repo.create(storage, DID, keypair)
    let memRepo = await Repo.create(memory, DID, keypair)
    for (const batch of batches()) {
      repo = await repo.applyWrites(batch, keypair)
      memRepo = await memRepo.applyWrites(batch, keypair)
    }
    const rootAfterWrites = toCid(repo.cid)
    const revAfterWrites = repo.commit.rev
    const contents = await repo.getContents()
    storage.close()

    // reopen the same file
    const reopened = new SqliteRepoStorage(path)
    const root = reopened.getRootSync()
    expect(root?.cid.toString()).toBe(rootAfterWrites.toString())
    expect(root?.rev).toBe(revAfterWrites)
    const loaded = await Repo.load(reopened)
    expect(await loaded.getContents()).toEqual(contents)
    expect(contents[COLL]![rkey(3)]).toMatchObject({ text: 'edited 3' })
    expect(contents[COLL]![rkey(4)]).toMatchObject({ text: 'post 4' })
    expect(contents[COLL]![rkey(5)]).toBeUndefined()
    expect(contents[COLL]![rkey(30)]).toBeUndefined()
    expect(Object.keys(contents[COLL]!)).toHaveLength(38)
    expect(contents['app.bsky.actor.profile']!.self).toMatchObject({ displayName: 'Alice' })

    // same writes, same MST root, same block set (apart from the commit objects)
    expect(loaded.commit.data.toString()).toBe(memRepo.commit.data.toString())
    const sqliteCids = new Set([...reopened.allBlocks()].map((b) => b.cid.toString()))
    const memCids = new Set(memory.blocks.cids().map((c) => c.toString()))
    sqliteCids.delete(loaded.cid.toString())
    memCids.delete(memRepo.cid.toString())
    expect([...sqliteCids].sort()).toEqual([...memCids].sort())

    // later writes continue from the reloaded state
    const next = await loaded.applyWrites([createOp('3kzzzzzzzzzzz', post('after reopen'))], keypair)
    expect(next.commit.rev > revAfterWrites).toBe(true)
    expect(reopened.getRootSync()?.rev).toBe(next.commit.rev)
    expect(await next.getRecord(COLL, '3kzzzzzzzzzzz')).toMatchObject({ text: 'after reopen' })
    reopened.close()
  })

  it('implements the block-store methods', async () => {
    const db = new SqliteDatabase(':memory:')
    const storage = new SqliteRepoStorage(db)
    const a = { $type: 'x.y.z', n: 1 }
    const b = { $type: 'x.y.z', n: 2 }
    const cidA = cidForCbor(a)
    const cidB = cidForCbor(b)
    const blocks = new BlockMap()
    await blocks.add(a)
    expect(await storage.getRoot()).toBeNull()
    await storage.putMany(blocks, '3kaaaaaaaaaa2')
    await storage.putMany(blocks, '3kaaaaaaaaaa3') // idempotent: keeps the first rev
    expect(await storage.has(cidA)).toBe(true)
    expect(await storage.has(cidB)).toBe(false)
    const got = await storage.getBlocks([cidA, cidB])
    expect(got.blocks.size).toBe(1)
    expect(got.missing.map(String)).toEqual([cidB.toString()])
    expect(await storage.readRecord(cidA)).toEqual(a)
    expect(await storage.getBytes(cidB)).toBeNull()
    await expect(storage.readRecord(cidB)).rejects.toThrow(/not found/)

    const mapB = new BlockMap()
    await mapB.add(b)
    await storage.putBlock(cidB, mapB.get(cidB)!, '3kaaaaaaaaaa4')
    expect([...storage.blocksSinceRev('3kaaaaaaaaaa2')].map((x) => x.cid.toString())).toEqual([cidB.toString()])
    expect(storage.stats().blocks).toBe(2)

    await storage.updateRoot(cidA, '3kaaaaaaaaaa4')
    expect((await storage.getRootDetailed())?.rev).toBe('3kaaaaaaaaaa4')
    expect(String(await storage.getRoot())).toBe(cidA.toString())
    // the caller's database stays open and holds the tables
    expect(db.prepare('SELECT count(*) AS n FROM repo_block').get()).toEqual({ n: 2 })
    await storage.destroy()
    expect(await storage.getRoot()).toBeNull()
    expect(storage.stats()).toEqual({ blocks: 0, bytes: 0 })
    storage.close()
    expect(db.open).toBe(true)
    db.close()
  })

  it('applyCommit removes dropped blocks and stores the root in one step', async () => {
    const keypair = await newKeypair()
    const storage = new SqliteRepoStorage(':memory:')
    let repo = await Repo.create(storage, DID, keypair, [createOp('3kaaaaaaaaaa2', post('one'))])
    const firstCommit = toCid(repo.cid)
    const recordCid = toCid((await repo.data.get(`${COLL}/3kaaaaaaaaaa2`))!)
    repo = await repo.applyWrites([deleteOp('3kaaaaaaaaaa2')], keypair)
    expect(await storage.has(firstCommit)).toBe(false)
    expect(await storage.has(recordCid)).toBe(false)
    expect(String(await storage.getRoot())).toBe(repo.cid.toString())
    // an empty repo: the commit plus the empty root node
    expect(storage.stats().blocks).toBe(2)
  })

  it('with migrate: false, leaves the schema to the caller and prepares each statement when first used', async () => {
    const db = new SqliteDatabase(':memory:')
    const prepared: string[] = []
    const prepare = db.prepare.bind(db)
    db.prepare = ((sql: string) => {
      prepared.push(sql)
      return prepare(sql)
    }) as typeof db.prepare
    // no tables yet: a statement prepared now would fail
    const storage = new SqliteRepoStorage(db, { migrate: false })
    expect(db.prepare('SELECT count(*) AS n FROM sqlite_master').get()).toEqual({ n: 0 })
    prepared.length = 0
    SqliteRepoStorage.migrate(db)
    expect(await storage.getRoot()).toBeNull()
    expect(prepared).toEqual(['SELECT cid, rev FROM repo_root WHERE id = 1'])
    const a = { $type: 'x.y.z', n: 1 }
    const blocks = new BlockMap()
    await blocks.add(a)
    await storage.putMany(blocks, '3kaaaaaaaaaa2')
    expect(await storage.readRecord(cidForCbor(a))).toEqual(a)
    expect(prepared).toHaveLength(3)
    storage.close()
    db.close()
  })
})
