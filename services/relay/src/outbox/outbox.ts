/**
 * The relay's outbound com.atproto.sync.subscribeRepos: its own seq, a durable event log (table
 * `relay_event` in relay.sqlite) with retention by age and bytes, and one SubscriptionServer that sends
 * each event's bytes, encoded once, to every consumer (replay, OutdatedCursor, FutureCursor and
 * ConsumerTooSlow are the core SubscriptionServer's).
 *
 * Group commit: events emitted close together (by default, during one turn of the event loop; see
 * `batchDelayMs`) are appended in ONE transaction together with the account-state changes they carry. The
 * database runs with `synchronous = NORMAL` (the COMMIT writes the WAL without an fsync, so the event loop
 * never waits for the disk); the batch is made durable by an fdatasync of the WAL on libuv's thread pool
 * (core's WalGroupSync, one fsync shared by every batch committed meanwhile), and only then published, in seq
 * order. The guarantees are those of one transaction per event:
 *   - durable before published: nothing is handed to a consumer (firehose, replay, Jetstream) before the WAL
 *     sync that covers its transaction has completed; replays read the log only up to `publishedSeq`;
 *   - no gap, no duplicate: seqs are assigned consecutively inside the transaction; batches are published in
 *     commit order once synced, each in one synchronous step (`publishedSeq` moves in that same step);
 *   - a failed WAL sync is fatal: the batch (and everything after it) is never published, its `emit`s reject,
 *     the outbox refuses further events and `onSyncError` is called (the relay exits: crash-only, a restart
 *     resumes from the durable host cursors);
 *   - one event's failure is its own: each event's state change and the encoding of its frame run in a
 *     savepoint, so an event whose update or encoding throws is rolled back alone (its seq goes to the next
 *     event) and its `emit` rejects; the others commit. The log rows of the events that succeeded are then
 *     written with one multi-row insert. If that or the commit fails, every event of the batch rejects and
 *     none is published.
 * `emit` resolves once the event is durable and published (so the host cursor, which moves once an event
 * is handled, never passes an event that is not on disk). Events are appended in the order of the `emit`
 * calls, so the ingester may verify an account's next commit before the previous one is durable (it checks
 * the stored state in `update`, see ingester.ts).
 */
import { closeSync, existsSync, fsyncSync, openSync } from 'node:fs'
import { dirname, resolve as resolvePath } from 'node:path'
import {
  SqliteEventLog,
  SubscriptionServer,
  WalCheckpointSchedule,
  WriteHold,
  WalGroupSync,
  type WalCheckpointer,
  decodeFrame,
  encodeMessageFrame,
  type ConsumerInfo,
  type AssignedEvent,
  type LoggedEvent,
  type OutboundCommit,
} from '@stratos/core/stream'
import { MultiRowStatement } from '@stratos/core/db'
import type SqliteDatabase from 'better-sqlite3'
import type { Db } from '../db.js'

export type OutboundType = '#commit' | '#sync' | '#identity' | '#account'

export interface OutboxOptions {
  replayWindowMs: number
  replayMaxBytes: number | undefined
  maxQueuedBytes: number
  maxQueuedFrames: number
  pingIntervalMs?: number
  onConsumerClose?: (consumer: ConsumerInfo, reason: string) => void
  onError?: (err: unknown) => void
  /**
   * Group commit window: 0 (default) flushes at the end of the current event-loop turn (setImmediate), so
   * every event emitted while the loop was busy shares one transaction without adding latency; > 0 waits
   * that many milliseconds after the first pending event.
   */
  batchDelayMs?: number
  /** most events in one transaction (default 1000); a full batch is written at once */
  maxBatchSize?: number
  /** called after a write was rolled back (an event's savepoint or a whole batch): state cached from it is stale */
  onRollback?: () => void
  /**
   * Makes every batch committed before the call durable. Default: for a file database, an fdatasync of its
   * WAL on the thread pool (core's WalGroupSync); none for an in-memory one. Tests inject failures here.
   */
  syncWal?: () => Promise<void>
  /**
   * The WAL sync failed: committed events may not be on disk. They are never published; the outbox is
   * closed to new events. The caller must not go on as if they were durable (the relay exits).
   */
  onSyncError?: (err: unknown) => void
  /**
   * Checkpoints the database's WAL in a worker thread (core's WalCheckpointer) every `checkpointEvery`
   * events instead of SQLite's automatic checkpoints, which run inside a COMMIT on the event loop (copying
   * the WAL into the database file and fsyncing both: tens of milliseconds every ~1,000 WAL pages, the
   * latency tail of every event waiting behind it). File databases only.
   */
  checkpointer?: WalCheckpointer
  /** events appended between two checkpoints (default 1000: a #commit frame takes about half a WAL page) */
  checkpointEvery?: number
  /**
   * One checkpoint in this many (default 8) holds the batch writes back while it copies the end of the WAL, so
   * that the WAL restarts; the others copy alongside the writes. A hold stalls every event behind the worker's
   * two fsyncs (5–300 ms measured on a loaded machine, once per 1,000 events with a hold at every checkpoint).
   */
  checkpointsPerRestart?: number
}

