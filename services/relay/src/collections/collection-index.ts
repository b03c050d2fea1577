/**
 * The index behind com.atproto.sync.listReposByCollection: for each (collection, DID), the number of
 * records the account holds in that collection, on disk (relay.sqlite), so memory stays flat however many
 * accounts and collections there are.
 *
 * Exactness: an account's counts are known from a rev on (repo_collection_state). A verified commit with a
 * newer rev adds its creates and subtracts its deletes, in the same transaction as the account's new state;
 * a collection whose count reaches 0 is removed. A first commit (`since` null) starts from an empty repo.
 * An account whose starting point is unknown (first seen mid-history, or resynchronized with #sync) is
 * backfilled: its repo is fetched from its PDS (com.atproto.sync.getRepo), verified, and counted; this runs
 * in the account's queue, so it is ordered with its events, and commits at or below the fetched rev are not
 * counted twice. New hosts are enumerated with com.atproto.sync.listRepos and their accounts backfilled.
 */
import { safeFetch } from '@stratos/core/identity'
import type SqliteDatabase from 'better-sqlite3'
import type { Db } from '../db.js'
import type { Logger } from '../logger.js'
import type { Identities } from '../ingest/identities.js'
import { fetchVerifiedRepo } from '../ingest/resync.js'

export interface CollectionIndexOptions {
  db: Db
  log: Logger
  identities: Identities
  /** runs a task in the account's ingest queue (ordered with its events) */
  runForAccount: (did: string, task: () => Promise<void>) => Promise<void>
  /** fetch repos of accounts with no known starting point (RELAY_COLLECTION_BACKFILL) */
  backfill: boolean
  allowPrivateAddresses: boolean
  maxRepoBytes: number
  /** repo fetches at once (default 4) */
  concurrency?: number
  /**
   * backfills waiting at most before a host's enumeration (listRepos) waits for room (default 10,000): the
   * queue's memory stays bounded however many repos a host lists (it may pass the bound by one page)
   */
  maxQueued?: number
}

/** most account states kept in memory (the least recently cached go first) */
const REV_CACHE_MAX = 50_000

export class CollectionIndex {
  private readonly stmts: {
    state: SqliteDatabase.Statement<[string], { rev: string }>
    setState: SqliteDatabase.Statement<[string, string]>
    dropState: SqliteDatabase.Statement<[string]>
    add: SqliteDatabase.Statement<[string, string, number]>
    dropEmpty: SqliteDatabase.Statement<[string, string]>
    dropDid: SqliteDatabase.Statement<[string]>
    page: SqliteDatabase.Statement<[string, string, number], { did: string }>
    collectionsOf: SqliteDatabase.Statement<[string], { collection: string; records: number }>
  }
  private readonly replaceTx: (did: string, rev: string, counts: Map<string, number>) => void
  /**
   * repo_collection_state as last read or written, by DID (null: no row); every commit reads it. Writes go
   * through {@link setRev} / {@link dropRev}; after a rolled-back write, {@link forgetCached} must be called.
   */
  private readonly revs = new Map<string, string | null>()
  private readonly queued = new Set<string>()
  private readonly waiting: { did: string; hostname?: string }[] = []
  private running = 0
  private idleWaiters: (() => void)[] = []
  /** host enumerations waiting for room in the queue */
  private roomWaiters: (() => void)[] = []
  private closed = false
  private backfilled = 0

