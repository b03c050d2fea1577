/**
 * The indexer: applies record creates, updates and deletes to the tables (in the caller's
 * transaction), keeps counters up incrementally and writes notifications at index time.
 */
import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database, DbDialect } from '@stratos/core/db'
import { validateRecord } from '@stratos/core/lexicon'
import { parseAtUri } from '@stratos/core/syntax'
import { INDEXED_COLLECTIONS, didFromUri, mentionedDids, planRecord, type AggTarget, type IndexPlan, type RecordInput } from './records.js'
import type { DatabaseSchema } from './schema.js'
import { Search } from './search.js'
import { statSync } from 'node:fs'
import { WalCheckpointSchedule, type WalCheckpointer } from '@stratos/core/stream'
import { compileInsert, ident, insertRows, runQuery, type InsertShape } from './bulk.js'

export type Db = Kysely<DatabaseSchema>
type AnyDb = Kysely<any>

export type IndexResult = 'indexed' | 'unchanged' | 'skipped' | 'invalid'

export interface IndexerOptions {
  /** ISO timestamp of "now" (tests move it) */
  now?: () => string
  /** lexicon-validate records before indexing (default true) */
  validate?: boolean
  /**
   * SQLite file databases: the WAL is checkpointed by this worker (core's WalCheckpointSchedule: every
   * CHECKPOINT_EVERY_WRITES write transactions, SQLite's automatic checkpoints inside a COMMIT turned off)
   */
  checkpointer?: WalCheckpointer
}

/** write transactions (batches of live commits or backfilled repos) between two WAL checkpoints */
const CHECKPOINT_EVERY_WRITES = 32
/** the WAL's size is looked at this often; above WAL_CHECK_BYTES a checkpoint runs (writes made outside transact) */
const WAL_CHECK_MS = 10_000
const WAL_CHECK_BYTES = 64 * 1024 * 1024

/**
 * Rows and counter moves of many records written at once (live ingest's group commit): counters are
 * summed and written once, feed items, notifications and search entries go in with multi-row inserts
 * at the end of the batch (`flush`). A record deleted in the same batch takes its pending rows with it.
 */
export class IndexBatch {
  /**
   * actors of this batch's records: their rows are made (where missing) with one statement at the batch's
   * end (flushBatch), not one ensureActor per record (live ingest made them already, before the check)
   */
  readonly actors = new Set<string>()
  readonly aggs = new Map<string, { agg: AggTarget; n: number }>()
  readonly feedItems = new Map<string, DatabaseSchema['feed_item']>()
  readonly notifications = new Map<string, DatabaseSchema['notification'][]>()
  readonly posts = new Map<string, string>()
  /**
   * What the record table holds for a URI as of this point of the batch (cid, or null when absent), for
   * the URIs looked up at the batch's start (`prefetch`) or written in it: no lookup statement per record.
   */
  readonly known = new Map<string, string | null>()
  /** record-table rows written by this batch, inserted together (flushRecords) before anything reads them */
  readonly records = new Map<string, DatabaseSchema['record']>()
  /**
   * Main rows of the common tables (posts, likes, reposts, follows) written by this batch, in order,
   * inserted with multi-row statements (flushMains) before anything reads or deletes from those tables;
   * their feed items, counters, notifications and search entries follow from which rows went in.
   */
  readonly mains = new Map<string, { plan: IndexPlan; isUpdate: boolean; notify: boolean }>()

  bump(agg: AggTarget, delta: number): void {
    const k = `${agg.table}\u0000${agg.column}\u0000${agg.key}`
    const e = this.aggs.get(k)
    if (e) e.n += delta
    else this.aggs.set(k, { agg, n: delta })
  }
}

/** Hosting statuses that hide an account's content (#account with active=false). */
export const HIDDEN_STATUSES = new Set(['deactivated', 'takendown', 'suspended', 'deleted'])

export class Indexer {
  readonly search: Search
  private readonly now: () => string
  private readonly validate: boolean