/** An event's state change threw in a batch written without savepoints: write it again with them. */
class RetryWithSavepoints extends Error {
  constructor(
    /** the event's index in the batch */
    readonly index: number,
    /** what it threw */
    readonly error: unknown,
  ) {
    super('an event of the batch failed')
  }
}

/** An event as published (after its commit): what derived streams (Jetstream) are built from. */
export interface PublishedEvent {
  seq: number
  /** the Jetstream clock of the event: its first Jetstream event has this time_us, the next ones +1, +2... */
  timeUs: number
  type: OutboundType
  did: string
  body: Record<string, unknown>
}

/** Jetstream events an outbound event becomes: one per op of a #commit, one otherwise. */
export function jetstreamSpan(type: string, body: Record<string, unknown>): number {
  return type === '#commit' && Array.isArray(body.ops) ? Math.max(1, body.ops.length) : 1
}

/** A transaction's outcome, waiting for the WAL sync that makes it durable before it is published. */
interface CommittedBatch {
  items: PendingEvent[]
  /** per item, its logged event or its error; null when the whole transaction failed (`error`) */
  results: { evt?: LoggedEvent; err?: unknown }[] | null
  error?: unknown
  ready: boolean
}

interface PendingEvent {
  type: OutboundType
  did: string
  /** the body to encode, or null when `encoded` holds the frame (built from the upstream bytes) */
  body: Record<string, unknown> | null
  encoded: OutboundCommit | null
  update: (() => void) | undefined
  timeUs?: number
  resolve: (evt: LoggedEvent) => void
  reject: (err: unknown) => void
}

/** Counters of the event-log writes (for metrics and benchmarks). */
export interface OutboxWriteStats {
  /** transactions committed */
  batches: number
  /** events appended */
  events: number
  /** events rejected (their update or encoding failed, or the commit failed) */
  failed: number
  /** milliseconds spent in the write transactions (the commit writes the WAL, without an fsync) */
  txMs: number
  /** WAL fdatasyncs done (on the thread pool; one covers every batch committed before it began) */
  syncs: number
  /**
   * batches written a second time, with a savepoint per event: the first write (no savepoints) was rolled back
   * because an event's state change or frame threw
   */
  rewritten: number
}

/** A published event whose body is decoded from its frame only if a listener reads it. */
function lazyPublished(evt: LoggedEvent, timeUs: number, type: OutboundType, did: string): PublishedEvent {
  let body: Record<string, unknown> | undefined
  return {
    seq: evt.seq,
    timeUs,
    type,
    did,
    get body() {
      if (!body) {
        const f = decodeFrame(evt.frame)
        body = f.op === 1 ? f.body : {}
      }
      return body
    },
  }
}

