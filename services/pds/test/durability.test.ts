/**
 * A write is acknowledged, and its #commit published, only once it is durable in the account's store as
 * well as in the event log: the store's WAL is fdatasynced (group commit, thread pool) and the sequencer
 * holds the event back until that sync settles. Closing a handle waits for a sync in flight and leaves
 * the data in the database file. (crash.test.ts covers SIGKILL end to end; power loss cannot be tested here.)
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeypair, type SigningKeypair } from '@stratos/core/crypto'
import { ActorStore, prepareCreateOrUpdate } from '../src/actor-store/index.js'
import { DiskBlobStore } from '../src/blobstore.js'
import { Sequencer, type SequencedEvent } from '../src/sequencer/index.js'
import { WalCheckpointer, walCheckpointSequence } from '@stratos/core/stream'
import { nextTid } from '@stratos/core/syntax'

const tick = () => new Promise((resolve) => setImmediate(resolve))

const DIDS = ['did:plc:durable00000000000000001', 'did:plc:durable00000000000000002']
const post = (did: string, rkey: string, text: string) =>
  prepareCreateOrUpdate({
    action: 'create',
    did,
    collection: 'app.bsky.feed.post',
    rkey,
    record: { $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() },
  })

describe('durability of acknowledged writes', () => {
  let dir: string
  let blobs: DiskBlobStore
  let key: SigningKeypair

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-durable-'))
    blobs = new DiskBlobStore(path.join(dir, 'blobs'), path.join(dir, 'blobs', 'temp'))
    await blobs.init()
    key = await generateKeypair()
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('publishes a #commit only after its store sync settles, keeping seq order across accounts', async () => {
    const store = new ActorStore(path.join(dir, 'a'), blobs)
    const sequencer = new Sequencer(path.join(dir, 'a-seq.sqlite'))
    const seen: SequencedEvent[] = []
    sequencer.on('event', (e) => seen.push(e))
    const [a, b] = DIDS.map((did) => store.create(did))
    await a!.createEmptyRepo(key)
    await b!.createEmptyRepo(key)

    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const first = sequencer.sequenceCommit(await a!.applyWrites([post(DIDS[0]!, '3aaaaaaaaaa22', 'a')], key), gate)
    const second = sequencer.sequenceCommit(await b!.applyWrites([post(DIDS[1]!, '3aaaaaaaaaa22', 'b')], key), b!.durable())
    await sequencer.durable()
    await b!.durable()
    // both are in the log and synced there, but the first's store is not known durable yet
    expect(seen).toEqual([])
    release()
    await gate
    await new Promise((r) => setImmediate(r))
    expect(seen.map((e) => e.seq)).toEqual([first.seq, second.seq])

    store.close()
    await sequencer.close()
  })

  it('syncs the store WAL once for concurrent callers, and a closing handle waits for it', async () => {
    const store = new ActorStore(path.join(dir, 'b'), blobs, 1)
    const repo = store.create(DIDS[0]!)
    await repo.createEmptyRepo(key)
    await repo.applyWrites([post(DIDS[0]!, '3aaaaaaaaaa22', 'one')], key)
    const before = repo.syncCount
    await Promise.all(Array.from({ length: 20 }, () => repo.durable()))
    expect(repo.syncCount - before).toBeGreaterThanOrEqual(1)
    expect(repo.syncCount - before).toBeLessThanOrEqual(2)

    // a sync in flight when the handle is closed: the close waits for it, then checkpoints into the file
    await repo.applyWrites([post(DIDS[0]!, '3aaaaaaaaab22', 'two')], key)
    const inFlight = repo.durable()
    await repo.closeQuietly()
    await inFlight
    expect(repo.db.open).toBe(false)
    const file = path.join(store.dirFor(DIDS[0]!), 'store.sqlite')
    expect(fs.existsSync(`${file}-wal`)).toBe(false)

    // reopened (a new WAL file): its syncs work on the new file, and the records are there
    store.close()
    const reopened = new ActorStore(path.join(dir, 'b'), blobs, 1)
    const again = reopened.get(DIDS[0]!)!
    expect(again.getRecord('app.bsky.feed.post', '3aaaaaaaaab22')?.value.text).toBe('two')
    await again.applyWrites([post(DIDS[0]!, '3aaaaaaaaac22', 'three')], key)
    await again.durable()
    expect(again.syncCount).toBe(1)
    expect(fs.existsSync(`${file}-wal`)).toBe(true)
    reopened.close()
  })

  it('checkpoints the stores and the event log in a worker while commits go on (the WALs restart; nothing is lost)', async () => {
    const checkpointer = new WalCheckpointer({ name: 'test-ckpt' })
    await checkpointer.ready()
    const store = new ActorStore(path.join(dir, 'c'), blobs, 10, checkpointer)
    const sequencer = new Sequencer(path.join(dir, 'c-seq.sqlite'), { checkpointer, checkpointEvery: 50 })
    const repo = store.create(DIDS[0]!)
    await repo.createEmptyRepo(key)
    expect(repo.db.pragma('wal_autocheckpoint', { simple: true })).toBe(0)
    expect(sequencer.log.db.pragma('wal_autocheckpoint', { simple: true })).toBe(0)
    const storeRestarts = walCheckpointSequence(repo.db.name)
    const logRestarts = walCheckpointSequence(sequencer.log.db.name)
    // commits of one account pipelined 8 at a time, each acknowledged once durable, as the write path does
    const rkeys: string[] = []
    let lastRkey: string | undefined
    const write = async (i: number) => {
      const rkey = (lastRkey = nextTid(lastRkey))
      const outcome = await repo.lock.run(async () => {
        const o = await repo.applyWritesLocked([post(DIDS[0]!, rkey, `post ${i}`)], key)
        sequencer.sequenceCommit(o, repo.durable())
        return o
      })
      await Promise.all([repo.durable(), sequencer.durable()])
      rkeys.push(rkey)
      return outcome
    }
    for (let i = 0; i < 240; i += 8) {
      await Promise.all(Array.from({ length: 8 }, (_, k) => write(i + k)))
      await tick()
    }
    await repo.lock.run(async () => undefined)
    expect(walCheckpointSequence(repo.db.name)).toBeGreaterThan(storeRestarts)
    expect(walCheckpointSequence(sequencer.log.db.name)).toBeGreaterThan(logRestarts)
    expect(sequencer.lastSeq()).toBe(240)

    await store.close()
    await sequencer.close()
    await checkpointer.close()
    const reopened = new ActorStore(path.join(dir, 'c'), blobs, 10)
    const again = reopened.get(DIDS[0]!)!
    expect(again.recordCount()).toBe(240)
    for (const rkey of rkeys.slice(-5)) expect(again.getRecord('app.bsky.feed.post', rkey)).not.toBeNull()
    const log = new Sequencer(path.join(dir, 'c-seq.sqlite'))
    expect(log.lastSeq()).toBe(240)
    await log.close()
    await reopened.close()
  })
})
