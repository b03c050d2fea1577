/**
 * Ingest: follows a relay and/or PDSes (com.atproto.sync.subscribeRepos) with a persisted cursor per
 * stream. One function per message type; every #commit is checked with core's sync-1.1 verifier
 * against the repo's last verified state, and repos seen for the first time, broken chains and
 * #sync events are (re)synchronized from com.atproto.sync.getRepo.
 *
 * Events are handled in stream order, except that slow work never holds the stream: a resync (getRepo
 * behind a possibly slow PDS), a first-sight identity resolution or an #identity refresh is detached,
 * and that account's later events wait behind it (they are applied after the fetched repo when their
 * rev is newer) while the stream goes on with the other accounts. The saved cursor is the highest seq
 * below which every event has been handled, so a restart replays whatever was still in flight.
 */
import type { Logger } from 'pino'
import { CID } from 'multiformats/cid'
import { cborDecode, lexToJson } from '@stratos/core/data'
import { DidResolutionError, parseDidDocument, type AtprotoIdentity, type IdentityResolver } from '@stratos/core/identity'
import {
  verifyCommitEvent,
  verifySyncEvent,
  type CommitCheckResult,
  type CommitEvent,
  type RepoState,
  type SyncEvent,
} from '@stratos/core/repo'
import { SubscriptionClient, indexCommitFrame, type CommitFrame, type StreamEvent } from '@stratos/core/stream'
import { CommitVerifier, type RecordJson } from '@stratos/core/workers'
import { HIDDEN_STATUSES, IndexBatch, type Db, type Indexer } from '../indexer/indexer.js'
import { INDEXED_COLLECTIONS } from '../indexer/records.js'
import { BatchWriter, type BatchTx } from './batch-writer.js'
import { RepoFetcher, RepoFetchError } from './repo-fetcher.js'
import { RepoVerifier } from './repo-verify.js'
import { insertRows, runQuery, type InsertShape } from '../indexer/bulk.js'
import type { DbDialect } from '@stratos/core/db'

export const SUBSCRIBE_REPOS = 'com.atproto.sync.subscribeRepos'

export interface IngestSource {
  kind: 'relay' | 'pds'
  /** base URL (http(s) or ws(s)) */
  url: string
}

export interface IngesterOptions {
  indexer: Indexer
  idResolver: IdentityResolver
  log: Logger
  sources: IngestSource[]
  /** development: fetch repos from private addresses (used when no fetcher is given) */
  allowPrivateAddresses?: boolean
  /** every getRepo goes through it (limits per host, byte-rate floor); default one with default limits */
  fetcher?: RepoFetcher
  /** events being handled at once over all accounts; the stream waits above this (default 20,000) */
  maxInFlight?: number
  /**
   * events waiting behind earlier work of their account (a first identity resolution, a resync), per
   * account (default 1,000) and over all accounts (default 10,000). Above either bound the event is
   * dropped and the account is resynced from getRepo as soon as its queue reaches that point.
   */
  maxPerAccount?: number
  maxBuffered?: number
  /**
   * While `maxBuffered` events are buffered and the buffer is draining (a buffered event was handled within
   * this long: its account's earlier work is verification and writes, as in a burst or a catch-up after a
   * restart), the stream waits for room instead of dropping (default 1,000 ms). A buffer that has not
   * drained for this long is stuck (accounts behind slow resyncs or identities): events over the bound are
   * dropped at once, as before, until a buffered event is handled again.
   */
  bufferStallMs?: number
  /** a DID seen for the first time whose document cannot be fetched is tried again after these delays (default 0.5 s, 2 s, 5 s) */
  identityRetryDelaysMs?: number[]
  /** a fallback resync that fails is tried again after these delays (default 5 s, 30 s, 2 min, 10 min) */
  resyncRetryDelaysMs?: number[]
  /** verifies #commit events in worker threads when it has any (default: in this thread) */
  verifier?: CommitVerifier
  /**
   * #commit frames are not decoded in this thread (default true): each is checked as the frame decoder
   * checks it, read in place (repo, rev, since, ops) and verified from its body's bytes (handed to the
   * verifier's worker as they are). false: decoded here first (the reference path, for tests).
   */
  rawFrames?: boolean
  /**
   * worker threads that verify fetched repos (getRepo CARs) and turn their records into JSON (default:
   * as many as the verifier has; 0: in this thread)
   */
  repoWorkers?: number
  /**
   * first backfills of repos go through the batch writer, several repos per transaction (default true;
   * false: one transaction per repo, several at once on PostgreSQL). Measured here with 300 repos of 25
   * records: 1,104 vs 464 records/s on SQLite, 1,018 vs 395 on PostgreSQL.
   */
  batchBackfills?: boolean
  /** verified commits written per transaction at most (default 500) */
  maxBatch?: number
  /**
   * under load (the last transaction held at least 2 records), a transaction waits up to this long for
   * more writes while they keep coming, up to 1,000 records (default 10 ms; 0: never): fewer, larger
   * transactions (see BatchWriterOptions.lingerMs). First backfills of repos wait longer, for up to
   * 10,000 records while no live write is queued (BatchWriterOptions.bulkUntil)
   */
  batchLingerMs?: number
  /** how often the cursor is saved (default 1 s) */
  cursorFlushMs?: number
  /** reconnect backoff (tests make it short) */
  minBackoffMs?: number
  maxBackoffMs?: number
  /**
   * A handle that does not verify is checked again after each of these delays (the failure may be
   * transient: a DID directory, DNS or PDS that was slow or down). Default 2 s, 10 s, 1 min, 5 min, 30 min.
   */
  handleRetryDelaysMs?: number[]
}

const DEFAULT_HANDLE_RETRY_DELAYS_MS = [2_000, 10_000, 60_000, 5 * 60_000, 30 * 60_000]
const DEFAULT_IDENTITY_RETRY_DELAYS_MS = [500, 2_000, 5_000]
const DEFAULT_RESYNC_RETRY_DELAYS_MS = [5_000, 30_000, 2 * 60_000, 10 * 60_000]
/** accounts whose last verified repo state (and hosting status) is kept in memory */
const STATE_CACHE_SIZE = 100_000

/** A Map that forgets its oldest entries above `max`. */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super()
  }
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= this.max) this.delete(this.keys().next().value as K)
    return super.set(key, value)
  }
}

/** A #commit as received: decoded, or indexed in its frame's bytes (the raw-frame path). */
type CommitInput = { evt: CommitEvent; frame?: undefined } | { evt?: undefined; frame: CommitFrame }

/** An op of a verified commit, as the indexer takes it. */
interface CommitOp {
  action: string
  path: string
  cid: string | null
}