export class Outbox {
  readonly log: SqliteEventLog
  readonly server: SubscriptionServer
  private retentionTimer: NodeJS.Timeout | null = null
  private pending: PendingEvent[] = []
  private flushScheduled: NodeJS.Immediate | NodeJS.Timeout | null = null
  private closed = false
  private readonly writeBatch: (items: PendingEvent[]) => { evt?: LoggedEvent; err?: unknown }[]
  private readonly stats_: OutboxWriteStats = { batches: 0, events: 0, failed: 0, txMs: 0, syncs: 0, rewritten: 0 }
  /** committed (or failed) batches not yet published / settled, in commit order */
  private unpublished: CommittedBatch[] = []
  /** a microtask will publish the batches whose sync has completed */
  private publishScheduled = false
  /** every event up to this seq is durable and was published; replays read no further */
  private publishedSeq_: number
  private readonly walSync: WalGroupSync | null = null
  private readonly syncWal: (() => Promise<void>) | null
  /** the last WAL sync started (settled on close) */
  private lastSync: Promise<void> = Promise.resolve()
  private syncError: unknown = null
  /** next free Jetstream µs (strictly increasing across restarts) */
  private nextTimeUs: number
  private readonly listeners: ((evt: PublishedEvent) => void)[] = []
  /** the WAL's checkpoints, in a worker (null: SQLite's automatic ones) */
  private readonly checkpoints: WalCheckpointSchedule | null = null
  /** while held, batches are not written (the end of a checkpoint); a flush waits for it */
  private readonly writeHold = new WriteHold()
  /** a flush waits for the hold to end */
  private flushAfterHold = false
  private readonly timeStmts: {
    insert: MultiRowStatement
    pruneBelow: SqliteDatabase.Statement<[number]>
    pruneAll: SqliteDatabase.Statement<[]>
  }

  constructor(
    private readonly db: Db,
    private readonly opts: OutboxOptions,
  ) {
    this.log = new SqliteEventLog(db, { table: 'relay_event' })
    const log = this.log
    this.server = new SubscriptionServer({
      // the head is the last seq ever assigned, so a cursor stays "past" (not FutureCursor) after retention
      // has emptied the log
      // (published: a seq assigned but not yet durable is never read nor announced)
      log: {
        latestSeq: async () => this.publishedSeq_ || null,
        earliestSeq: () => log.earliestSeq(),
        readAfter: async (seq, limit) => {
          const cap = this.publishedSeq_
          const rows = await log.readAfter(seq, limit)
          let n = rows.length
          while (n > 0 && rows[n - 1]!.seq > cap) n--
          return n === rows.length ? rows : rows.slice(0, n)
        },
      },
      maxQueuedBytes: opts.maxQueuedBytes,
      maxQueuedFrames: opts.maxQueuedFrames,
      pingIntervalMs: opts.pingIntervalMs,
      onConsumerClose: opts.onConsumerClose,
      onError: (err) => opts.onError?.(err),
    })
    if (opts.syncWal) this.syncWal = opts.syncWal
    else if (!db.memory) {
      // what a previous run committed without its sync (killed in between) is made durable before it is served
      syncFilesNow([db.name, `${db.name}-wal`, dirname(resolvePath(db.name))])
      const walSync = new WalGroupSync(`${db.name}-wal`)
      this.walSync = walSync
      this.syncWal = () => walSync.sync()
    } else this.syncWal = null
    if (opts.checkpointer && !db.memory) {
      this.checkpoints = new WalCheckpointSchedule(db, opts.checkpointer, {
        everyWrites: opts.checkpointEvery ?? 1000,
        exclusiveEvery: opts.checkpointsPerRestart ?? 8,
        // the rest of the WAL is copied with the batch writes held back, so that the WAL restarts
        exclusive: (fn) => this.writeHold.run(fn),
      })
    }
    this.publishedSeq_ = log.lastAssignedSeq()
    const last = db.prepare('SELECT MAX(time_us) AS t FROM relay_event_time').get() as { t: number | null }
    this.nextTimeUs = (last.t ?? 0) + 1
    this.timeStmts = {
      insert: new MultiRowStatement(db, 'INSERT OR REPLACE INTO relay_event_time (seq, time_us)', 2),
      pruneBelow: db.prepare('DELETE FROM relay_event_time WHERE seq < ?'),
      pruneAll: db.prepare('DELETE FROM relay_event_time'),
    }
    // an event with a state change: the change and its frame in a savepoint of the batch transaction, so that
    // a failure rolls back this event alone
    const withUpdate = db.transaction((item: PendingEvent, seq: number): Uint8Array => this.build(item, seq))
    // the batch: each event's change and frame in turn, seqs assigned to the events that succeed; then the log
    // rows and their Jetstream times, one multi-row insert each. `failed` null: the events' changes run
    // without a savepoint each (two statements fewer per event); the first one that throws rolls the whole
    // transaction back (RetryWithSavepoints) and the batch is written again with savepoints, that event failed
    // with its error without running again, so the outcome is the one of a write with savepoints: that event
    // alone fails.
    const batch = (items: PendingEvent[], failed: RetryWithSavepoints | null): { evt?: LoggedEvent; err?: unknown }[] => {
      const savepoints = failed !== null
      let seq = log.lastAssignedSeq()
      const results: { evt?: LoggedEvent; err?: unknown }[] = []
      const rows: AssignedEvent[] = []
      const times: number[] = []
      for (let i = 0; i < items.length; i++) {
        const item = items[i]!
        if (failed !== null && i === failed.index) {
          results.push({ err: failed.error })
          continue
        }
        try {
          const frame = item.update && savepoints ? withUpdate(item, seq + 1) : this.build(item, seq + 1)
          seq++
          rows.push({ seq, type: item.type, did: item.did, time: Math.floor(item.timeUs! / 1000), frame })
          times.push(seq, item.timeUs!)
          results.push({ evt: { seq, frame } })
        } catch (err) {
          // SQLite aborted the whole transaction (disk full, I/O error...): fail the batch, not just this event
          if (!db.inTransaction) throw err
          if (!savepoints && item.update) throw new RetryWithSavepoints(i, err)
          this.opts.onRollback?.()
          results.push({ err })
        }
      }
      log.appendAssigned(rows)
      this.timeStmts.insert.run(times)
      return results
    }
    type WriteBatch = (items: PendingEvent[]) => { evt?: LoggedEvent; err?: unknown }[]
    type Careful = (items: PendingEvent[], failed: RetryWithSavepoints) => { evt?: LoggedEvent; err?: unknown }[]
    const optimistic = db.transaction((items: PendingEvent[]) => batch(items, null)).immediate as WriteBatch
    const careful = db.transaction((items: PendingEvent[], failed: RetryWithSavepoints) => batch(items, failed)).immediate as Careful
    this.writeBatch = (items) => {
      try {
        return optimistic(items)
      } catch (err) {
        if (!(err instanceof RetryWithSavepoints)) throw err
        // rolled back: what the events' changes cached is stale
        this.opts.onRollback?.()
        this.stats_.rewritten++
        return careful(items, err)
      }
    }
  }

