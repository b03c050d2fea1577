/**
 * A read worker's statement cache with the writer's change feed (src/hydration/change-feed.ts, ReadCache in
 * src/hydration/sql.ts), on a real SQLite file with a writing and a read-only connection as the AppView has
 * them: kept results survive writes that touch other DIDs, and a write is seen by the next read, also when
 * the read's snapshot was taken while the write's transaction was still open.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { migrateToLatest, openSqlite, type Database } from '@stratos/core/db'
import { appviewMigrations } from '../src/indexer/migrations.js'
import { ChangeFeed, ChangeReader, WATCHED_TABLES, didHashesOf } from '../src/hydration/change-feed.js'
import { ReadCache, cacheReads, listSql, readDirectly, type ListSql, type PreparedText } from '../src/hydration/sql.js'
import { hydrationQueries } from '../src/hydration/hydrator.js'
import { REPLIES_SQL } from '../src/api/app/bsky/feed/getPostThread.js'
import { pageArgs, pageSql } from '../src/api/timeline.js'

const A = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
const B = 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'
const C = 'did:web:c.example.com'
const T = '2026-01-01T00:00:00.000Z'

/** The reader of a worker: one read transaction per request, as read-worker.ts runs them. */
class Reader {
  readonly cache = new ReadCache(10_000)
  readonly changes: ChangeReader
  readonly q: ListSql
  private readonly database: Database<any>

  constructor(file: string, buffer: SharedArrayBuffer) {
    this.database = openSqlite<any>(file, { readonly: true })
    const sqlite = this.database.sqlite!
    readDirectly(this.database.db, { inTransaction: false, prepare: (source) => sqlite.prepare(source) })
    cacheReads(this.database.db, this.cache)
    this.changes = new ChangeReader(buffer)
    this.q = listSql(this.database.db)
  }

  async request<T>(fn: (q: ListSql) => Promise<T>): Promise<T> {
    const sqlite = this.database.sqlite!
    sqlite.prepare('BEGIN').run()
    try {
      const settled = this.changes.settled()
      sqlite.prepare('SELECT 1 FROM sqlite_master LIMIT 1').get()
      this.cache.begin(Number(sqlite.pragma('data_version', { simple: true })), this.changes.read(settled))
      return await fn(this.q)
    } finally {
      sqlite.prepare('COMMIT').run()
    }
  }

  close() {
    return this.database.close()
  }
}

/** the feed publishes a write as settled at the next turn of the event loop once its transaction is over */
const settle = () => new Promise((r) => setTimeout(r, 20))