/** What a commit handed to the batch writer: its outcome once the batch has committed. */
interface Pending {
  committed: Promise<IngestOutcome>
}

/** accounts with a fallback resync pending, at most (more are resynced at their next commit) */
const MAX_PENDING_RESYNCS = 10_000
/** accounts with a handle re-check pending, at most (more are not re-checked until their next #identity) */
const MAX_HANDLE_RETRIES = 10_000

export type IngestOutcome = 'indexed' | 'ignored' | 'resynced' | 'dropped'

/** Runs tasks for one key one at a time (different keys run concurrently). */
export class KeyedQueue {
  private readonly tails = new Map<string, { tail: Promise<unknown>; size: number }>()
  /** tasks queued or running for `key` */
  size(key: string): number {
    return this.tails.get(key)?.size ?? 0
  }
  get keys(): number {
    return this.tails.size
  }
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const entry = this.tails.get(key) ?? { tail: Promise.resolve(), size: 0 }
    const next = entry.tail.then(fn, fn)
    const tail = next.catch(() => undefined)
    entry.tail = tail
    entry.size++
    this.tails.set(key, entry)
    void tail.then(() => {
      entry.size--
      if (entry.size === 0 && this.tails.get(key) === entry) this.tails.delete(key)
    })
    return next
  }
}

/** Seqs of one stream in arrival order, to know the highest seq below which everything is handled. */
class SeqTracker {
  private items: { seq: number; done: boolean }[] = []
  private head = 0
  add(seq: number): { seq: number; done: boolean } {
    const item = { seq, done: false }
    this.items.push(item)
    return item
  }
  /** Drops the handled prefix; the last seq of it, if any. */
  advance(): number | undefined {
    let last: number | undefined
    while (this.head < this.items.length && this.items[this.head]!.done) last = this.items[this.head++]!.seq
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return last
  }
  get pending(): number {
    return this.items.length - this.head
  }
}

function eventDid(evt: Pick<StreamEvent, 't' | 'body'>, commit: CommitFrame | undefined): string | undefined {
  const v = evt.t === '#commit' ? (commit ? commit.repo : evt.body.repo) : evt.body.did
  return typeof v === 'string' ? v : undefined
}

function originOf(url: string): string {
  const u = new URL(url)
  const proto = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol
  return `${proto}//${u.host}`
}

export class Ingester {
  readonly stats = {
    commits: 0,
    indexedOps: 0,
    resyncs: 0,
    resyncFailures: 0,
    resyncedRecords: 0,
    dropped: 0,
    /** events dropped because their account (or all accounts together) had too many waiting */
    overflowed: 0,
    /** fallback resyncs scheduled (after an overflow or an identity that could not be fetched) */
    fallbackResyncs: 0,
    identityRetries: 0,
    identity: 0,
    account: 0,
    sync: 0,
  }
  /** dropped events by reason (the reason without its message: `commit rejected (bad-signature)`) */
  readonly dropReasons = new Map<string, number>()
  readonly fetcher: RepoFetcher
  readonly verifier: CommitVerifier | undefined
  /** the raw-frame path's verifier: the given one, or one that checks in this thread */
  private readonly bytesVerifier: CommitVerifier
  readonly repoVerifier: RepoVerifier
  private readonly clients: SubscriptionClient[] = []
  /** group commit of verified commits */
  readonly writer: BatchWriter<WriteBatch>
  /**
   * Per account, the last verified repo state, ahead of the database while its batch is in flight
   * (the account's next commit is checked against it without waiting), and the hosting status.
   */
  private readonly repoStates = new BoundedMap<string, RepoState>(STATE_CACHE_SIZE)
  private readonly actorStatus = new BoundedMap<string, string | null>(STATE_CACHE_SIZE)
  /** per account, its last write handed to the batch writer (other writes of it wait for it) */
  private readonly lastWrite = new Map<string, Promise<unknown>>()
  private readonly pendingCursor = new Map<string, number>()
  private readonly savedCursor = new Map<string, number>()
  private readonly trackers = new Map<string, SeqTracker>()
  readonly queue = new KeyedQueue()
  private inFlight = 0
  /** events queued behind earlier work of their account */
  private buffered = 0
  /** when a buffered event was last handled, and the stream's waits for that (bufferRoom) */
  private drainedAt = 0
  private readonly drainWaiters: (() => void)[] = []
  /** the buffer was full and did not drain for bufferStallMs: no waiting until a buffered event is handled */
  private bufferStuck = false
  private readonly slotWaiters: (() => void)[] = []
  private readonly idleWaiters: (() => void)[] = []
  /** accounts whose events were lost (overflow, identity not fetched): resynced before their next commit */
  private readonly needsResync = new Set<string>()
  /** accounts with a fallback resync queued or waiting for a retry */
  private readonly pendingResyncs = new Map<string, NodeJS.Timeout | null>()
  /** accounts whose handle did not verify: the next re-check */
  private readonly handleRetries = new Map<string, { attempt: number; timer: NodeJS.Timeout }>()
  private stopped = false
  private flushTimer: NodeJS.Timeout | null = null
  private readonly indexer: Indexer
  private readonly idResolver: IdentityResolver
  private readonly log: Logger

  constructor(private readonly opts: IngesterOptions) {
    this.indexer = opts.indexer
    this.idResolver = opts.idResolver
    this.log = opts.log
    this.fetcher = opts.fetcher ?? new RepoFetcher({ allowPrivateAddresses: opts.allowPrivateAddresses ?? false })
    this.verifier = opts.verifier
    this.bytesVerifier = opts.verifier ?? new CommitVerifier({ workers: 0 })
    this.repoVerifier = new RepoVerifier({
      workers: opts.repoWorkers ?? opts.verifier?.workers ?? 0,
      onWorkerError: (err, index) => this.log.error({ err, worker: index }, 'a repo verification worker died; restarted'),
    })
    this.writer = new BatchWriter<WriteBatch>({
      transact: (fn) => this.indexer.transact(fn),
      begin: () => ({ index: new IndexBatch(), repoStates: new Map() }),
      prepare: (tx, b, uris) => this.indexer.prefetch(tx, b.index, uris),
      end: async (tx, b) => {
        await this.indexer.flushBatch(tx, b.index)
        await saveRepoStates(tx, this.indexer.dialect, [...b.repoStates.values()])
      },
      maxBatch: opts.maxBatch ?? 500,
      lingerMs: opts.batchLingerMs ?? 10,
    })
  }

  private get db(): Db {
    return this.indexer.db
  }