  /** Runs the event's state change, then builds its frame with `seq` and sets its Jetstream time. */
  private build(item: PendingEvent, seq: number): Uint8Array {
    item.update?.()
    const timeUs = Math.max(Date.now() * 1000, this.nextTimeUs)
    const encoded = item.encoded
    const frame = encoded ? encoded.withSeq(seq) : encodeMessageFrame(item.type, { seq, ...item.body })
    this.nextTimeUs = timeUs + (encoded ? Math.max(1, encoded.opCount) : jetstreamSpan(item.type, item.body!))
    item.timeUs = timeUs
    return frame
  }

  /**
   * Appends an event with the next seq, running `update` (account state changes) in the same transaction,
   * then publishes it; resolves with the logged event once it is durable and published (rejects if its
   * update or the write failed: then nothing of it is stored or sent). The body is encoded once, with its
   * seq, and those bytes are what every consumer and every later replay gets. Events emitted close together
   * share one transaction (group commit, see the module comment).
   */
  emit(type: OutboundType, did: string, body: Record<string, unknown>, update?: () => void): Promise<LoggedEvent> {
    if (this.closed) return Promise.reject(this.closedError())
    return this.enqueue(type, did, body, null, update)
  }

  /**
   * `emit` for a `#commit` whose frame is already built (from the upstream frame's bytes, see core's
   * CommitFrame): only its seq is written at append time. Listeners get the body decoded from the frame.
   */
  emitCommitFrame(did: string, frame: OutboundCommit, update?: () => void): Promise<LoggedEvent> {
    if (this.closed) return Promise.reject(this.closedError())
    return this.enqueue('#commit', did, null, frame, update)
  }

