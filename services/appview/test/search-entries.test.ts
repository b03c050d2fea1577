/**
 * Search entries kept in step with the records: a profile updated or deleted, a handle changed, a post
 * updated or deleted leaves exactly one current entry (or none), found by the search methods. On SQLite the
 * old entry is found through its FTS5 rowid (actor_fts_rowid / post_fts_rowid), not by a scan of the FTS5
 * table (its did / uri columns are UNINDEXED); an existing database gets those rowids from migration
 * 005. On SQLite, and on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import { sql, type Kysely } from 'kysely'
import { afterEach, describe, expect, it } from 'vitest'
import { migrateToLatest, openPostgres, openSqlite, type Database } from '@stratos/core/db'
import { Indexer } from '../src/indexer/indexer.js'
import { appviewMigrations } from '../src/indexer/migrations.js'
import type { DatabaseSchema } from '../src/indexer/schema.js'
import { searchTokens } from '../src/indexer/search.js'
import { PG_URL, testDb, type TestDb } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']
const ALICE = 'did:plc:alice00000000000000000000'
const BOB = 'did:plc:bob0000000000000000000000'
const CID1 = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'
const CID2 = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
const NOW = '2026-01-01T00:00:00.000Z'

async function open(tdb: TestDb): Promise<Database<DatabaseSchema>> {
  const database = tdb.dialect === 'postgres' ? await openPostgres<DatabaseSchema>(tdb.dbUrl, { schema: tdb.dbSchema! }) : openSqlite<DatabaseSchema>(tdb.dbUrl)
  await migrateToLatest(database.db, appviewMigrations(database.dialect))
  return database
}

/** What a user's search finds: actor DIDs / post URIs matching `q` (the search methods' conditions). */
async function actorsFound(indexer: Indexer, q: string): Promise<string[]> {
  const rows = await indexer.db.selectFrom('actor').select('did').where(indexer.search.actorMatches(searchTokens(q), false)).orderBy('did').execute()
  return rows.map((r) => r.did)
}
async function postsFound(indexer: Indexer, q: string): Promise<string[]> {
  const rows = await indexer.db.selectFrom('post').select('uri').where(indexer.search.postMatches(searchTokens(q))).orderBy('uri').execute()
  return rows.map((r) => r.uri)
}

const profile = (displayName: string) => ({ $type: 'app.bsky.actor.profile', displayName })
const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: NOW })

/** SQLite: every FTS5 entry has its rowid recorded under its key, and nothing else is recorded. */
async function rowidsConsistent(db: Kysely<any>): Promise<void> {
  for (const [fts, key] of [
    ['actor_fts', 'did'],
    ['post_fts', 'uri'],
  ]) {
    const entries = (await sql.raw(`SELECT rowid AS id, ${key} AS k FROM ${fts} ORDER BY rowid`).execute(db)).rows
    const recorded = (await sql.raw(`SELECT "id" AS id, "${key}" AS k FROM ${fts}_rowid ORDER BY "id"`).execute(db)).rows
    expect(recorded).toEqual(entries)
  }
}