  start(): void {
    for (const source of this.opts.sources) {
      const key = source.url
      const client = new SubscriptionClient({
        url: `${source.url.replace(/\/+$/, '')}/xrpc/${SUBSCRIBE_REPOS}`,
        getCursor: () => this.getCursor(key),
        ...(this.opts.rawFrames === false ? {} : { rawTypes: ['#commit'] }),
        onEvent: (evt) => this.dispatch(source, key, evt),
        onInfo: (info) => this.log.info({ source: key, info }, 'stream info'),
        onError: (err) => this.log.warn({ source: key, err: err.message }, 'stream error'),
        onOpen: () => this.log.info({ source: key }, 'subscribed'),
        minBackoffMs: this.opts.minBackoffMs,
        maxBackoffMs: this.opts.maxBackoffMs,
      })
      client.start()
      this.clients.push(client)
    }
    if (this.clients.length > 0) {
      this.flushTimer = setInterval(() => void this.flushCursors().catch(() => undefined), this.opts.cursorFlushMs ?? 1000)
      this.flushTimer.unref()
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const w of this.drainWaiters.splice(0)) w()
    for (const r of this.handleRetries.values()) clearTimeout(r.timer)
    this.handleRetries.clear()
    for (const t of this.pendingResyncs.values()) if (t) clearTimeout(t)
    if (this.flushTimer) clearInterval(this.flushTimer)
    this.flushTimer = null
    await Promise.all(this.clients.map((c) => c.stop()))
    this.clients.length = 0
    // fetches in flight are abandoned (their events are replayed after a restart: the cursor stayed below them)
    this.fetcher.abortAll()
    await this.idle(10_000)
    await this.flushCursors()
    await this.repoVerifier.close()
  }

  /** Events being handled (or waiting for their account). */
  get eventsInFlight(): number {
    return this.inFlight
  }