  constructor(
    readonly database: Database<DatabaseSchema>,
    opts: IndexerOptions = {},
  ) {
    this.search = new Search(database.dialect)
    this.now = opts.now ?? (() => new Date().toISOString())
    this.validate = opts.validate ?? true
    const sqlite = database.sqlite
    this.checkpointer = opts.checkpointer ?? null
    if (opts.checkpointer && sqlite && !sqlite.memory) {
      const schedule = new WalCheckpointSchedule(sqlite, opts.checkpointer, {
        everyWrites: CHECKPOINT_EVERY_WRITES,
        // the end of each checkpoint with the connection reserved: no write in between, so the next one
        // restarts the WAL instead of growing it
        exclusive: (fn) => this.db.connection().execute(() => fn()),
      })
      this.checkpoints = schedule
      const wal = `${sqlite.name}-wal`
      this.walTimer = setInterval(() => {
        try {
          if (sqlite.open && statSync(wal).size > WAL_CHECK_BYTES) schedule.wrote(CHECKPOINT_EVERY_WRITES)
        } catch {
          // no WAL file (yet)
        }
      }, WAL_CHECK_MS)
      this.walTimer.unref()
    }
  }

  /** the database's WAL checkpoints (SQLite file databases with a checkpointer) */
  readonly checkpoints: WalCheckpointSchedule | null = null
  private readonly walTimer: NodeJS.Timeout | null = null
  private readonly checkpointer: WalCheckpointer | null

  /** Stops the WAL checks and the checkpointer, once its checkpoint in flight is done (before the database closes). */
  async close(): Promise<void> {
    if (this.walTimer) clearInterval(this.walTimer)
    await this.checkpoints?.settled()
    await this.checkpointer?.close()
  }

  get db(): Db {
    return this.database.db
  }

  /** whether records are lexicon-validated before indexing */
  get validates(): boolean {
    return this.validate
  }

  get dialect(): DbDialect {
    return this.database.dialect
  }

