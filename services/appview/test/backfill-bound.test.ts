/**
 * The network backfill's bounds: at most `concurrency` repos in flight, and no new repo started while
 * the CAR bytes of those in flight leave no room for another (APPVIEW_BACKFILL_MAX_BYTES); one repo
 * always runs, however big. The ingester is a stand-in that reports each repo's size and holds it a
 * moment; the backfill's own bookkeeping (listing, progress rows) runs on the real database.
 */
import { afterEach, describe, expect, it } from 'vitest'
import pino from 'pino'
import { migrateToLatest, openPostgres, openSqlite, type Database } from '@stratos/core/db'
import { Backfiller } from '../src/ingest/backfill.js'
import type { Ingester, ResyncOptions } from '../src/ingest/ingester.js'
import { appviewMigrations } from '../src/indexer/migrations.js'
import type { DatabaseSchema } from '../src/indexer/schema.js'
import { PG_URL, testDb, type TestDb } from './helpers.js'

const MiB = 1024 * 1024
const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

/**
 * A stand-in ingester: listRepos answers `dids`; each resync reports `size(did)` bytes fetched, then
 * holds until `fill` repos are fetched and in flight (or every repo has started), so that how many
 * run at once depends on the backfill's bounds alone, not on timing.
 */
function fakeIngester(dids: string[], size: (did: string) => number, fill: number) {
  const starts: { did: string; othersInFlight: number; bytesOfOthers: number }[] = []
  const inFlight = new Map<string, number>()
  let resyncedRecords = 0
  const ingester = {
    stats: {
      get resyncedRecords() {
        return resyncedRecords
      },
    },
    fetcher: {
      fetchBytes: async () => new TextEncoder().encode(JSON.stringify({ repos: dids.map((did) => ({ did, rev: '3l000000000002', active: true })) })),
    },
    async resync(did: string, opts: ResyncOptions = {}): Promise<boolean> {
      starts.push({ did, othersInFlight: inFlight.size, bytesOfOthers: [...inFlight.values()].reduce((a, b) => a + b, 0) })
      await new Promise((r) => setTimeout(r, 1))
      inFlight.set(did, size(did))
      opts.onFetched?.(size(did))
      while (inFlight.size < fill && starts.length < dids.length) await new Promise((r) => setTimeout(r, 1))
      await new Promise((r) => setTimeout(r, 1))
      inFlight.delete(did)
      resyncedRecords += 10
      return true
    },
  }
  return { ingester: ingester as unknown as Ingester, starts }
}

describe.each(dialects)('backfill bounds (%s)', (dialect) => {
  let tdb: TestDb | null = null
  let database: Database<DatabaseSchema> | null = null

  afterEach(async () => {
    await database?.close()
    await tdb?.cleanup()
    database = null
    tdb = null
  })

  async function open(): Promise<Database<DatabaseSchema>> {
    tdb = await testDb(dialect)
    database = dialect === 'postgres' ? await openPostgres<DatabaseSchema>(tdb.dbUrl, { schema: tdb.dbSchema! }) : openSqlite<DatabaseSchema>(tdb.dbUrl)
    await migrateToLatest(database.db, appviewMigrations(database.dialect))
    return database
  }

  const dids = Array.from({ length: 60 }, (_, i) => `did:plc:bound${String(i).padStart(4, '0')}`)

  it('starts no repo while the bytes in flight leave no room for another average one', async () => {
    const { db } = await open()
    const { ingester, starts } = fakeIngester(dids, () => MiB, 3)
    const backfiller = new Backfiller({ db, ingester, log: pino({ level: 'silent' }), upstreams: ['http://relay.test'], concurrency: 8, maxBytesInFlight: 3 * MiB })
    await backfiller.start()
    const status = await backfiller.status()
    expect(status).toMatchObject({ state: 'done', reposTotal: 60, reposDone: 60, reposFailed: 0, reposInFlight: 0, bytesInFlight: 0 })
    expect(starts.map((s) => s.did).sort()).toEqual(dids)
    // the first wave (nothing fetched yet: an equal share each) is the count bound's; after it, at most 3 at once
    const later = starts.slice(8)
    expect(later.length).toBe(52)
    for (const s of later) {
      expect(s.othersInFlight).toBeLessThanOrEqual(2)
      expect(s.bytesOfOthers).toBeLessThanOrEqual(2 * MiB)
    }
    // and the bound is not a count of one: repos do overlap
    expect(later.some((s) => s.othersInFlight === 2)).toBe(true)
  })

  it('keeps going one at a time with repos bigger than the bound', async () => {
    const { db } = await open()
    const { ingester, starts } = fakeIngester(dids.slice(0, 20), () => 10 * MiB, 1)
    const backfiller = new Backfiller({ db, ingester, log: pino({ level: 'silent' }), upstreams: ['http://relay.test'], concurrency: 4, maxBytesInFlight: 3 * MiB })
    await backfiller.start()
    expect(await backfiller.status()).toMatchObject({ state: 'done', reposDone: 20, reposInFlight: 0, bytesInFlight: 0 })
    for (const s of starts.slice(4)) expect(s.othersInFlight).toBe(0)
  })

  it('without a byte bound in the way, the count bound holds', async () => {
    const { db } = await open()
    const { ingester, starts } = fakeIngester(dids, () => 1000, 5)
    const backfiller = new Backfiller({ db, ingester, log: pino({ level: 'silent' }), upstreams: ['http://relay.test'], concurrency: 5, maxBytesInFlight: 64 * MiB })
    await backfiller.start()
    expect(await backfiller.status()).toMatchObject({ state: 'done', reposDone: 60 })
    for (const s of starts) expect(s.othersInFlight).toBeLessThanOrEqual(4)
    expect(starts.some((s) => s.othersInFlight === 4)).toBe(true)
  })
})