  /** Resolves when no event is being handled (or after `timeoutMs`). */
  idle(timeoutMs = 30_000): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs)
      timer.unref()
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.idleWaiters.push(done)
    })
  }

  /** Events queued behind earlier work of their account (bounded by maxPerAccount and maxBuffered). */
  get eventsBuffered(): number {
    return this.buffered
  }

  /**
   * Hands an event to its account's queue without waiting for it; waits only when too many events are
   * in flight. An event that would wait behind its account's earlier work is kept (bounded per account
   * and over all accounts); above the bounds it is dropped and the account is resynced from getRepo in
   * its turn, so nothing it published is lost for good.
   */
  private async dispatch(source: IngestSource, key: string, evt: StreamEvent): Promise<void> {
    while (this.inFlight >= (this.opts.maxInFlight ?? 20_000)) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve))
    }
    let tracker = this.trackers.get(key)
    if (!tracker) {
      tracker = new SeqTracker()
      this.trackers.set(key, tracker)
    }
    const item = evt.seq !== undefined ? tracker.add(evt.seq) : null
    // a #commit left undecoded by the client: read in place (checked by the client as a decode would)
    const commit = evt.t === '#commit' && evt.bodyStart !== undefined ? indexCommitFrame(evt.frame, evt.bodyStart) : undefined
    const did = eventDid(evt, commit)
    if (did !== undefined && this.buffered >= (this.opts.maxBuffered ?? 10_000) && this.queue.size(did) > 0) await this.bufferRoom()
    const behind = did !== undefined && this.queue.size(did) > 0
    this.inFlight++
    if (behind) this.buffered++
    // (handled: false for an event dropped at once, which is no sign that the buffer drains)
    const finish = (handled = true) => {
      this.inFlight--
      if (behind) {
        this.buffered--
        if (handled) {
          this.drainedAt = performance.now()
          this.bufferStuck = false
          if (this.drainWaiters.length > 0) for (const w of this.drainWaiters.splice(0)) w()
        }
      }
      if (item) {
        item.done = true
        const seq = tracker.advance()
        if (seq !== undefined) this.pendingCursor.set(key, Math.max(seq, this.pendingCursor.get(key) ?? this.savedCursor.get(key) ?? 0))
      }
      this.slotWaiters.shift()?.()
      if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w()
    }
    if (behind && (this.queue.size(did) >= (this.opts.maxPerAccount ?? 1000) || this.buffered > (this.opts.maxBuffered ?? 10_000))) {
      // the account is stuck (a slow resync or identity) or too many accounts are: this event goes, and
      // the account is fetched whole after what it has queued (which covers this event and its neighbours)
      this.stats.overflowed++
      this.drop('too many events waiting', did)
      this.scheduleResync(did)
      finish(false)
      return
    }
    let detach: () => void = () => undefined
    const detached = new Promise<void>((resolve) => (detach = resolve))
    const task = this.handleEvent(source, evt, detach, commit)
      .catch((err) => this.log.warn({ did, seq: evt.seq, err: (err as Error).message }, 'event handling failed'))
      .finally(() => finish())
    // behind earlier work of its account (a resync): the event waits there, the stream does not
    if (did && this.queue.size(did) > 1) return
    await Promise.race([task, detached])
  }

  /**
   * The buffer is full (maxBuffered): waits while it drains, until there is room for one more event (see
   * bufferStallMs); returns when it stops draining (the caller's drop rule applies then).
   */
  private async bufferRoom(): Promise<void> {
    const max = this.opts.maxBuffered ?? 10_000
    const stall = this.opts.bufferStallMs ?? 1000
    const t0 = performance.now()
    while (this.buffered >= max && !this.bufferStuck && !this.stopped) {
      // draining: an event handled since this wait began, or within the stall window before it
      const left = Math.max(this.drainedAt, t0) + stall - performance.now()
      if (left <= 0) {
        this.bufferStuck = true
        return
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left)
        function done() {
          clearTimeout(timer)
          resolve()
        }
        this.drainWaiters.push(done)
      })
    }
  }

  get connected(): boolean {
    return this.clients.length > 0 && this.clients.every((c) => c.connected)
  }

  async getCursor(source: string): Promise<number | undefined> {
    const pending = this.pendingCursor.get(source) ?? this.savedCursor.get(source)
    if (pending !== undefined) return pending
    const row = await this.db.selectFrom('ingest_cursor').select('seq').where('source', '=', source).executeTakeFirst()
    return row ? Number(row.seq) : undefined
  }

  async flushCursors(): Promise<void> {
    const entries = [...this.pendingCursor.entries()]
    for (const [source, seq] of entries) {
      const updatedAt = new Date().toISOString()
      await this.db
        .insertInto('ingest_cursor')
        .values({ source, seq, updatedAt })
        .onConflict((oc) => oc.column('source').doUpdateSet({ seq, updatedAt }))
        .execute()
      this.savedCursor.set(source, seq)
      if (this.pendingCursor.get(source) === seq) this.pendingCursor.delete(source)
    }
  }

  /**
   * Routes one stream message to its handler (unknown types are ignored), in its account's queue.
   * `detach` is called before slow work (network fetches): the caller stops waiting for this event then.
   */
  async handleEvent(source: IngestSource | null, evt: Pick<StreamEvent, 't' | 'body'>, detach: () => void = () => undefined, commit?: CommitFrame): Promise<IngestOutcome> {
    if (evt.t === '#commit') {
      const input: CommitInput = commit ? { frame: commit } : { evt: evt.body as unknown as CommitEvent }
      const did = commit ? (commit.repo ?? '') : typeof evt.body.repo === 'string' ? evt.body.repo : ''
      // the account's next event starts once this one is verified and handed to the batch writer;
      // this event is done when its batch has committed
      const r = await this.queue.run(did, () => this.checkCommit(source, input, detach))
      return typeof r === 'string' ? r : r.committed
    }
    const body = evt.body
    switch (evt.t) {
      case '#sync': {
        const did = typeof body.did === 'string' ? body.did : ''
        return this.queue.run(did, () => this.handleSync(source, body as unknown as SyncEvent, detach))
      }
      case '#identity': {
        const did = typeof body.did === 'string' ? body.did : ''
        return this.queue.run(did, () => {
          detach()
          return this.handleIdentity(did)
        })
      }
      case '#account': {
        const did = typeof body.did === 'string' ? body.did : ''
        return this.queue.run(did, () => this.handleAccount(did, body.active === true, typeof body.status === 'string' ? body.status : undefined))
      }
      default:
        return 'ignored'
    }
  }

  // #identity / #account
  // =

  async handleIdentity(did: string): Promise<IngestOutcome> {
    if (!did.startsWith('did:')) return 'dropped'
    this.stats.identity++
    try {
      await this.idResolver.resolveDid(did, { forceRefresh: true })
    } catch (err) {
      this.log.warn({ did, err: (err as Error).message }, 'identity refresh failed')
    }
    // new identity: the re-checks start over
    this.cancelHandleRetry(did)
    await this.refreshHandle(did)
    return 'indexed'
  }

  async handleAccount(did: string, active: boolean, status: string | undefined): Promise<IngestOutcome> {
    if (!did.startsWith('did:')) return 'dropped'
    this.stats.account++
    await this.written(did)
    this.actorStatus.delete(did)
    // an account first seen through #account (its #identity missed or dropped upstream) gets its handle
    // verified too, after this event (the check goes over the network; the stream does not wait for it)
    if (await this.indexer.ensureActor(did)) this.scheduleHandleCheck(did, 0)
    if (active) {
      await this.indexer.setUpstreamStatus(did, null)
    } else {
      const s = status ?? 'deactivated'
      // desynchronized / throttled do not hide content
      await this.indexer.setUpstreamStatus(did, HIDDEN_STATUSES.has(s) ? s : s === 'desynchronized' || s === 'throttled' ? null : s)
    }
    return 'indexed'
  }

  private async refreshHandle(did: string, forceRefresh = false, fresh = false): Promise<void> {
    const check = await this.checkHandle(did, forceRefresh)
    await this.indexer.setHandle(did, check.handle, undefined, fresh ? { fresh } : { ifChanged: true })
    this.handleChecked(did, check)
  }

  /**
   * The account's verified handle, or null (invalid, or not verified now). `retry`: it did not verify
   * while the DID document claims one (maybe transient: checked again later); a document that claims no
   * handle at all has nothing to retry until it changes (an #identity event).
   */
  private async checkHandle(did: string, forceRefresh = false): Promise<HandleCheck> {
    // (the identity parsed once per cached document: verifyHandle would parse it again)
    let id: AtprotoIdentity
    try {
      id = await this.resolveIdentity(did, forceRefresh)
    } catch {
      return { handle: null, retry: true }
    }
    if (!id.handle) return { handle: null, retry: false }
    try {
      // bidirectional: the claimed handle resolves back to the DID
      const resolved = await this.idResolver.resolveHandle(id.handle)
      return resolved === did ? { handle: id.handle, retry: false } : { handle: null, retry: true }
    } catch {
      return { handle: null, retry: true }
    }
  }

  /** After a handle check: a claimed handle that did not verify is checked again later. */
  private handleChecked(did: string, check: HandleCheck): void {
    if (!check.retry) {
      this.cancelHandleRetry(did)
    } else {
      // maybe transient (a slow or unreachable DID directory, DNS or PDS): checked again later
      const attempt = (this.handleRetries.get(did)?.attempt ?? 0) + 1
      const delays = this.opts.handleRetryDelaysMs ?? DEFAULT_HANDLE_RETRY_DELAYS_MS
      if (attempt <= delays.length) this.scheduleHandleCheck(did, delays[attempt - 1]!, attempt)
      else this.cancelHandleRetry(did)
    }
  }

  /** Verifies the account's handle again after `delayMs`, in the account's queue. */
  private scheduleHandleCheck(did: string, delayMs: number, attempt = 0): void {
    if (this.stopped) return
    const existing = this.handleRetries.get(did)
    if (existing) clearTimeout(existing.timer)
    else if (this.handleRetries.size >= MAX_HANDLE_RETRIES) return
    const timer = setTimeout(() => {
      if (this.stopped) return
      void this.queue
        .run(did, () => this.refreshHandle(did, attempt > 0))
        .catch((err) => this.log.warn({ did, err: (err as Error).message }, 'handle re-check failed'))
    }, delayMs)
    timer.unref()
    this.handleRetries.set(did, { attempt, timer })
  }

  private cancelHandleRetry(did: string): void {
    const existing = this.handleRetries.get(did)
    if (existing) clearTimeout(existing.timer)
    this.handleRetries.delete(did)
  }

  /** Creates the actor on first sight, with its verified handle. */
  private async ensureActor(did: string): Promise<void> {
    const created = await this.indexer.ensureActor(did)
    if (created) await this.refreshHandle(did, false, true)
  }

  // #commit
  // =

  /** parsed identities per DID document object (the resolver's cache hands back the same object) */
  private readonly parsedIdentities = new WeakMap<object, AtprotoIdentity>()

  /** The account's atproto identity, parsed once per cached document. */
  private async resolveIdentity(did: string, forceRefresh = false): Promise<AtprotoIdentity> {
    const doc = await this.idResolver.resolveDid(did, forceRefresh ? { forceRefresh: true } : {})
    if (!doc) throw new DidResolutionError('not-found', `DID not found: ${did}`)
    const hit = this.parsedIdentities.get(doc)
    if (hit) return hit
    const id = parseDidDocument(doc, did)
    this.parsedIdentities.set(doc, id)
    return id
  }

  /**
   * The account's identity for checking its events. A failure to fetch the DID document (a slow or
   * unreachable DID directory: a new account's first events) is retried a few times while the
   * account's later events wait (the stream does not: `detach`), then the account is left to a fallback
   * resync.
   */
  private async identityFor(source: IngestSource | null, did: string, detach: () => void = () => undefined): Promise<AtprotoIdentity | null> {
    let id: AtprotoIdentity | undefined
    // (once a fallback resync is pending, the account's waiting events are not held up again: it covers them)
    const delays = !this.pendingResyncs.has(did) ? (this.opts.identityRetryDelaysMs ?? DEFAULT_IDENTITY_RETRY_DELAYS_MS) : []
    for (let attempt = 0; id === undefined; attempt++) {
      try {
        id = await this.resolveIdentity(did, attempt > 0)
      } catch (err) {
        // a DID that does not exist (or cannot) is final; a directory that timed out or failed is not
        const code = (err as { code?: string }).code
        const notFound = code === 'not-found' || code === 'bad-syntax' || code === 'unsupported-method'
        if (!notFound && attempt < delays.length && !this.stopped) {
          this.stats.identityRetries++
          detach()
          await new Promise((r) => setTimeout(r, delays[attempt]))
          continue
        }
        this.log.warn({ did, err: (err as Error).message }, 'cannot resolve identity; event dropped')
        // not fetched (not a DID that does not exist): the account is fetched whole later
        if (!notFound) this.scheduleResync(did)
        return null
      }
    }
    if (!id.signingKey || !id.pdsEndpoint) return null
    if (source?.kind === 'pds') {
      try {
        if (originOf(id.pdsEndpoint) !== originOf(source.url)) {
          this.log.warn({ did, pds: id.pdsEndpoint, source: source.url }, 'event not from the account\'s PDS; dropped')
          return null
        }
      } catch {
        return null
      }
    }
    return id
  }

  private async repoState(did: string): Promise<RepoState | null> {
    const cached = this.repoStates.get(did)
    if (cached) return cached
    const row = await this.db.selectFrom('repo_state').select(['rev', 'data']).where('did', '=', did).executeTakeFirst()
    return row ? { rev: row.rev, data: CID.parse(row.data) } : null
  }

  /** Resolves once the account's writes handed to the batch writer so far have committed. */
  private async written(did: string): Promise<void> {
    const last = this.lastWrite.get(did)
    if (last) await last.catch(() => undefined)
  }

  /** Handles one #commit and waits for its write to commit. */
  async handleCommit(source: IngestSource | null, evt: CommitEvent, detach: () => void = () => undefined): Promise<IngestOutcome> {
    const r = await this.checkCommit(source, { evt }, detach)
    return typeof r === 'string' ? r : r.committed
  }

  /**
   * Checks one #commit against the account's last verified state and hands its writes to the batch
   * writer (then `detach`es: the stream goes on while the batch commits).
   */
  private async checkCommit(source: IngestSource | null, input: CommitInput, detach: () => void = () => undefined): Promise<IngestOutcome | Pending> {
    const { evt, frame } = input
    const did: unknown = frame ? frame.repo : evt.repo
    if (typeof did !== 'string' || !did.startsWith('did:')) return this.drop('malformed #commit')
    this.stats.commits++
    let actor: { upstreamStatus: string | null } | undefined
    if (this.actorStatus.has(did)) actor = { upstreamStatus: this.actorStatus.get(did)! }
    else {
      actor = await this.db.selectFrom('actor').select('upstreamStatus').where('did', '=', did).executeTakeFirst()
      if (actor) this.actorStatus.set(did, actor.upstreamStatus)
    }
    if (actor?.upstreamStatus && HIDDEN_STATUSES.has(actor.upstreamStatus)) return this.drop('account inactive', did)
    // a DID never seen: resolving it (and maybe fetching its repo) goes over the network
    if (!actor) detach()
    const identity = await this.identityFor(source, did, detach)
    if (!identity) return this.drop('no usable identity', did)
    if (!actor) {
      await this.ensureActor(did)
      this.actorStatus.set(did, null)
    }

    let prev = await this.repoState(did)
    const overflowed = this.needsResync.delete(did)
    const hasSince = frame ? frame.hasSince() : evt.since !== null && evt.since !== undefined
    if (overflowed || (!prev && hasSince)) {
      // first sight of an existing repo (or events lost while it was stuck): fetch it whole, then apply
      // this commit on top if newer. Only this account waits: later events of it queue behind.
      detach()
      const ok = await this.resyncNow(did, identity)
      if (!ok) return 'dropped'
      prev = await this.repoState(did)
      const rev: unknown = frame ? frame.rev() : evt.rev
      if (prev && typeof rev === 'string' && prev.rev >= rev) return 'resynced'
    }

    let res = await this.verifyCommit(did, input, identity.signingKey!, prev, detach)
    if (!res.ok && res.reason === 'bad-signature') {
      const fresh = await this.idResolver.resolveAtprotoData(did, { forceRefresh: true }).catch(() => null)
      if (fresh?.signingKey && fresh.signingKey !== identity.signingKey) {
        res = await this.verifyCommit(did, input, fresh.signingKey, prev, detach)
      }
    }
    if (!res.ok) {
      if (res.reason === 'rev-not-newer') return 'ignored'
      if (res.reason === 'chain-break') {
        this.log.info({ did, message: res.message }, 'commit chain broken; resyncing')
        detach()
        await this.markDesynchronized(did)
        return (await this.resyncNow(did, identity)) ? 'resynced' : 'dropped'
      }
      return this.drop(`commit rejected (${res.reason})`, did, res.message)
    }
    // checked: the account's next commit chains on this state now, before the batch commits
    const state: RepoState = { rev: res.rev, data: res.newData }
    this.repoStates.set(did, state)
    // (verified: every op is a map with string action and path, cid a CID or null)
    const ops: CommitOp[] = frame ? frame.ops() : evt.ops.map((op) => ({ action: op.action, path: op.path, cid: op.cid ? op.cid.toString() : null }))
    const uris: string[] = []
    for (const op of ops) {
      const slash = op.path.indexOf('/')
      if (INDEXED_COLLECTIONS.has(op.path.slice(0, slash))) uris.push(`at://${did}/${op.path}`)
    }
    const rev = res.rev
    const committed = this.writer.write((tx, batch) => this.applyCommit(tx, batch, did, ops, res), uris, Math.max(1, ops.length))
    this.lastWrite.set(did, committed)
    detach()
    return {
      committed: committed.then(
        () => {
          if (this.lastWrite.get(did) === committed) this.lastWrite.delete(did)
          return 'indexed' as const
        },
        (err) => {
          if (this.lastWrite.get(did) === committed) this.lastWrite.delete(did)
          // the state in memory is ahead of the database: the next commit sees the break and resyncs
          if (this.repoStates.get(did) === state) this.repoStates.delete(did)
          this.log.warn({ did, rev, err: (err as Error).message }, 'commit could not be written')
          return this.drop('write failed', did)
        },
      ),
    }
  }

  /**
   * core's sync-1.1 check of a #commit, in a worker thread when there are any (the stream goes on
   * meanwhile: `detach`; the account's next event waits in its queue), else in this thread.
   */
  private async verifyCommit(did: string, input: CommitInput, signingKey: string, prev: RepoState | null, detach: () => void): Promise<VerifiedCommit> {
    if (input.frame) {
      // the body's bytes as received (the worker decodes them; in this thread without workers)
      if (this.bytesVerifier.workers > 0) detach()
      // (the records decoded to JSON and lexicon-checked there too, not in this thread)
      const res = await this.bytesVerifier.verifyCommitBytes(did, input.frame.body, { signingKey, prev, now: Date.now(), withRecords: 'json', validateRecords: this.indexer.validates })
      if (!res.ok) return res
      return { ok: true, rev: res.rev, newData: res.newData, commitCid: res.commitCid, records: new Map(), recordsJson: res.recordsJson ?? new Map() }
    }
    const evt = input.evt
    if (!this.verifier || this.verifier.workers === 0) {
      const res = await verifyCommitEvent(evt, { signingKey, prev })
      if (!res.ok) return res
      return { ok: true, rev: res.commit.rev, newData: res.newData, commitCid: res.commitCid, records: res.records }
    }
    detach()
    const res = await this.verifier.verifyCommit(did, evt, { signingKey, prev, now: Date.now(), withRecords: true })
    if (!res.ok) return res
    return { ok: true, rev: res.rev, newData: res.newData, commitCid: res.commitCid, records: res.records ?? new Map() }
  }

  private async applyCommit(tx: BatchTx, batch: WriteBatch, did: string, ops: readonly CommitOp[], res: Extract<VerifiedCommit, { ok: true }>): Promise<void> {
    {
      for (const op of ops) {
        const slash = op.path.indexOf('/')
        const collection = op.path.slice(0, slash)
        if (!INDEXED_COLLECTIONS.has(collection)) continue
        const uri = `at://${did}/${op.path}`
        if (op.action === 'delete') {
          await this.indexer.deleteRecord(tx, uri, { batch: batch.index })
        } else if (op.action === 'create' || op.action === 'update') {
          if (!op.cid) continue
          let r
          if (res.recordsJson) {
            // decoded and checked in the verifier's worker
            const rec = res.recordsJson.get(op.path)
            if (!rec) continue
            r = await this.indexer.indexRecord(tx, uri, op.cid, JSON.parse(rec.json) as Record<string, unknown>, { batch: batch.index, valid: rec.valid, json: rec.json })
          } else {
            const bytes = res.records.get(op.path)
            if (!bytes) continue
            let json: Record<string, unknown>
            try {
              json = lexToJson(cborDecode(bytes)) as Record<string, unknown>
            } catch {
              continue
            }
            r = await this.indexer.indexRecord(tx, uri, op.cid, json, { batch: batch.index })
          }
          if (r === 'indexed') this.stats.indexedOps++
        }
      }
      batch.repoStates.set(did, { did, rev: res.rev, data: res.newData.toString(), commitCid: res.commitCid.toString() })
    }
  }

  private async saveRepoState(db: Db, did: string, rev: string, data: string, commitCid: string): Promise<void> {
    const updatedAt = new Date().toISOString()
    await db
      .insertInto('repo_state')
      .values({ did, rev, data, commitCid, syncStatus: 'synchronized', updatedAt })
      .onConflict((oc) => oc.column('did').doUpdateSet({ rev, data, commitCid, syncStatus: 'synchronized', updatedAt }))
      .execute()
  }

  private async markDesynchronized(did: string): Promise<void> {
    await this.written(did)
    await this.db.updateTable('repo_state').set({ syncStatus: 'desynchronized' }).where('did', '=', did).execute()
  }

  private drop(reason: string, did?: string, message?: string): IngestOutcome {
    this.stats.dropped++
    this.dropReasons.set(reason, (this.dropReasons.get(reason) ?? 0) + 1)
    this.log.debug({ did, reason, ...(message !== undefined ? { message } : {}) }, 'event dropped')
    return 'dropped'
  }

  // #sync
  // =

  async handleSync(source: IngestSource | null, evt: SyncEvent, detach: () => void = () => undefined): Promise<IngestOutcome> {
    const did = evt.did
    if (typeof did !== 'string' || !did.startsWith('did:')) return this.drop('malformed #sync')
    this.stats.sync++
    const identity = await this.identityFor(source, did, detach)
    if (!identity) return this.drop('no usable identity', did)
    await this.ensureActor(did)
    const prev = await this.repoState(did)
    let res = await verifySyncEvent(evt, { signingKey: identity.signingKey!, prev })
    if (!res.ok && res.reason === 'bad-signature') {
      const fresh = await this.idResolver.resolveAtprotoData(did, { forceRefresh: true }).catch(() => null)
      if (fresh?.signingKey) res = await verifySyncEvent(evt, { signingKey: fresh.signingKey, prev })
    }
    if (!res.ok) {
      if (res.reason === 'rev-not-newer') return 'ignored'
      return this.drop(`#sync rejected (${res.reason})`, did, res.message)
    }
    if (!res.changed) return 'ignored'
    detach()
    await this.markDesynchronized(did)
    return (await this.resyncNow(did, identity)) ? 'resynced' : 'dropped'
  }

  // backfill / resync
  // =

  /**
   * The fallback when events of an account were lost here (dropped above the buffering bounds, or its
   * identity could not be fetched): the account is resynced from getRepo in its queue (after the events
   * it already has queued, before those that come next), retried with backoff if that fails. At most
   * one is pending per account; the account is also resynced before its next commit.
   */
  private scheduleResync(did: string, attempt = 0): void {
    this.needsResync.add(did)
    if (this.stopped || this.pendingResyncs.has(did)) return
    if (this.pendingResyncs.size >= MAX_PENDING_RESYNCS) return
    if (attempt === 0) this.stats.fallbackResyncs++
    const run = () => {
      if (this.stopped) return
      this.inFlight++
      void this.queue
        .run(did, async () => {
          this.pendingResyncs.delete(did)
          // done meanwhile (by the account's next commit)
          if (!this.needsResync.has(did)) return
          if (await this.resyncNow(did)) {
            this.needsResync.delete(did)
            return
          }
          const delays = this.opts.resyncRetryDelaysMs ?? DEFAULT_RESYNC_RETRY_DELAYS_MS
          if (attempt < delays.length) this.scheduleResync(did, attempt + 1)
        })
        .catch((err) => this.log.warn({ did, err: (err as Error).message }, 'fallback resync failed'))
        .finally(() => {
          this.inFlight--
          this.slotWaiters.shift()?.()
          if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w()
        })
    }
    if (attempt === 0) {
      this.pendingResyncs.set(did, null)
      run()
    } else {
      const delays = this.opts.resyncRetryDelaysMs ?? DEFAULT_RESYNC_RETRY_DELAYS_MS
      const timer = setTimeout(run, delays[attempt - 1])
      timer.unref()
      this.pendingResyncs.set(did, timer)
    }
  }

  /**
   * Resynchronizes one account now, in its turn: after the events of it already queued, before the
   * ones that come next (admin backfill, network backfill).
   */
  resync(did: string, opts: ResyncOptions = {}): Promise<boolean> {
    return this.queue.run(did, () => this.resyncNow(did, undefined, opts))
  }

  /**
   * What the index holds of an account, in one statement: its repo state, whether it has an actor row
   * and any record (a resync reads it once, in the account's queue, before fetching).
   */
  private async accountSnapshot(did: string): Promise<AccountSnapshot> {
    const dialect = this.indexer.dialect
    const ofDid = recordsOfDid(dialect, did)
    const [row] = await runQuery<{ rev: string | null; data: string | null; syncStatus: string | null; actor: unknown; records: unknown }>(this.db, dialect, accountSnapshotSql(dialect), [
      did,
      ...ofDid.params,
      did,
    ])
    const prev = row && row.rev !== null && row.data !== null ? { rev: row.rev, data: CID.parse(row.data) } : null
    // (EXISTS: 0/1 on SQLite, a boolean on PostgreSQL)
    return { prev, syncStatus: row?.syncStatus ?? null, actor: !!row?.actor && row.actor !== '0', records: !!row?.records && row.records !== '0' }
  }

  /**
   * Fetches the whole repo from the account's PDS (com.atproto.sync.getRepo, through the fetcher's
   * limits), verifies it, and brings the indexed records in line with it: new and changed records
   * indexed, missing ones deleted. Runs inside the account's queue. `opts.listedRev`: nothing is done
   * when the account is synchronized at that rev or later already (a backfill's listed repo).
   */
  private async resyncNow(did: string, known?: AtprotoIdentity, opts: ResyncOptions = {}): Promise<boolean> {
    // the account's batched writes first: the fetched repo is compared with what they leave
    await this.written(did)
    this.repoStates.delete(did)
    // (read once here: while this account's queue waits for the resync, nothing else writes its rows)
    const snap = await this.accountSnapshot(did)
    if (opts.listedRev !== undefined && opts.listedRev !== null && snap.syncStatus === 'synchronized' && snap.prev && snap.prev.rev >= opts.listedRev) return true
    this.stats.resyncs++
    const ok = await this.fetchAndApply(did, known, opts, snap)
    if (!ok) {
      this.stats.resyncFailures++
      await this.markDesynchronized(did)
    }
    return ok
  }

  private async fetchAndApply(did: string, known: AtprotoIdentity | undefined, opts: ResyncOptions, snap: AccountSnapshot): Promise<boolean> {
    let identity = known
    if (!identity) {
      try {
        identity = await this.resolveIdentity(did)
      } catch (err) {
        this.log.warn({ did, err: (err as Error).message }, 'resync: identity not resolved')
        return false
      }
    }
    if (!identity.pdsEndpoint || !identity.signingKey) return false
    // an account first seen through a backfill gets its verified handle too: checked now, written with
    // its records (a first backfill: in the batch writer's transaction) or before them
    const newHandle = snap.actor ? undefined : await this.checkHandle(did)
    let actorWritten = newHandle === undefined
    const writeActor = async (db: Db) => {
      actorWritten = true
      if (newHandle !== undefined && (await this.indexer.ensureActor(did, db))) await this.indexer.setHandle(did, newHandle.handle, db, { fresh: true })
    }
    try {
      return await this.fetchVerifyApply(did, identity, opts, snap, actorWritten ? null : writeActor)
    } finally {
      if (!actorWritten) await writeActor(this.db)
      if (newHandle !== undefined) this.handleChecked(did, newHandle)
    }
  }

  /** getRepo, the repo check, then the index brought in line with it; `writeActor`: a new account's actor row and handle. */
  private async fetchVerifyApply(did: string, identity: AtprotoIdentity, opts: ResyncOptions, snap: AccountSnapshot, writeActor: ((db: Db) => Promise<void>) | null): Promise<boolean> {
    const pds = identity.pdsEndpoint!
    const retries = opts.retries ?? 0
    const fetchRepo = async (): Promise<Uint8Array | null> => {
      for (let attempt = 0; ; attempt++) {
        try {
          const car = await this.fetcher.getRepo(pds, did, { queue: opts.waitForHost ? 'wait' : 'refuse' })
          opts.onFetched?.(car.byteLength)
          return car
        } catch (err) {
          const retry = err instanceof RepoFetchError && err.retryable && attempt < retries
          this.log.warn({ did, err: (err as Error).message, attempt, retry }, 'resync: getRepo failed')
          if (!retry) return null
          await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 10_000)))
        }
      }
    }
    const car = await fetchRepo()
    if (!car) return false
    const validate = this.indexer.validates
    let verified = await this.repoVerifier.verify({ car, did, signingKey: identity.signingKey!, validate })
    if (!verified.ok && verified.reason === 'bad-signature') {
      // the key may have changed: the document fetched again, the repo checked again (the CAR went to
      // the worker: fetched again too)
      const fresh = await this.idResolver.resolveAtprotoData(did, { forceRefresh: true }).catch(() => null)
      if (!fresh?.signingKey) return false
      const again = await fetchRepo()
      if (!again) return false
      verified = await this.repoVerifier.verify({ car: again, did, signingKey: fresh.signingKey, validate })
    }
    if (!verified.ok) {
      this.log.warn({ did, err: verified.message }, 'resync: repo did not verify')
      return false
    }
    const prev = snap.prev
    if (prev && prev.rev > verified.rev) {
      // the index already holds a later state (live commits got there first)
      this.log.debug({ did, have: prev.rev, got: verified.rev }, 'resync: fetched repo is older than the indexed state')
      return true
    }
    const state = { did, rev: verified.rev, data: verified.data, commitCid: verified.commitCid }
    const batchBackfill = this.opts.batchBackfills ?? true
    if (batchBackfill && prev === null && !snap.records) {
      // a first backfill: nothing to compare with; every record goes in with multi-row inserts, in the
      // batch writer (the repos fetched meanwhile share its transaction, their counters summed once)
      const fresh = verified.records
      let n = 0
      const written = this.writer.write(async (tx, batch) => {
        if (writeActor) await writeActor(tx)
        // (the actor row: there before, or made by writeActor just now)
        n = await this.indexer.indexFresh(tx, did, fresh, batch.index, { actorExists: true })
        batch.repoStates.set(did, state)
      }, undefined, Math.max(1, fresh.length), true)
      this.lastWrite.set(did, written)
      try {
        await written
      } finally {
        if (this.lastWrite.get(did) === written) this.lastWrite.delete(did)
      }
      this.stats.resyncedRecords += n
      return true
    }
    if (writeActor) await writeActor(this.db)
    await this.indexer.transact(async (tx) => {
      const existing = new Map<string, string>()
      const ofDid = recordsOfDid(this.indexer.dialect, did)
      const rows = await runQuery<{ uri: string; cid: string }>(tx, this.indexer.dialect, `SELECT "uri", "cid" FROM "record" WHERE ${ofDid.where}`, ofDid.params)
      for (const r of rows) existing.set(r.uri, r.cid)
      if (prev === null && existing.size === 0) {
        // a first backfill: nothing to compare with, every record goes in with multi-row inserts
        // (read after the await: transactions of several accounts run at once on PostgreSQL)
        const n = await this.indexer.indexFresh(tx, did, verified.records, undefined, { actorExists: true })
        this.stats.resyncedRecords += n
        await this.saveRepoState(tx, did, state.rev, state.data, state.commitCid)
        return
      }
      // the changes go through a batch, as live commits do: what the record table holds is known from the
      // lookup above (no statement per record), rows go in with multi-row inserts, counters are summed
      const batch = new IndexBatch()
      for (const [uri, cid] of existing) batch.known.set(uri, cid)
      const gone = new Set(existing.keys())
      for (const rec of verified.records) {
        gone.delete(rec.uri)
        if (!existing.has(rec.uri)) batch.known.set(rec.uri, null)
      }
      // what left the repo goes first: a like, repost or follow of a subject whose earlier one left (a
      // row the new one would conflict with) is indexed, not kept as a duplicate of a row deleted after it
      for (const uri of gone) await this.indexer.deleteRecord(tx, uri, { batch })
      for (const rec of verified.records) {
        const uri = rec.uri
        const cid = rec.cid
        if (existing.get(uri) === cid) continue
        // (the lexicon verdict is the repo check's: failed validation is not indexed)
        const json = JSON.parse(rec.json) as Record<string, unknown>
        // a first backfill is history and does not notify; a resync notifies what it finds new
        const r = await this.indexer.indexRecord(tx, uri, cid, json, { notify: prev !== null, batch, valid: rec.valid, json: rec.json })
        if (r === 'indexed') this.stats.resyncedRecords++
      }
      await this.indexer.flushBatch(tx, batch)
      await this.saveRepoState(tx, did, state.rev, state.data, state.commitCid)
    })
    return true
  }
}