  constructor(private readonly o: CollectionIndexOptions) {
    const db = o.db
    this.stmts = {
      state: db.prepare('SELECT rev FROM repo_collection_state WHERE did = ?'),
      setState: db.prepare('INSERT OR REPLACE INTO repo_collection_state (did, rev) VALUES (?, ?)'),
      dropState: db.prepare('DELETE FROM repo_collection_state WHERE did = ?'),
      add: db.prepare(
        `INSERT INTO repo_collection (collection, did, records) VALUES (?, ?, ?)
         ON CONFLICT (collection, did) DO UPDATE SET records = records + excluded.records`,
      ),
      dropEmpty: db.prepare('DELETE FROM repo_collection WHERE collection = ? AND did = ? AND records <= 0'),
      dropDid: db.prepare('DELETE FROM repo_collection WHERE did = ?'),
      // only accounts active on the relay: not taken down by the operator, not inactive upstream
      // (deactivated, suspended...). Their rows stay, so they are listed again once active.
      page: db.prepare(
        `SELECT rc.did FROM repo_collection rc
         WHERE rc.collection = ? AND rc.did > ?
           AND NOT EXISTS (SELECT 1 FROM account a WHERE a.did = rc.did AND (a.takedown != 0 OR a.upstream_active = 0))
         ORDER BY rc.did LIMIT ?`,
      ),
      collectionsOf: db.prepare('SELECT collection, records FROM repo_collection WHERE did = ? ORDER BY collection'),
    }
    this.replaceTx = db.transaction((did: string, rev: string, counts: Map<string, number>) => {
      this.stmts.dropDid.run(did)
      for (const [collection, n] of counts) if (n > 0) this.stmts.add.run(collection, did, n)
      this.setRev(did, rev)
    })
  }

  /** The rev the account's counts are exact at, or null when they are not known. */
  private indexedRev(did: string): string | null {
    const hit = this.revs.get(did)
    if (hit !== undefined) return hit
    const rev = this.stmts.state.get(did)?.rev ?? null
    this.cacheRev(did, rev)
    return rev
  }

  private setRev(did: string, rev: string): void {
    this.revs.delete(did) // (not cached if the write throws)
    this.stmts.setState.run(did, rev)
    this.cacheRev(did, rev)
  }

  /** Remembers an account's rev as stored, the least recently cached leaving first. */
  private cacheRev(did: string, rev: string | null): void {
    this.revs.set(did, rev)
    if (this.revs.size > REV_CACHE_MAX) this.revs.delete(this.revs.keys().next().value!)
  }

  private dropRev(did: string): void {
    this.revs.delete(did)
    this.stmts.dropState.run(did)
  }

  /** Drops every cached state (after a rolled-back write: what was cached inside it may not be stored). */
  forgetCached(): void {
    this.revs.clear()
  }

  /**
   * A verified commit (call inside the transaction that stores it). Returns false when the account's
   * starting point is unknown (then call {@link backfill} once the commit is stored).
   */
  applyCommit(did: string, rev: string, since: string | null | undefined, ops: readonly { action: string; path: string }[]): boolean {
    const indexed = this.indexedRev(did)
    if (indexed !== null && rev <= indexed) {
      return true // already counted (a backfill fetched a newer repo; also for a first commit replayed after it)
    } else if (since === null || since === undefined) {
      // the first commit of the repo: nothing before it
      this.stmts.dropDid.run(did)
    } else if (indexed === null) {
      return false
    }
    const delta = new Map<string, number>()
    for (const op of ops) {
      const slash = op.path.indexOf('/')
      const collection = op.path.slice(0, slash)
      if (op.action === 'create') delta.set(collection, (delta.get(collection) ?? 0) + 1)
      else if (op.action === 'delete') delta.set(collection, (delta.get(collection) ?? 0) - 1)
    }
    for (const [collection, n] of delta) {
      if (n === 0) continue
      this.stmts.add.run(collection, did, n)
      if (n < 0) this.stmts.dropEmpty.run(collection, did)
    }
    this.setRev(did, rev)
    return true
  }

  /** The account's repo as fetched and verified at `rev` (resync): its counts replace what was known. */
  replace(did: string, rev: string, counts: Map<string, number>): void {
    this.replaceTx(did, rev, counts)
  }

  /** The account's starting point is no longer known (#sync): keep its rows until a backfill replaces them. */
  invalidate(did: string): void {
    this.dropRev(did)
  }

  /** The account is gone (deleted): drop it from the index. */
  remove(did: string): void {
    this.stmts.dropDid.run(did)
    this.dropRev(did)
  }

  /** One page of active DIDs with at least one record in `collection`, in DID order, after `cursor`. */
  list(collection: string, cursor: string, limit: number): string[] {
    return this.stmts.page.all(collection, cursor, limit).map((r) => r.did)
  }

  collectionsOf(did: string): Map<string, number> {
    return new Map(this.stmts.collectionsOf.all(did).map((r) => [r.collection, r.records]))
  }

  isIndexed(did: string): boolean {
    return this.indexedRev(did) !== null
  }