  /**
   * Runs `fn` in a transaction. Accounts are indexed concurrently, so two transactions may bump the same
   * counters in different orders: on PostgreSQL a deadlock or serialization failure is retried.
   */
  async transact<T>(fn: (tx: Transaction<DatabaseSchema>) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        const out = await this.db.transaction().execute(fn)
        this.checkpoints?.wrote()
        return out
      } catch (err) {
        const code = (err as { code?: string }).code
        if (attempt >= 8 || (code !== '40P01' && code !== '40001')) throw err
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * (attempt + 1)))
      }
    }
  }

  // actors
  // =

  /** Creates the actor row if missing; true when it was created. */
  async ensureActor(did: string, db: Db = this.db): Promise<boolean> {
    const rows = await runQuery(db, this.dialect, 'INSERT INTO "actor" ("did", "handle", "indexedAt", "upstreamStatus") VALUES (?, NULL, ?, NULL) ON CONFLICT ("did") DO NOTHING RETURNING "did"', [did, this.now()])
    return rows.length > 0
  }

  /**
   * Sets the verified handle (null = invalid) and refreshes the actor's search entry. `fresh`: the actor
   * row was created just now (by ensureActor), so it has no search entry or profile yet. `ifChanged`:
   * nothing is written when the actor row holds that handle already (a re-check that found the same).
   */
  async setHandle(did: string, handle: string | null, db: Db = this.db, opts: { fresh?: boolean; ifChanged?: boolean } = {}): Promise<void> {
    if (opts.fresh) {
      // (a fresh row's handle is NULL already)
      if (handle) {
        await db.updateTable('actor').set({ handle: null }).where('handle', '=', handle).where('did', '!=', did).execute()
        await db.updateTable('actor').set({ handle }).where('did', '=', did).execute()
      }
      await this.search.setActor(db, did, handle, null, { fresh: true })
      return
    }
    if (opts.ifChanged) {
      const row = await db.selectFrom('actor').select('handle').where('did', '=', did).executeTakeFirst()
      if (row && row.handle === handle) return
    }
    await this.ensureActor(did, db)
    // a handle belongs to one account at a time
    if (handle) await db.updateTable('actor').set({ handle: null }).where('handle', '=', handle).where('did', '!=', did).execute()
    await db.updateTable('actor').set({ handle }).where('did', '=', did).execute()
    const profile = await db.selectFrom('profile').select('displayName').where('creator', '=', did).executeTakeFirst()
    await this.search.setActor(db, did, handle, profile?.displayName ?? null)
  }

  /** #account: null = active again; otherwise the status that hides the account's content. */
  async setUpstreamStatus(did: string, status: string | null, db: Db = this.db): Promise<void> {
    await this.ensureActor(did, db)
    await db.updateTable('actor').set({ upstreamStatus: status }).where('did', '=', did).execute()
  }

  // records
  // =

  /**
   * Indexes a create or update of `uri` with `record` (JSON form). Collections the AppView does not
   * index are skipped; records failing lexicon validation are not indexed ('invalid').
   */
  async indexRecord(
    db: Db,
    uri: string,
    cid: string,
    record: Record<string, unknown>,
    opts: {
      notify?: boolean
      batch?: IndexBatch
      /** the record's lexicon verdict, found already (the verifier's worker): not validated again */
      valid?: boolean
      /** JSON.stringify(record), made already */
      json?: string
    } = {},
  ): Promise<IndexResult> {
    const batch = opts.batch
    let parsed
    try {
      parsed = parseAtUri(uri)
    } catch {
      return 'invalid'
    }
    const { collection, rkey } = parsed
    if (!collection || !rkey || !INDEXED_COLLECTIONS.has(collection)) return 'skipped'
    if (!parsed.authority.startsWith('did:')) return 'invalid'
    const parts = { host: parsed.authority, collection, rkey }
    if (record.$type !== parts.collection) return 'invalid'
    if (this.validate) {
      const valid = opts.valid ?? validateRecord(parts.collection, record).valid === true
      if (!valid) return 'invalid'
    }
    let existing: { cid: string } | undefined
    const known = batch?.known.get(uri)
    if (known !== undefined) existing = known === null ? undefined : { cid: known }
    else [existing] = await runQuery<{ cid: string }>(db, this.dialect, 'SELECT "cid" FROM "record" WHERE "uri" = ?', [uri])
    if (existing?.cid === cid) return 'unchanged'
    const isUpdate = existing !== undefined
    if (isUpdate) await this.deleteRecord(db, uri, { keepNotifications: true, ...(batch ? { batch } : {}) })

    const indexedAt = this.now()
    const json = opts.json ?? JSON.stringify(record)
    if (batch) {
      batch.records.set(uri, { uri, cid, did: parts.host, collection: parts.collection, rkey: parts.rkey, json, indexedAt })
      batch.known.set(uri, cid)
    } else {
      await db.executeQuery(compileInsert(this.dialect, RECORD_INSERT_ONE, [[uri, cid, parts.host, parts.collection, parts.rkey, json, indexedAt]]))
    }
    if (batch) batch.actors.add(parts.host)
    else await this.ensureActor(parts.host, db)

    const input: RecordInput = { uri, cid, did: parts.host, collection: parts.collection, rkey: parts.rkey, record, indexedAt }
    const plan = planRecord(input)
    if (!plan) return 'indexed'

    if (plan.main.table === 'post') await this.checkGates(db, plan.main.row, batch)
    if (batch && DEFERRED_MAINS.has(plan.main.table)) {
      batch.mains.set(uri, { plan, isUpdate, notify: opts.notify !== false })
      return 'indexed'
    }

    const mainRow = plan.main.row as unknown as Record<string, unknown>
    const inserted = await insertRows(db, this.dialect, { table: plan.main.table, columns: columnsOf([mainRow]), tail: 'ON CONFLICT DO NOTHING RETURNING "uri"' }, [mainRow])
    // a duplicate (a second like of the same post...) is kept in the record table only
    if (inserted.length === 0) return 'indexed'

    if (plan.feedItem) {
      if (batch) batch.feedItems.set(uri, plan.feedItem)
      else await db.insertInto('feed_item').values(plan.feedItem).onConflict((oc) => oc.doNothing()).execute()
    }
    for (const agg of plan.aggs) {
      if (batch) batch.bump(agg, 1)
      else await this.bump(db, agg, 1)
    }
    if (!isUpdate && opts.notify !== false && plan.notifications.length > 0) {
      const notifs = plan.main.table === 'post' && plan.main.row.violatesThreadGate ? plan.notifications.filter((n) => n.reason !== 'reply') : plan.notifications
      if (batch) {
        if (notifs.length > 0) batch.notifications.set(uri, notifs)
      } else {
        for (const n of notifs) await db.insertInto('notification').values(n).onConflict((oc) => oc.doNothing()).execute()
      }
    }
    // an update went through deleteRecord above (search entry removed): insert only. A DELETE on the FTS5
    // table by its UNINDEXED uri column scans the whole table, so it is not done for every new post.
    if (plan.postText !== undefined) {
      if (batch) batch.posts.set(uri, plan.postText)
      else await this.search.setPosts(db, [{ uri, text: plan.postText }])
    }
    if (plan.main.table === 'profile') {
      const actor = await db.selectFrom('actor').select('handle').where('did', '=', parts.host).executeTakeFirst()
      await this.search.setActor(db, parts.host, actor?.handle ?? null, plan.main.row.displayName)
    }
    return 'indexed'
  }

  /**
   * Indexes many records of one account that has nothing indexed yet (a first backfill), with multi-row
   * inserts and counters added up once per batch. History: no notifications. Same outcome as calling
   * indexRecord for each (`valid`: the record's lexicon verdict, from the repo check; see repo-verify.ts);
   * returns how many were indexed. With `batch`, the record rows and the main rows of the common tables
   * (posts, likes, reposts, follows) wait for the batch's end too, as live writes do (flushRecords: one
   * multi-row statement per table and 200 rows over every repo of the batch, not one per repo), and so do
   * the feed items, search entries and counters. `actorExists`: the caller made the account's actor row
   * already (no statement for it here).
   */
  async indexFresh(db: Db, did: string, records: readonly FreshRecord[], batch?: IndexBatch, opts: { actorExists?: boolean } = {}): Promise<number> {
    const indexedAt = this.now()
    const recordRows: DatabaseSchema['record'][] = []
    const plans: IndexPlan[] = []
    for (const r of records) {
      if (!INDEXED_COLLECTIONS.has(r.collection) || !r.valid) continue
      const record = JSON.parse(r.json) as Record<string, unknown>
      if (record.$type !== r.collection) continue
      recordRows.push({ uri: r.uri, cid: r.cid, did, collection: r.collection, rkey: r.rkey, json: r.json, indexedAt })
      const plan = planRecord({ uri: r.uri, cid: r.cid, did, collection: r.collection, rkey: r.rkey, record, indexedAt })
      if (plan) plans.push(plan)
    }
    if (recordRows.length === 0) return 0
    if (!opts.actorExists && !batch?.actors.has(did)) {
      await this.ensureActor(did, db)
      batch?.actors.add(did)
    }
    if (batch) {
      for (const r of recordRows) {
        batch.records.set(r.uri, r)
        batch.known.set(r.uri, r.cid)
      }
    } else {
      await insertRows(db, this.dialect, RECORD_INSERT, recordRows)
    }
    // main rows per table; duplicates (a second like of one post) stay in the record table only
    const byTable = new Map<string, IndexPlan[]>()
    for (const plan of plans) {
      if (plan.main.table === 'post') await this.checkGates(db, plan.main.row, batch)
      if (batch && DEFERRED_MAINS.has(plan.main.table)) {
        // (history: no notifications)
        batch.mains.set(plan.main.row.uri, { plan, isUpdate: false, notify: false })
        continue
      }
      const list = byTable.get(plan.main.table)
      if (list) list.push(plan)
      else byTable.set(plan.main.table, [plan])
    }
    const own = batch ?? new IndexBatch()
    let profile: string | null | undefined
    for (const [table, list] of byTable) {
      const rows = list.map((p) => p.main.row as unknown as Record<string, unknown>)
      const inserted = await insertRows<{ uri: string }>(db, this.dialect, { table, columns: columnsOf(rows), tail: 'ON CONFLICT DO NOTHING RETURNING "uri"' }, rows)
      // every row went in (the usual case): no set needed
      const all = inserted.length === list.length
      const got = all ? null : new Set(inserted.map((r) => r.uri))
      for (const plan of list) {
        const uri = plan.main.row.uri
        if (got && !got.has(uri)) continue
        if (plan.feedItem) own.feedItems.set(uri, plan.feedItem)
        for (const agg of plan.aggs) own.bump(agg, 1)
        if (plan.postText !== undefined) own.posts.set(uri, plan.postText)
        if (plan.main.table === 'profile') profile = plan.main.row.displayName
      }
    }
    // without a batch: its rows and counters now
    if (!batch) await this.flushBatch(db, own)
    if (profile !== undefined) {
      const actor = await db.selectFrom('actor').select('handle').where('did', '=', did).executeTakeFirst()
      await this.search.setActor(db, did, actor?.handle ?? null, profile)
    }
    return recordRows.length
  }

  /** Writes what a batch collected: feed items, notifications, search entries, counters (in key order). */
  async flushBatch(db: Db, batch: IndexBatch): Promise<void> {
    if (batch.actors.size > 0) {
      // (sorted: concurrent transactions on PostgreSQL take the rows' locks in the same order)
      const indexedAt = this.now()
      await insertRows(db, this.dialect, ACTOR_INSERT, [...batch.actors].sort().map((did) => ({ did, indexedAt })))
      batch.actors.clear()
    }
    await this.flushRecords(db, batch)
    await insertRows(db, this.dialect, FEED_ITEM_INSERT, [...batch.feedItems.values()] as unknown as Record<string, unknown>[])
    const notifications = [...batch.notifications.values()].flat()
    await insertRows(db, this.dialect, NOTIFICATION_INSERT, notifications as unknown as Record<string, unknown>[])
    const posts = [...batch.posts].map(([uri, text]) => ({ uri, text }))
    await this.search.setPosts(db, posts)
    await writeAggs(db, this.dialect, aggTables([...batch.aggs.values()].filter((a) => a.n !== 0)), { clampInsert: true })
  }

  /** Inserts the record-table rows a batch holds back (multi-row). */
  async flushRecords(db: Db, batch: IndexBatch): Promise<void> {
    if (batch.records.size > 0) {
      const rows = [...batch.records.values()]
      batch.records.clear()
      await insertRows(db, this.dialect, RECORD_INSERT_ONE, rows)
    }
    await this.flushMains(db, batch)
  }

  /** Inserts the main rows a batch holds back (per table, in order) and collects what the inserted ones add. */
  private async flushMains(db: Db, batch: IndexBatch): Promise<void> {
    if (batch.mains.size === 0) return
    const byTable = new Map<string, { uri: string; plan: IndexPlan; isUpdate: boolean; notify: boolean }[]>()
    for (const [uri, e] of batch.mains) {
      const list = byTable.get(e.plan.main.table)
      if (list) list.push({ uri, ...e })
      else byTable.set(e.plan.main.table, [{ uri, ...e }])
    }
    batch.mains.clear()
    for (const [table, list] of byTable) {
      const rows = list.map((e) => e.plan.main.row as unknown as Record<string, unknown>)
      const inserted = await insertRows<{ uri: string }>(db, this.dialect, { table, columns: columnsOf(rows), tail: 'ON CONFLICT DO NOTHING RETURNING "uri"' }, rows)
      const got = inserted.length === list.length ? null : new Set(inserted.map((r) => r.uri))
      for (const { uri, plan, isUpdate, notify } of list) {
        // a duplicate (a second like of the same post...) is kept in the record table only
        if (got && !got.has(uri)) continue
        if (plan.feedItem) batch.feedItems.set(uri, plan.feedItem)
        for (const agg of plan.aggs) batch.bump(agg, 1)
        if (!isUpdate && notify && plan.notifications.length > 0) {
          const notifs = plan.main.table === 'post' && plan.main.row.violatesThreadGate ? plan.notifications.filter((n) => n.reason !== 'reply') : plan.notifications
          if (notifs.length > 0) batch.notifications.set(uri, notifs)
        }
        if (plan.postText !== undefined) batch.posts.set(uri, plan.postText)
      }
    }
  }

  /**
   * Looks up the record-table cids of `uris` (one statement per 200) into `batch.known`, so that the
   * batch's creates, updates and deletes need no lookup of their own.
   */
  async prefetch(db: Db, batch: IndexBatch, uris: Iterable<string>): Promise<void> {
    const todo = [...new Set(uris)].filter((u) => !batch.known.has(u))
    for (let i = 0; i < todo.length; i += 200) {
      const slice = todo.slice(i, i + 200)
      const rows = await runQuery<{ uri: string; cid: string }>(db, this.dialect, `SELECT "uri", "cid" FROM "record" WHERE "uri" IN (${slice.map(() => '?').join(', ')})`, slice)
      for (const u of slice) batch.known.set(u, null)
      for (const r of rows) batch.known.set(r.uri, r.cid)
    }
  }

  /** Deletes `uri`: its rows, its counters, its notifications, its search entry. */
  async deleteRecord(db: Db, uri: string, opts: { keepNotifications?: boolean; batch?: IndexBatch } = {}): Promise<boolean> {
    const batch = opts.batch
    if (batch?.known.get(uri) === null) return false
    let stored: DatabaseSchema['record'] | undefined = batch?.records.get(uri)
    if (stored) {
      // written earlier in this batch: never reached the table
      batch!.records.delete(uri)
    } else {
      stored = await db.selectFrom('record').selectAll().where('uri', '=', uri).executeTakeFirst()
      if (!stored) return false
      await db.deleteFrom('record').where('uri', '=', uri).execute()
    }
    batch?.known.set(uri, null)
    const held = batch?.mains.get(uri)
    // a held post (its uri is its only key) that notifies no one is dropped; otherwise (a like, repost or
    // follow may have made a later one of the same subject a duplicate; an update keeps the notifications
    // of the create it replaces) the held rows go in first and it is deleted like any other
    if (held && held.plan.main.table === 'post' && !(opts.keepNotifications && !held.isUpdate && held.notify && held.plan.notifications.length > 0)) {
      batch!.mains.delete(uri)
      return true
    }
    // rows held back by the batch go in before a row of the table is deleted (same conflicts as one by one)
    if (batch) await this.flushMains(db, batch)
    let plan: IndexPlan | null = null
    try {
      plan = planRecord({
        uri,
        cid: stored.cid,
        did: stored.did,
        collection: stored.collection,
        rkey: stored.rkey,
        record: JSON.parse(stored.json) as Record<string, unknown>,
        indexedAt: stored.indexedAt,
      })
    } catch {
      plan = null
    }
    if (!plan) return true
    const res = await (db as AnyDb).deleteFrom(plan.main.table).where('uri', '=', uri).where('cid', '=', stored.cid).executeTakeFirst()
    if (Number(res.numDeletedRows ?? 0) === 0) return true
    if (plan.feedItem) {
      // (written by this batch: not in the table yet)
      if (!batch?.feedItems.delete(uri)) await db.deleteFrom('feed_item').where('uri', '=', uri).execute()
    }
    for (const agg of plan.aggs) {
      if (batch) batch.bump(agg, -1)
      else await this.bump(db, agg, -1)
    }
    if (!opts.keepNotifications) {
      if (!batch?.notifications.delete(uri)) await db.deleteFrom('notification').where('recordUri', '=', uri).execute()
    }
    if (plan.postText !== undefined) {
      if (!batch?.posts.delete(uri)) await this.search.deletePost(db, uri)
    }
    if (plan.main.table === 'profile') {
      const actor = await db.selectFrom('actor').select('handle').where('did', '=', stored.did).executeTakeFirst()
      await this.search.setActor(db, stored.did, actor?.handle ?? null, null)
    }
    return true
  }

  /** Convenience for tests and admin tools: index one record in its own transaction. */
  async indexOne(uri: string, cid: string, record: Record<string, unknown>): Promise<IndexResult> {
    return this.transact((tx) => this.indexRecord(tx, uri, cid, record))
  }

  async deleteOne(uri: string): Promise<boolean> {
    return this.transact((tx) => this.deleteRecord(tx, uri))
  }

  private async bump(db: Db, agg: AggTarget, delta: number): Promise<void> {
    const keyCol = agg.table === 'profile_agg' ? 'did' : 'uri'
    const col = sql.ref(`${agg.table}.${agg.column}`)
    await (db as AnyDb)
      .insertInto(agg.table)
      .values({ [keyCol]: agg.key, [agg.column]: Math.max(delta, 0) })
      .onConflict((oc: any) => oc.column(keyCol).doUpdateSet({ [agg.column]: sql`${col} + ${delta}` }))
      .execute()
  }

  /**
   * Reply gating and quote gating, decided when the post is indexed: a reply that the root's
   * threadgate does not allow, a quote that the quoted post's postgate forbids. With `batch`, its
   * held-back rows go in only when a gate applies (see gateReadable), not for every reply and quote.
   */
  private async checkGates(db: Db, row: DatabaseSchema['post'], batch?: IndexBatch): Promise<void> {
    if (row.replyRoot) {
      const rootAuthor = didFromUri(row.replyRoot)
      if (rootAuthor && rootAuthor !== row.creator && (await this.gateReadable(db, 'threadgate', row.replyRoot, batch))) {
        const allowed = await this.replyAllowed(db, row.replyRoot, rootAuthor, row.creator)
        if (!allowed) row.violatesThreadGate = 1
      }
    }
    if (row.quoteUri) {
      const quotedAuthor = didFromUri(row.quoteUri)
      if (quotedAuthor && quotedAuthor !== row.creator && (await this.gateReadable(db, 'postgate', row.quoteUri, batch))) {
        const gate = await db
          .selectFrom('postgate')
          .innerJoin('record', 'record.uri', 'postgate.uri')
          .select('record.json')
          .where('postgate.postUri', '=', row.quoteUri)
          .executeTakeFirst()
        if (gate) {
          const g = JSON.parse(gate.json) as { embeddingRules?: { $type?: string }[] }
          if (g.embeddingRules?.some((r) => r.$type === 'app.bsky.feed.postgate#disableRule')) row.violatesEmbeddingRules = 1
        }
      }
    }
  }

  /**
   * Whether the gate check of a post in `table` (threadgate or postgate) has anything to read: a post
   * without a gate row has none, and the check is skipped. The gate tables' rows are never held back by
   * a batch (not in DEFERRED_MAINS), so this lookup sees them; the gate's record row and the rows its
   * rules read (record, follow) may be held back, so when there is a gate the batch's rows go in first.
   * Replies and quotes (about half of the network's posts) no longer cut every batch's multi-row
   * statements into pieces.
   */
  private async gateReadable(db: Db, table: 'threadgate' | 'postgate', postUri: string, batch: IndexBatch | undefined): Promise<boolean> {
    if (!batch || (batch.records.size === 0 && batch.mains.size === 0)) return true
    const [gate] = await runQuery(db, this.dialect, table === 'threadgate' ? THREADGATE_EXISTS : POSTGATE_EXISTS, [postUri])
    if (!gate) return false
    await this.flushRecords(db, batch)
    return true
  }

  /** Whether `replier` may reply in the thread of `rootUri` under its threadgate (if any). */
  async replyAllowed(db: Db, rootUri: string, rootAuthor: string, replier: string): Promise<boolean> {
    const gate = await db
      .selectFrom('threadgate')
      .innerJoin('record', 'record.uri', 'threadgate.uri')
      .select('record.json')
      .where('threadgate.postUri', '=', rootUri)
      .executeTakeFirst()
    if (!gate) return true
    const g = JSON.parse(gate.json) as { allow?: { $type?: string; list?: string }[] }
    if (!Array.isArray(g.allow)) return true
    for (const rule of g.allow) {
      switch (rule.$type) {
        case 'app.bsky.feed.threadgate#mentionRule': {
          const root = await db.selectFrom('record').select('json').where('uri', '=', rootUri).executeTakeFirst()
          if (root && mentionedDids(JSON.parse(root.json) as Record<string, unknown>).includes(replier)) return true
          break
        }
        case 'app.bsky.feed.threadgate#followerRule': {
          const f = await db.selectFrom('follow').select('uri').where('creator', '=', replier).where('subjectDid', '=', rootAuthor).executeTakeFirst()
          if (f) return true
          break
        }
        case 'app.bsky.feed.threadgate#followingRule': {
          const f = await db.selectFrom('follow').select('uri').where('creator', '=', rootAuthor).where('subjectDid', '=', replier).executeTakeFirst()
          if (f) return true
          break
        }
        case 'app.bsky.feed.threadgate#listRule': {
          if (!rule.list) break
          const item = await db.selectFrom('list_item').select('uri').where('listUri', '=', rule.list).where('subjectDid', '=', replier).executeTakeFirst()
          if (item) return true
          break
        }
      }
    }
    return false
  }
}