/** What the index holds of an account when its resync starts (accountSnapshot). */
interface AccountSnapshot {
  prev: RepoState | null
  syncStatus: string | null
  /** it has an actor row */
  actor: boolean
  /** it has a record in the record table */
  records: boolean
}

/**
 * An account's rows of the record table: a condition on it and the condition's parameters. SQLite: a range
 * of the URI key (migration 013 dropped record_did_collection_idx): a DID has no '/', so the URIs starting
 * with 'at://<did>/' are that account's and no other's, and '0' is the byte after '/'. PostgreSQL: the did
 * column and its index (kept there: text keys sort by the database's collation, not necessarily by bytes).
 */
export function recordsOfDid(dialect: DbDialect, did: string): { where: string; params: string[] } {
  return dialect === 'sqlite' ? { where: '"uri" >= ? AND "uri" < ?', params: [`at://${did}/`, `at://${did}0`] } : { where: '"did" = ?', params: [did] }
}

const accountSnapshotSql = (dialect: DbDialect) =>
  'SELECT s."rev" AS "rev", s."data" AS "data", s."syncStatus" AS "syncStatus", ' +
  `EXISTS (SELECT 1 FROM "actor" WHERE "did" = ?) AS "actor", EXISTS (SELECT 1 FROM "record" WHERE ${recordsOfDid(dialect, '').where}) AS "records" ` +
  'FROM (SELECT 1 AS "one") AS "o" LEFT JOIN "repo_state" AS s ON s."did" = ?'