describe.each(dialects)('search entries (%s)', (dialect) => {
  let tdb: TestDb | null = null
  let database: Database<DatabaseSchema> | null = null
  afterEach(async () => {
    await database?.close()
    await tdb?.cleanup()
    database = null
    tdb = null
  })

  it('a profile, handle or post changed or deleted leaves only its current entry', async () => {
    tdb = await testDb(dialect)
    database = await open(tdb)
    const indexer = new Indexer(database, { now: () => NOW })
    for (const did of [ALICE, BOB]) {
      await indexer.ensureActor(did)
      await indexer.setHandle(did, did === ALICE ? 'alice.test' : 'bob.test', undefined, { fresh: true })
    }
    const aliceProfile = `at://${ALICE}/app.bsky.actor.profile/self`
    expect(await indexer.indexOne(aliceProfile, CID1, profile('Wonderland Alice'))).toBe('indexed')
    expect(await indexer.indexOne(`at://${BOB}/app.bsky.actor.profile/self`, CID1, profile('Builder Bob'))).toBe('indexed')
    expect(await actorsFound(indexer, 'wonderland')).toEqual([ALICE])
    // updated: the old name is gone, the new one found, the handle still found
    expect(await indexer.indexOne(aliceProfile, CID2, profile('Looking Glass'))).toBe('indexed')
    expect(await actorsFound(indexer, 'wonderland')).toEqual([])
    expect(await actorsFound(indexer, 'glass')).toEqual([ALICE])
    expect(await actorsFound(indexer, 'alice')).toEqual([ALICE])
    // a new handle (not fresh: the entry is replaced)
    await indexer.setHandle(ALICE, 'liddell.test')
    expect(await actorsFound(indexer, 'alice')).toEqual([])
    expect(await actorsFound(indexer, 'liddell')).toEqual([ALICE])
    expect(await actorsFound(indexer, 'glass')).toEqual([ALICE])
    // the profile deleted: the name goes, the handle stays
    expect(await indexer.deleteOne(aliceProfile)).toBe(true)
    expect(await actorsFound(indexer, 'glass')).toEqual([])
    expect(await actorsFound(indexer, 'liddell')).toEqual([ALICE])
    expect(await actorsFound(indexer, 'builder')).toEqual([BOB])

    const p1 = `at://${ALICE}/app.bsky.feed.post/3kp1`
    const p2 = `at://${BOB}/app.bsky.feed.post/3kp2`
    await indexer.indexOne(p1, CID1, post('hello tea party'))
    await indexer.indexOne(p2, CID1, post('hello builders'))
    expect(await postsFound(indexer, 'hello')).toEqual([p1, p2])
    await indexer.indexOne(p1, CID2, post('goodbye tea party'))
    expect(await postsFound(indexer, 'hello')).toEqual([p2])
    expect(await postsFound(indexer, 'goodbye')).toEqual([p1])
    expect(await indexer.deleteOne(p2)).toBe(true)
    expect(await postsFound(indexer, 'hello')).toEqual([])
    expect(await postsFound(indexer, 'tea')).toEqual([p1])
    const counts = (await sql<{ a: number; p: number }>`SELECT (SELECT count(*) FROM actor_fts) AS a, (SELECT count(*) FROM post_fts) AS p`.execute(database.db)).rows[0]!
    expect([Number(counts.a), Number(counts.p)]).toEqual([2, 1])
    if (dialect === 'sqlite') {
      await rowidsConsistent(database.db)
      // the deletes look the entry up by rowid: no scan of the FTS5 table
      for (const text of [
        'DELETE FROM actor_fts WHERE rowid IN (SELECT "id" FROM actor_fts_rowid WHERE "did" = ?)',
        'DELETE FROM post_fts WHERE rowid IN (SELECT "id" FROM post_fts_rowid WHERE "uri" = ?)',
      ]) {
        const plan = (database.sqlite!.prepare(`EXPLAIN QUERY PLAN ${text}`).all('x') as { detail: string }[]).map((r) => r.detail).join('; ')
        // (FTS5's plan for a rowid lookup: "INDEX 0:="; a full scan is "INDEX 0:" alone)
        expect(plan).toMatch(/^SCAN \w+_fts VIRTUAL TABLE INDEX 0:=; LIST SUBQUERY 1; SEARCH \w+_fts_rowid USING PRIMARY KEY/)
      }
    }
  })

  it.runIf(dialect === 'sqlite')('an existing database gets its entries\' rowids from the migration', async () => {
    tdb = await testDb(dialect)
    // a database made by the migrations before 005, with search entries (one account twice, as a bug could leave it)
    const before = openSqlite<DatabaseSchema>(tdb.dbUrl)
    const all = appviewMigrations('sqlite')
    await migrateToLatest(before.db, Object.fromEntries(Object.entries(all).filter(([name]) => name < '005')))
    for (const [did, handle, name] of [
      [ALICE, 'alice.test', 'Old Alice'],
      [BOB, 'bob.test', 'Bob'],
      [ALICE, 'alice.test', 'Wonderland Alice'],
    ]) {
      await sql`INSERT INTO actor ("did", "handle", "indexedAt") VALUES (${did}, ${handle}, ${NOW}) ON CONFLICT DO NOTHING`.execute(before.db)
      await sql`INSERT INTO actor_fts (did, handle, "displayName") VALUES (${did}, ${handle}, ${name})`.execute(before.db)
    }
    const p1 = `at://${ALICE}/app.bsky.feed.post/3kp1`
    await sql`INSERT INTO post_fts (uri, text) VALUES (${p1}, ${'hello tea party'})`.execute(before.db)
    await before.close()

    database = await open(tdb)
    const indexer = new Indexer(database, { now: () => NOW })
    await rowidsConsistent(database.db)
    // the newest entry of an account kept
    expect(await actorsFound(indexer, 'old')).toEqual([])
    expect(await actorsFound(indexer, 'wonderland')).toEqual([ALICE])
    await indexer.setHandle(ALICE, 'liddell.test')
    expect(await actorsFound(indexer, 'alice')).toEqual([])
    expect(await actorsFound(indexer, 'liddell')).toEqual([ALICE])
    await indexer.search.deletePost(database.db, p1)
    expect((await sql`SELECT count(*) AS n FROM post_fts`.execute(database.db)).rows).toEqual([{ n: 0 }])
    await rowidsConsistent(database.db)
  })
})