  /** Queues a repo fetch for the account (once; `hostname`: only if its PDS is that host). */
  backfill(did: string, hostname?: string): void {
    if (!this.o.backfill || this.closed || this.queued.has(did)) return
    this.queued.add(did)
    this.waiting.push({ did, hostname })
    this.pump()
  }

  /** Enumerates a host's repos (com.atproto.sync.listRepos) and backfills the ones not indexed yet. */
  async backfillHost(hostname: string, baseUrl: string): Promise<number> {
    if (!this.o.backfill) return 0
    let cursor: string | undefined
    let n = 0
    const maxQueued = this.o.maxQueued ?? 10_000
    for (let page = 0; page < 10_000 && !this.closed; page++) {
      while (!this.closed && this.waiting.length >= maxQueued) await new Promise<void>((r) => this.roomWaiters.push(r))
      if (this.closed) break
      const url = new URL('/xrpc/com.atproto.sync.listRepos', baseUrl)
      url.searchParams.set('limit', '1000')
      if (cursor) url.searchParams.set('cursor', cursor)
      const res = await safeFetch(url, { timeoutMs: 30_000, maxBytes: 16 * 1024 * 1024, allowPrivateAddresses: this.o.allowPrivateAddresses })
      if (!res.ok) throw new Error(`listRepos on ${hostname} answered HTTP ${res.status}`)
      const body = JSON.parse(Buffer.from(res.body).toString('utf8')) as { repos?: { did?: unknown; active?: unknown }[]; cursor?: unknown }
      for (const r of body.repos ?? []) {
        if (typeof r.did !== 'string' || r.active === false || this.isIndexed(r.did)) continue
        this.backfill(r.did, hostname)
        n++
      }
      if (typeof body.cursor !== 'string' || !body.repos?.length || body.cursor === cursor) break
      cursor = body.cursor
    }
    return n
  }

  /** Repos fetched and counted so far, backfills queued or running. */
  stats(): { backfilled: number; pending: number } {
    return { backfilled: this.backfilled, pending: this.waiting.length + this.running }
  }

  /** Resolves once no backfill is queued or running (tests, benchmarks). */
  idle(): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve()
    return new Promise((r) => this.idleWaiters.push(r))
  }

  close(): void {
    this.closed = true
    this.waiting.length = 0
    this.wakeRoomWaiters()
  }

  private wakeRoomWaiters(): void {
    const w = this.roomWaiters
    this.roomWaiters = []
    for (const fn of w) fn()
  }

  private pump(): void {
    const max = this.o.concurrency ?? 4
    while (this.running < max && this.waiting.length > 0) {
      const job = this.waiting.shift()!
      this.running++
      void this.o
        .runForAccount(job.did, () => this.fetchAndCount(job.did, job.hostname))
        .catch((err) => this.o.log.warn({ did: job.did, err: (err as Error).message }, 'collection backfill failed'))
        .finally(() => {
          this.running--
          this.queued.delete(job.did)
          this.pump()
          if (this.running === 0 && this.waiting.length === 0) {
            const w = this.idleWaiters
            this.idleWaiters = []
            for (const fn of w) fn()
          }
        })
    }
    if (this.roomWaiters.length > 0 && this.waiting.length < (this.o.maxQueued ?? 10_000)) this.wakeRoomWaiters()
  }

  private async fetchAndCount(did: string, hostname?: string): Promise<void> {
    if (this.closed) return
    const ident = await this.o.identities.resolve(did)
    if (hostname && ident.pdsHost !== hostname) return
    if (!ident.pdsEndpoint || !ident.signingKey) return
    const repo = await fetchVerifiedRepo(ident.pdsEndpoint, did, ident.signingKey, {
      allowPrivateAddresses: this.o.allowPrivateAddresses,
      maxBytes: this.o.maxRepoBytes,
    })
    if (this.closed || !this.o.db.open) return
    const indexed = this.indexedRev(did)
    if (indexed !== null && indexed >= repo.rev) return
    this.replaceTx(did, repo.rev, repo.collections)
    this.backfilled++
    this.o.log.debug({ did, rev: repo.rev, collections: repo.collections.size }, 'collection index backfilled')
  }
}