export interface ResyncOptions {
  /** the rev a backfill listed the repo at: nothing is done when the account is synchronized at it or later */
  listedRev?: string | null
  /** getRepo retries after a retryable failure (default 0) */
  retries?: number
  /** told the CAR's size once fetched (the backfill's bound on bytes in flight) */
  onFetched?: (bytes: number) => void
  /** wait for a slot on the PDS host even when its fetch queue is full (the backfill bounds its own fetches) */
  waitForHost?: boolean
}

/** What one batch of live writes shares: the index's pending rows and each account's last repo state. */
interface WriteBatch {
  index: IndexBatch
  repoStates: Map<string, { did: string; rev: string; data: string; commitCid: string }>
}

/** The accounts' repo states of a batch, one multi-row upsert per 200 accounts. */
async function saveRepoStates(db: Db, dialect: DbDialect, rows: { did: string; rev: string; data: string; commitCid: string }[]): Promise<void> {
  const updatedAt = new Date().toISOString()
  await insertRows(db, dialect, REPO_STATE_UPSERT, rows.map((r) => ({ ...r, syncStatus: 'synchronized', updatedAt })))
}

const REPO_STATE_UPSERT: InsertShape = {
  table: 'repo_state',
  columns: ['did', 'rev', 'data', 'commitCid', 'syncStatus', 'updatedAt'],
  tail: 'ON CONFLICT ("did") DO UPDATE SET "rev" = excluded."rev", "data" = excluded."data", "commitCid" = excluded."commitCid", "syncStatus" = excluded."syncStatus", "updatedAt" = excluded."updatedAt"',
}

/** A handle check: the verified handle (null: none), and whether to check again later. */
interface HandleCheck {
  handle: string | null
  retry: boolean
}

/** A #commit's verdict, from either path: what indexing it needs. */
type VerifiedCommit =
  | { ok: true; rev: string; newData: CID; commitCid: CID; records: Map<string, Uint8Array>; recordsJson?: Map<string, RecordJson> }
  | { ok: false; reason: string; message: string }