  private enqueue(
    type: OutboundType,
    did: string,
    body: Record<string, unknown> | null,
    encoded: OutboundCommit | null,
    update: (() => void) | undefined,
  ): Promise<LoggedEvent> {
    return new Promise<LoggedEvent>((resolve, reject) => {
      this.pending.push({ type, did, body, encoded, update, resolve, reject })
      if (this.pending.length >= (this.opts.maxBatchSize ?? 1000)) this.flush()
      else this.scheduleFlush()
    })
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    const delay = this.opts.batchDelayMs ?? 0
    this.flushScheduled = delay > 0 ? setTimeout(() => this.flush(), delay) : setImmediate(() => this.flush())
  }

  /**
   * Writes the pending events now (one transaction); they are published, in seq order, once the WAL sync
   * that covers them has completed.
   */
  flush(): void {
    if (this.flushScheduled) {
      clearTimeout(this.flushScheduled as NodeJS.Timeout)
      clearImmediate(this.flushScheduled as NodeJS.Immediate)
      this.flushScheduled = null
    }
    if (this.pending.length === 0) return
    if (this.writeHold.held) {
      // a checkpoint is copying the end of the WAL: write once it is done
      if (!this.flushAfterHold) {
        this.flushAfterHold = true
        void this.writeHold.held.then(() => {
          this.flushAfterHold = false
          this.flush()
        })
      }
      return
    }
    const items = this.pending
    this.pending = []
    if (this.syncError !== null) {
      for (const item of items) item.reject(this.closedError())
      return
    }
    let results: { evt?: LoggedEvent; err?: unknown }[]
    const start = performance.now()
    // the first write after a checkpoint that left the whole WAL in the database file restarts the WAL: SQLite
    // would fsync its new header inside the COMMIT, on the event loop; the WAL sync below covers it with the
    // batch before anything relies on it (see WalCheckpointSchedule.restartPending)
    const syncsOff = this.syncWal !== null && (this.checkpoints?.restartPending ?? false)
    if (syncsOff) this.db.pragma('synchronous = OFF')
    try {
      results = this.writeBatch(items)
    } catch (err) {
      // the transaction did not commit: nothing of the batch is stored (its emits reject in commit order)
      this.opts.onRollback?.()
      this.unpublished.push({ items, results: null, error: err, ready: true })
      this.publishReady()
      return
    } finally {
      if (syncsOff) this.db.pragma('synchronous = NORMAL')
    }
    this.checkpoints?.wrote(items.length)
    this.stats_.txMs += performance.now() - start
    this.stats_.batches++
    const batch: CommittedBatch = { items, results, ready: this.syncWal === null }
    this.unpublished.push(batch)
    if (this.syncWal === null) {
      this.publishReady()
      return
    }
    this.lastSync = this.syncWal().then(
      () => {
        batch.ready = true
        this.schedulePublish()
      },
      (err) => this.syncFailed(err),
    )
  }

  /**
   * Publishes (or settles) the batches at the head of the queue whose sync has completed, in order, together:
   * their events go to each consumer in one write.
   */
  private publishReady(): void {
    let n = 0
    while (n < this.unpublished.length && this.unpublished[n]!.ready && this.syncError === null) n++
    if (n > 0) this.publish(this.unpublished.splice(0, n))
  }

  /**
   * Publishes once the microtasks queued so far have run: one WAL sync completes every batch it covers,
   * each in its own microtask, so those batches are published together.
   */
  private schedulePublish(): void {
    if (this.publishScheduled) return
    this.publishScheduled = true
    queueMicrotask(() => {
      this.publishScheduled = false
      this.publishReady()
    })
  }

