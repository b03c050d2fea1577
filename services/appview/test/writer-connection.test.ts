/**
 * The AppView's SQLite writer connection keeps its temporary storage in memory (temp_store = MEMORY): the
 * statement journal every multi-row statement of a batch transaction keeps stays off the disk (on a temp
 * file past 64 KiB, each journal page was a pwrite: ~15 % of the main thread's CPU in live ingest). Set
 * before anything else: the read workers' change feed (TEMP triggers on the writer's connection) is there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AppViewServer } from '../src/server.js'
import { READ_MMAP_BYTES } from '../src/api/read-pool.js'
import { WRITER_CACHE_KIB } from '../src/context.js'
import { FakeNetwork, caughtUp, post, startAppView, testDb, type TestDb } from './helpers.js'

describe('the SQLite writer connection', () => {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer

  beforeAll(async () => {
    net = await FakeNetwork.start()
    db = await testDb('sqlite')
    server = await startAppView(net, db, { readWorkers: 1 })
  })

  afterAll(async () => {
    await server?.close()
    await net?.close()
    await db?.cleanup()
  })

  it('keeps statement journals and temporary tables in memory, with the change feed in place', async () => {
    const sqlite = server.ctx.database.sqlite!
    // 2: MEMORY
    expect(sqlite.pragma('temp_store', { simple: true })).toBe(2)
    const alice = await net.createAccount('writer-alice.test')
    await net.create(alice, 'app.bsky.feed.post', post('hello'))
    await caughtUp(server, net)
    const triggers = sqlite.prepare(`SELECT name FROM sqlite_temp_master WHERE type = 'trigger'`).all() as { name: string }[]
    expect(triggers.length).toBeGreaterThan(0)
    expect(sqlite.pragma('temp_store', { simple: true })).toBe(2)
  })

  it('reads the file through a memory map and keeps a 64 MiB page cache (backfill batches change thousands of random index pages)', () => {
    const sqlite = server.ctx.database.sqlite!
    expect(sqlite.pragma('mmap_size', { simple: true })).toBe(READ_MMAP_BYTES)
    expect(sqlite.pragma('cache_size', { simple: true })).toBe(-WRITER_CACHE_KIB)
  })
})