/** Counter moves grouped by table and key: table → key → column → delta. */
function aggTables(aggs: Iterable<{ agg: AggTarget; n: number }>): Map<string, Map<string, Record<string, number>>> {
  const tables = new Map<string, Map<string, Record<string, number>>>()
  for (const { agg, n } of aggs) {
    const rows = tables.get(agg.table) ?? new Map<string, Record<string, number>>()
    const row = rows.get(agg.key) ?? {}
    row[agg.column] = (row[agg.column] ?? 0) + n
    rows.set(agg.key, row)
    tables.set(agg.table, rows)
  }
  return tables
}

/**
 * Counters: one multi-row upsert per table, every column of a row at once, rows in key order (two
 * transactions bumping the same counters lock them in the same order: no deadlock on PostgreSQL).
 * `clampInsert`: a row created by a negative move starts at 0 (as a single decrement would leave it).
 */
async function writeAggs(db: Db, dialect: DbDialect, tables: Map<string, Map<string, Record<string, number>>>, opts: { clampInsert?: boolean } = {}): Promise<void> {
  for (const table of [...tables.keys()].sort()) {
    const rows = tables.get(table)!
    const keyCol = table === 'profile_agg' ? 'did' : 'uri'
    const columns = [...new Set([...rows.values()].flatMap((r) => Object.keys(r)))].sort()
    const keys = [...rows.keys()].sort()
    const plain: Record<string, unknown>[] = []
    for (const k of keys) {
      const r = rows.get(k)!
      if (opts.clampInsert && columns.some((c) => (r[c] ?? 0) < 0)) {
        // the increments travel apart from the inserted values when they are clamped (deletes: rare)
        await (db as AnyDb)
          .insertInto(table)
          .values({ [keyCol]: k, ...Object.fromEntries(columns.map((c) => [c, Math.max(r[c] ?? 0, 0)])) })
          .onConflict((oc: any) => oc.column(keyCol).doUpdateSet(Object.fromEntries(columns.map((c) => [c, sql`${sql.ref(`${table}.${c}`)} + ${r[c] ?? 0}`]))))
          .execute()
        continue
      }
      const row: Record<string, unknown> = { [keyCol]: k }
      for (const c of columns) row[c] = r[c] ?? 0
      plain.push(row)
    }
    const set = columns.map((c) => `${ident(c)} = ${ident(table)}.${ident(c)} + excluded.${ident(c)}`).join(', ')
    await insertRows(db, dialect, { table, columns: [keyCol, ...columns], tail: `ON CONFLICT (${ident(keyCol)}) DO UPDATE SET ${set}` }, plain)
  }
}