  private publish(batches: CommittedBatch[]): void {
    if (this.walSync) this.stats_.syncs = this.walSync.syncs
    // durable: publish in seq order (each batch's results are in append order; one write per consumer for
    // all the batches), then the listeners, then tell the callers
    const committed: LoggedEvent[] = []
    for (const b of batches) if (b.results) for (const r of b.results) if (r.evt) committed.push(r.evt)
    if (committed.length > 0) {
      this.publishedSeq_ = committed[committed.length - 1]!.seq
      try {
        this.server.publishBatch(committed)
      } catch (err) {
        this.opts.onError?.(err) // stored: consumers that missed it get it on replay
      }
    }
    if (this.listeners.length > 0) {
      for (const { items, results } of batches) {
        results?.forEach((r, i) => {
          if (!r.evt) return
          const item = items[i]!
          const published: PublishedEvent = item.body
            ? { seq: r.evt.seq, timeUs: item.timeUs!, type: item.type, did: item.did, body: item.body }
            : lazyPublished(r.evt, item.timeUs!, item.type, item.did)
          for (const l of this.listeners) {
            try {
              l(published)
            } catch (err) {
              this.opts.onError?.(err)
            }
          }
        })
      }
    }
    for (const batch of batches) {
      const { items, results } = batch
      if (results === null) {
        // the transaction did not commit: nothing of the batch is stored
        this.stats_.failed += items.length
        for (const item of items) item.reject(batch.error)
        continue
      }
      results.forEach((r, i) => {
        if (r.evt) {
          this.stats_.events++
          items[i]!.resolve(r.evt)
        } else {
          this.stats_.failed++
          items[i]!.reject(r.err)
        }
      })
    }
  }

  /**
   * The WAL sync failed: what it covered may not be on disk. Nothing more is published (a consumer must
   * never see an event a crash could take back), every waiting emit rejects, new ones are refused.
   */
  private syncFailed(err: unknown): void {
    if (this.syncError !== null) return
    this.syncError = err ?? new Error('WAL sync failed')
    this.closed = true
    const waiting = this.unpublished
    this.unpublished = []
    for (const b of waiting) {
      this.stats_.failed += b.items.length
      for (const item of b.items) item.reject(b.results === null ? b.error : this.closedError())
    }
    const pending = this.pending
    this.pending = []
    for (const item of pending) item.reject(this.closedError())
    this.opts.onSyncError?.(err)
  }

  private closedError(): Error {
    if (this.syncError === null) return new Error('the outbox is closed')
    const msg = (this.syncError as Error)?.message ?? String(this.syncError)
    return new Error(`the event log's WAL sync failed (${msg}): the outbox is closed`, { cause: this.syncError })
  }

  /** The last seq handed to consumers: every event up to it is durable. Replays read no further. */
  get publishedSeq(): number {
    return this.publishedSeq_
  }

  /**
   * Calls `fn` with every event right after it is committed and handed to the firehose, in seq order and in
   * the same synchronous step (so a reader of the log that switches to live in one step misses nothing).
   */
  onPublish(fn: (evt: PublishedEvent) => void): void {
    this.listeners.push(fn)
  }

  /** Counters of the event-log writes so far. */
  writeStats(): OutboxWriteStats {
    return { ...this.stats_ }
  }

  /** Applies retention now: drops events older than the window and beyond the byte budget. */
  prune(now = Date.now()): { deleted: number; earliestSeq: number | null } {
    const res = this.log.prune({ maxAgeMs: this.opts.replayWindowMs, maxBytes: this.opts.replayMaxBytes, now })
    if (res.earliestSeq === null) this.timeStmts.pruneAll.run()
    else this.timeStmts.pruneBelow.run(res.earliestSeq)
    return res
  }

  startRetention(intervalMs: number, onError: (err: unknown) => void): void {
    if (this.retentionTimer) return
    this.retentionTimer = setInterval(() => {
      try {
        this.prune()
      } catch (err) {
        onError(err)
      }
    }, intervalMs)
    this.retentionTimer.unref()
  }

  /** `lastSeq`: the last seq published (durable); events committed after it are still waiting for their sync */
  stats(): { count: number; bytes: number; lastSeq: number } {
    return { ...this.log.stats(), lastSeq: this.publishedSeq_ }
  }

  /** Writes what is pending, waits for its sync and publication, then closes the subscribers. Later `emit`s reject. */
  async close(): Promise<void> {
    this.closed = true
    // (a checkpoint holding the writes back finishes first)
    while (this.writeHold.held) await this.writeHold.held
    this.flush()
    await this.lastSync.catch(() => undefined)
    await this.checkpoints?.settled()
    if (this.retentionTimer) clearInterval(this.retentionTimer)
    this.retentionTimer = null
    await this.server.close()
    await this.walSync?.close()
  }
}

/** fsyncs the files (and directory) that exist, now (start-up only: this blocks). */
function syncFilesNow(paths: string[]): void {
  for (const p of paths) {
    if (!existsSync(p)) continue
    const fd = openSync(p, 'r')
    try {
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
  }
}
