/**
 * The ingest hot path's hand-written parts against their library oracles:
 * - RepoVerifier (a fetched repo checked, converted and validated in a worker thread) gives the same
 *   verdict and records as the same check in the calling thread, and as core's verifyRepoCar followed by
 *   lexToJson and validateRecord; a wrong key or a broken CAR is refused on both paths.
 * - bulk.ts's multi-row statements (SQL text once per shape) leave the same rows as kysely's query builder
 *   for the same inserts and upserts. On SQLite, and on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import { Secp256k1Keypair } from '@atproto/crypto'
import { sql, type Kysely } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDatabase, type Database } from '@stratos/core/db'
import { lexToJson } from '@stratos/core/data'
import { validateRecord } from '@stratos/core/lexicon'
import { verifyRepoCar } from '@stratos/core/repo'
import { insertRows } from '../src/indexer/bulk.js'
import { RepoVerifier } from '../src/ingest/repo-verify.js'
import { FakeNetwork, PG_URL, follow, like, post, testDb, type TestDb } from './helpers.js'

describe('RepoVerifier: worker thread = calling thread = core verifyRepoCar + lexToJson + validateRecord', () => {
  let net: FakeNetwork
  const inWorker = new RepoVerifier({ workers: 1 })
  const inThread = new RepoVerifier({ workers: 0 })

  beforeAll(async () => {
    net = await FakeNetwork.start()
  })
  afterAll(async () => {
    await inWorker.close()
    await net?.close()
  })

  const getRepo = async (did: string) => new Uint8Array(await (await fetch(`${net.pdsUrl}/xrpc/com.atproto.sync.getRepo?did=${did}`)).arrayBuffer())

  it('a repo with valid, invalid and unindexed records', async () => {
    const a = await net.createAccount('bulk-a.test')
    const b = await net.createAccount('bulk-b.test')
    const p = await net.create(a, 'app.bsky.feed.post', post('hello'))
    await net.create(a, 'app.bsky.feed.post', post('with langs', { langs: ['en', 'fr'] }))
    await net.create(a, 'app.bsky.feed.like', like(p))
    await net.create(a, 'app.bsky.graph.follow', follow(b.did))
    // fails lexicon validation (no text), and a collection the AppView does not index
    await net.create(a, 'app.bsky.feed.post', { createdAt: new Date().toISOString() })
    await net.create(a, 'com.example.other', { anything: 1 })
    await net.create(a, 'app.bsky.actor.profile', { displayName: 'A' }, 'self')

    const car = await getRepo(a.did)
    const key = a.keypair.did()
    const want = await verifyRepoCar(car, a.did, key)
    const wantRecords = want.records
      .filter((r) => r.collection.startsWith('app.bsky.'))
      .map((r) => {
        const json = lexToJson(r.value as never) as Record<string, unknown>
        return {
          uri: `at://${a.did}/${r.collection}/${r.rkey}`,
          cid: r.cid.toString(),
          collection: r.collection,
          rkey: r.rkey,
          json: JSON.stringify(json),
          valid: validateRecord(r.collection, json).valid === true,
        }
      })
    expect(wantRecords).toHaveLength(6)
    expect(wantRecords.filter((r) => !r.valid)).toHaveLength(1)

    for (const v of [inWorker, inThread]) {
      const got = await v.verify({ car: car.slice(), did: a.did, signingKey: key, validate: true })
      expect(got).toEqual({ ok: true, rev: want.commit.rev, data: want.commit.data.toString(), commitCid: want.commitCid.toString(), records: wantRecords })
      // validation off: every record counts as valid
      const loose = await v.verify({ car: car.slice(), did: a.did, signingKey: key, validate: false })
      expect(loose.ok && loose.records.every((r) => r.valid)).toBe(true)
    }
    expect(inWorker.workers).toBe(1)
  })

  it('a wrong key, another account\'s repo, or broken bytes: refused on both paths, with the same reason', async () => {
    const a = await net.createAccount('bulk-c.test')
    await net.create(a, 'app.bsky.feed.post', post('x'))
    const car = await getRepo(a.did)
    const other = (await Secp256k1Keypair.create()).did()
    const cases = [
      { car, did: a.did, signingKey: other, reason: 'bad-signature' },
      { car, did: 'did:plc:someoneelseentirely', signingKey: a.keypair.did(), reason: 'did-mismatch' },
      { car: car.slice(0, car.length - 20), did: a.did, signingKey: a.keypair.did(), reason: undefined },
    ]
    for (const c of cases) {
      const w = await inWorker.verify({ car: c.car.slice(), did: c.did, signingKey: c.signingKey, validate: true })
      const t = await inThread.verify({ car: c.car.slice(), did: c.did, signingKey: c.signingKey, validate: true })
      expect(w.ok).toBe(false)
      expect(w).toEqual(t)
      if (c.reason && !w.ok) expect(w.reason).toBe(c.reason)
    }
  })
})

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

describe.each(dialects)('bulk inserts = kysely inserts (%s)', (dialect) => {
  let t: TestDb
  let database: Database<any>
  let db: Kysely<any>

  beforeAll(async () => {
    t = await testDb(dialect)
    database = await openDatabase<any>(t.dbUrl, { ...(t.dbSchema ? { schema: t.dbSchema } : {}), statementCache: 100 })
    db = database.db
    for (const name of ['a', 'b']) {
      await sql.raw(`CREATE TABLE t_${name} (uri TEXT PRIMARY KEY, "camelCol" TEXT, n INTEGER NOT NULL, maybe TEXT)`).execute(db)
      await sql.raw(`CREATE TABLE agg_${name} (uri TEXT PRIMARY KEY, "likeCount" INTEGER NOT NULL DEFAULT 0, "replyCount" INTEGER NOT NULL DEFAULT 0)`).execute(db)
    }
  })
  afterAll(async () => {
    await database?.close()
    await t?.cleanup()
  })

  it('multi-row inserts (chunked, conflicts ignored, RETURNING) and counter upserts', async () => {
    // 450 rows in chunks of 200: three statements of two shapes; 50 of them collide with earlier ones
    const rows = Array.from({ length: 450 }, (_, i) => ({ uri: `at://x/${i % 400}`, camelCol: i % 3 === 0 ? null : `v'${i}"`, n: i, maybe: undefined }))
    const columns = ['uri', 'camelCol', 'n', 'maybe']
    const got = await insertRows<{ uri: string }>(db, dialect, { table: 't_a', columns, tail: 'ON CONFLICT DO NOTHING RETURNING "uri"' }, rows)
    let want: string[] = []
    for (let i = 0; i < rows.length; i += 200) {
      const res = await db
        .insertInto('t_b')
        .values(rows.slice(i, i + 200).map((r) => ({ ...r, maybe: null })))
        .onConflict((oc) => oc.doNothing())
        .returning('uri')
        .execute()
      want = want.concat(res.map((r) => r.uri as string))
    }
    expect(got.map((r) => r.uri).sort()).toEqual(want.sort())
    expect(got).toHaveLength(400)
    const dump = async (table: string) => (await sql.raw(`SELECT uri, "camelCol", n, maybe FROM ${table} ORDER BY uri`).execute(db)).rows
    expect(await dump('t_a')).toEqual(await dump('t_b'))

    // counters: insert, then add to existing ones
    for (const round of [1, 2]) {
      const aggs = Array.from({ length: 250 }, (_, i) => ({ uri: `at://x/${i}`, likeCount: i % 5, replyCount: round }))
      await insertRows(db, dialect, { table: 'agg_a', columns: ['uri', 'likeCount', 'replyCount'], tail: 'ON CONFLICT ("uri") DO UPDATE SET "likeCount" = "agg_a"."likeCount" + excluded."likeCount", "replyCount" = "agg_a"."replyCount" + excluded."replyCount"' }, aggs)
      await db
        .insertInto('agg_b')
        .values(aggs)
        .onConflict((oc) =>
          oc.column('uri').doUpdateSet({ likeCount: sql`agg_b."likeCount" + excluded."likeCount"`, replyCount: sql`agg_b."replyCount" + excluded."replyCount"` }),
        )
        .execute()
    }
    const aggDump = async (table: string) => (await sql.raw(`SELECT uri, "likeCount", "replyCount" FROM ${table} ORDER BY uri`).execute(db)).rows
    const a = await aggDump('agg_a')
    expect(a).toEqual(await aggDump('agg_b'))
    expect(a.find((r) => (r as { uri: string }).uri === 'at://x/3')).toEqual({ uri: 'at://x/3', likeCount: 6, replyCount: 3 })
  })

  it('an SQL function around a placeholder (the search entry)', async () => {
    await sql.raw('CREATE TABLE f (uri TEXT PRIMARY KEY, t TEXT)').execute(db)
    await insertRows(db, dialect, { table: 'f', columns: ['uri', 't'], exprs: { t: 'upper({})' } }, [{ uri: 'a', t: 'hello' }, { uri: 'b', t: 'World' }])
    expect((await sql.raw('SELECT uri, t FROM f ORDER BY uri').execute(db)).rows).toEqual([
      { uri: 'a', t: 'HELLO' },
      { uri: 'b', t: 'WORLD' },
    ])
  })
})