/** The columns of rows of one table (their keys, in a stable order). */
function columnsOf(rows: readonly Record<string, unknown>[]): string[] {
  const first = Object.keys(rows[0] ?? {})
  const cols = new Set(first)
  for (const r of rows) {
    const keys = Object.keys(r)
    if (keys.length === first.length && keys.every((k) => cols.has(k))) continue
    for (const k of keys) cols.add(k)
  }
  return [...cols].sort()
}

/** Records of a repo as the repo check hands them over (repo-verify.ts). */
export interface FreshRecord {
  uri: string
  cid: string
  collection: string
  rkey: string
  /** the record's JSON form, as a string */
  json: string
  /** passed lexicon validation (or validation is off) */
  valid: boolean
}

/** tables whose main rows a batch holds back (flushMains); the others are written at once (gateReadable counts on it for threadgate and postgate) */
const DEFERRED_MAINS: ReadonlySet<string> = new Set(['post', 'like', 'repost', 'follow'])
const THREADGATE_EXISTS = 'SELECT 1 AS "one" FROM "threadgate" WHERE "postUri" = ? LIMIT 1'
const POSTGATE_EXISTS = 'SELECT 1 AS "one" FROM "postgate" WHERE "postUri" = ? LIMIT 1'

const RECORD_INSERT: InsertShape = {
  table: 'record',
  columns: ['uri', 'cid', 'did', 'collection', 'rkey', 'json', 'indexedAt'],
  tail: 'ON CONFLICT ("uri") DO NOTHING',
}
/** one record of live ingest (a create or an update after its delete): no conflict expected */
const RECORD_INSERT_ONE: InsertShape = { table: 'record', columns: ['uri', 'cid', 'did', 'collection', 'rkey', 'json', 'indexedAt'] }
/** a batch's actors, made where missing (handle and hosting status unknown: NULL) */
const ACTOR_INSERT: InsertShape = { table: 'actor', columns: ['did', 'indexedAt'], tail: 'ON CONFLICT ("did") DO NOTHING' }
const FEED_ITEM_INSERT: InsertShape = {
  table: 'feed_item',
  columns: ['uri', 'cid', 'type', 'postUri', 'originatorDid', 'sortAt'],
  tail: 'ON CONFLICT DO NOTHING',
}
const NOTIFICATION_INSERT: InsertShape = {
  table: 'notification',
  columns: ['did', 'author', 'recordUri', 'recordCid', 'reason', 'reasonSubject', 'sortAt', 'indexedAt'],
  tail: 'ON CONFLICT DO NOTHING',
}