describe('read cache with the change feed', () => {
  let dir: string
  let writer: Database<any>
  let feed: ChangeFeed
  let reader: Reader

  const setup = async (slots?: number) => {
    dir = mkdtempSync(join(tmpdir(), 'read-cache-'))
    const file = join(dir, 'db.sqlite')
    writer = openSqlite<any>(file)
    await migrateToLatest(writer.db, appviewMigrations('sqlite'))
    feed = new ChangeFeed(slots)
    feed.attach(writer.sqlite!)
    for (const did of [A, B, C]) writer.sqlite!.prepare('INSERT INTO actor (did, handle, "indexedAt") VALUES (?, ?, ?)').run(did, `${did.slice(-4)}.test`, T)
    await settle()
    reader = new Reader(file, feed.buffer)
  }
  const setHandle = (did: string, handle: string) => writer.sqlite!.prepare('UPDATE actor SET handle = ? WHERE did = ?').run(handle, did)

  let actors: PreparedText
  let unkeyed: PreparedText
  const handles = (dids: string[]) => reader.request(async (q) => (await q.rows<{ did: string; handle: string }>(actors, [{ list: dids }])).map((r) => r.handle))
  beforeEach(async () => {
    await setup()
    actors = reader.q.prepare('SELECT did, handle FROM actor WHERE did IN ?L ORDER BY did', { keyed: true })
    unkeyed = reader.q.prepare('SELECT count(*) AS n FROM actor')
  })
  afterEach(async () => {
    await reader.close()
    await writer.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('keeps a keyed result across writes of other DIDs, drops it at a write of its own', async () => {
    expect(await handles([A])).toEqual(['aaaa.test'])
    expect(await handles([A])).toEqual(['aaaa.test'])
    expect(reader.cache.hits).toBe(1)
    setHandle(B, 'b2.test')
    await settle()
    expect(await handles([A])).toEqual(['aaaa.test'])
    expect(reader.cache.hits).toBe(2)
    expect(await handles([B])).toEqual(['b2.test'])
    setHandle(A, 'a2.test')
    // (seen at once, settled or not)
    expect(await handles([A, C])).toEqual(['a2.test', '.com.test'])
  })

  it('a write is seen by the next read, also when that read started while its transaction was open', async () => {
    expect(await handles([A])).toEqual(['aaaa.test'])
    const w = writer.sqlite!
    w.prepare('BEGIN').run()
    setHandle(A, 'a3.test')
    // the reader's snapshot is older than the write: it reads the old value, and must not keep it
    expect(await handles([A])).toEqual(['aaaa.test'])
    expect(await handles([A])).toEqual(['aaaa.test'])
    await settle()
    expect(await handles([A])).toEqual(['aaaa.test'])
    w.prepare('COMMIT').run()
    expect(await handles([A])).toEqual(['a3.test'])
    await settle()
    expect(await handles([A])).toEqual(['a3.test'])
    expect(await handles([A])).toEqual(['a3.test'])
  })

  it('a rolled back write drops results but changes nothing', async () => {
    expect(await handles([B])).toEqual(['bbbb.test'])
    const w = writer.sqlite!
    w.prepare('BEGIN').run()
    setHandle(B, 'never.test')
    w.prepare('ROLLBACK').run()
    expect(await handles([B])).toEqual(['bbbb.test'])
    await settle()
    expect(await handles([B])).toEqual(['bbbb.test'])
    expect(await handles([B])).toEqual(['bbbb.test'])
  })

  it('results that are not keyed go at every commit', async () => {
    const count = () => reader.request(async (q) => (await q.rows<{ n: number }>(unkeyed, []))[0]!.n)
    expect(await count()).toBe(3)
    expect(await count()).toBe(3)
    expect(reader.cache.hits).toBe(1)
    writer.sqlite!.prepare('INSERT INTO actor (did, handle, "indexedAt") VALUES (?, ?, ?)').run('did:plc:dddddddddddddddddddddddd', 'd.test', T)
    expect(await count()).toBe(4)
    // (not a watched write: the actor_state table; still a commit)
    writer.sqlite!.prepare('INSERT INTO actor_state (did, "lastSeenNotifs") VALUES (?, ?)').run(A, T)
    expect(await count()).toBe(4)
    expect(reader.cache.hits).toBe(1)
  })

  it('rows of every watched table carry the DIDs of their key columns (a write to each drops the results on its DIDs)', async () => {
    for (const [table, cols] of Object.entries(WATCHED_TABLES)) {
      for (const col of cols) {
        expect(await handles([A, B])).toHaveLength(2)
        const hitsBefore = reader.cache.hits
        expect(await handles([A, B])).toHaveLength(2)
        expect(reader.cache.hits).toBe(hitsBefore + 1)
        if (table === 'actor') {
          // (A's own row: updated)
          writer.sqlite!.prepare('UPDATE actor SET "indexedAt" = ? WHERE did = ?').run('2026-02-02T00:00:00.000Z', A)
          await settle()
          const misses = reader.cache.misses
          expect(await handles([A, B])).toHaveLength(2)
          expect(reader.cache.misses, `${table}.${col}`).toBe(misses + 1)
          writer.sqlite!.prepare('UPDATE actor SET "indexedAt" = ? WHERE did = ?').run(T, A)
          await settle()
          continue
        }
        // a row of `table` whose column `col` names A (the other key columns name C), then deleted
        const info = writer.sqlite!.prepare(`SELECT name, "notnull" AS nn, pk FROM pragma_table_info(?)`).all(table) as { name: string; nn: number; pk: number }[]
        const values = info.map((c) => (c.name === col ? (col.toLowerCase().includes('uri') || col === 'subject' ? `at://${A}/x/${col}` : A) : cols.includes(c.name) ? C : c.nn || c.pk ? `v-${c.name}` : null))
        writer.sqlite!.prepare(`INSERT INTO "${table}" (${info.map((c) => `"${c.name}"`).join(', ')}) VALUES (${info.map(() => '?').join(', ')})`).run(...values)
        await settle()
        const misses = reader.cache.misses
        expect(await handles([A, B])).toHaveLength(2)
        expect(reader.cache.misses, `${table}.${col}`).toBe(misses + 1)
        writer.sqlite!.prepare(`DELETE FROM "${table}"`).run()
        // (until the delete has settled, results on A are not kept)
        await settle()
      }
    }
  })

  it('a reader the ring went round on drops every keyed result and keeps none until what it missed settled', async () => {
    await reader.close()
    await writer.close()
    rmSync(dir, { recursive: true, force: true })
    await setup(8)
    const p = reader.q.prepare('SELECT did, handle FROM actor WHERE did IN ?L ORDER BY did', { keyed: true })
    const read = (dids: string[]) => reader.request(async (q) => (await q.rows<{ handle: string }>(p, [{ list: dids }])).map((r) => r.handle))
    expect(await read([A])).toEqual(['aaaa.test'])
    expect(await read([A])).toEqual(['aaaa.test'])
    expect(reader.cache.size).toBe(1)
    const w = writer.sqlite!
    w.prepare('BEGIN').run()
    setHandle(A, 'a4.test')
    for (let i = 0; i < 20; i++) setHandle(B, `b${i}.test`)
    w.prepare('COMMIT').run()
    expect(await read([A])).toEqual(['a4.test'])
    expect(reader.cache.size).toBe(0)
    await settle()
    expect(await read([A])).toEqual(['a4.test'])
    expect(await read([A])).toEqual(['a4.test'])
    expect(reader.cache.size).toBe(1)
  })
})

describe('keyed statements', () => {
  it('read only watched tables', () => {
    const db = openSqlite<any>(':memory:')
    const q = listSql(db.db)
    const keyed: string[] = Object.values(hydrationQueries(q)).map((t) => {
      expect(t.keyed, t.sql).toBe(true)
      return t.sql
    })
    keyed.push(REPLIES_SQL, pageSql(true, ''), 'SELECT uri FROM post WHERE uri = ?')
    for (const sql of keyed) {
      const tables = [...sql.matchAll(/\b(?:FROM|JOIN)\s+"?([a-z_]+)"?/gi)].map((m) => m[1]!).filter((t) => t !== 'json_each')
      expect(tables.length).toBeGreaterThan(0)
      for (const t of tables) expect(Object.keys(WATCHED_TABLES), `${t} in ${sql}`).toContain(t)
    }
    void db.close()
  })

  it('over a list of keys loop over the list (one index seek per key), not over a temporary index built from it', async () => {
    const db = openSqlite<any>(':memory:')
    await migrateToLatest(db.db, appviewMigrations('sqlite'))
    const q = listSql(db.db)
    const plan = (template: string, args: unknown[]) =>
      (db.sqlite!.prepare(`EXPLAIN QUERY PLAN ${q.prepare(template).sql}`).all(args) as { detail: string }[]).map((r) => r.detail).join('; ')
    const replies = plan(REPLIES_SQL, [JSON.stringify([`at://${A}/app.bsky.feed.post/3k`]), 10])
    // (a reply's head read from the index alone: no row of the post table)
    expect(replies).toMatch(/^SCAN j VIRTUAL TABLE.*; SEARCH p USING COVERING INDEX post_reply_parent_cover_idx \(replyParent=\?\)/)
    const page = plan(pageSql(true, ''), pageArgs([JSON.stringify([A, B])], T, [], 50))
    expect(page).toMatch(/^SCAN j VIRTUAL TABLE.*; SEARCH fi USING INDEX feed_item_originator_idx \(originatorDid=\? AND sortAt>\?\)/)
    // (the page's tighter bound: from the index alone, no row read)
    expect(page).toMatch(/SCALAR SUBQUERY \d+; SCAN j VIRTUAL TABLE.*; SEARCH fi USING COVERING INDEX feed_item_originator_idx \(originatorDid=\? AND sortAt>\?\)/)
    for (const p of [replies, page]) expect(p).not.toContain('LIST SUBQUERY')
    void db.close()
  })

  it('name the DIDs of their parameters as the writer finds them in rows', () => {
    const uri = `at://${A}/app.bsky.feed.post/3k`
    expect(didHashesOf([JSON.stringify([uri, B, C])]).sort()).toEqual(didHashesOf([A, B, `at://${C}/app.bsky.actor.profile/self`]).sort())
    expect(didHashesOf([42, null, 'app.bsky.labeler.service', 'alice.test'])).toEqual([])
  })
})
