/**
 * The relay's outbound com.atproto.sync.subscribeRepos: its own seq, a durable event log (table
 * `relay_event` in relay.sqlite) with retention by age and bytes, and one SubscriptionServer that sends
 * each event's bytes, encoded once, to every consumer (replay, OutdatedCursor, FutureCursor and
 * ConsumerTooSlow are the core SubscriptionServer's).
 *
 * Group commit: events emitted close together (by default, during one turn of the event loop; see
 * `batchDelayMs`) are appended in ONE transaction (one fsync) together with the account-state changes they
 * carry, then published in seq order. The guarantees are those of one transaction per event:
 *   - durable before published: nothing is handed to a consumer before its transaction has committed;
 *   - no gap, no duplicate: seqs are assigned consecutively inside the transaction and published in order,
 *     right after the commit, in the same synchronous step (a consumer attaching in between cannot exist);
 *   - one event's failure is its own: each event (its state change and its append) runs in a savepoint, so an
 *     event whose update or encoding throws is rolled back alone and its `emit` rejects; the others commit.
 *     If the commit itself fails, every event of the batch rejects and none is published.
 * `emit` resolves once the event is durable and published. Events are appended in the order of the `emit`
 * calls, so the ingester may verify an account's next commit before the previous one is durable (it checks
 * the stored state in `update`, see ingester.ts).
 */
import {
  SqliteEventLog,
  SubscriptionServer,
  decodeFrame,
  encodeMessageFrame,
  type ConsumerInfo,
  type LoggedEvent,
  type OutboundCommit,
} from '@stratos/core/stream'
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
  /** milliseconds spent in the write transactions, commit (fsync) included */
  txMs: number
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
  private readonly stats_: OutboxWriteStats = { batches: 0, events: 0, failed: 0, txMs: 0 }
  /** next free Jetstream µs (strictly increasing across restarts) */
  private nextTimeUs: number
  private readonly listeners: ((evt: PublishedEvent) => void)[] = []
  private readonly timeStmts: {
    insert: SqliteDatabase.Statement<[number, number]>
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
      log: {
        latestSeq: async () => log.lastAssignedSeq() || null,
        earliestSeq: () => log.earliestSeq(),
        readAfter: (seq, limit) => log.readAfter(seq, limit),
      },
      maxQueuedBytes: opts.maxQueuedBytes,
      maxQueuedFrames: opts.maxQueuedFrames,
      pingIntervalMs: opts.pingIntervalMs,
      onConsumerClose: opts.onConsumerClose,
      onError: (err) => opts.onError?.(err),
    })
    const last = db.prepare('SELECT MAX(time_us) AS t FROM relay_event_time').get() as { t: number | null }
    this.nextTimeUs = (last.t ?? 0) + 1
    this.timeStmts = {
      insert: db.prepare('INSERT OR REPLACE INTO relay_event_time (seq, time_us) VALUES (?, ?)'),
      pruneBelow: db.prepare('DELETE FROM relay_event_time WHERE seq < ?'),
      pruneAll: db.prepare('DELETE FROM relay_event_time'),
    }
    // one event: its state change and its append, in a savepoint of the batch transaction
    const one = db.transaction((item: PendingEvent): LoggedEvent => {
      item.update?.()
      const timeUs = Math.max(Date.now() * 1000, this.nextTimeUs)
      const encoded = item.encoded
      this.nextTimeUs = timeUs + (encoded ? Math.max(1, encoded.opCount) : jetstreamSpan(item.type, item.body!))
      const evt = log.append(
        item.type,
        item.did,
        encoded ? (seq) => encoded.withSeq(seq) : (seq) => encodeMessageFrame(item.type, { seq, ...item.body }),
        Math.floor(timeUs / 1000),
      )
      this.timeStmts.insert.run(evt.seq, timeUs)
      item.timeUs = timeUs
      return evt
    })
    this.writeBatch = db.transaction((items: PendingEvent[]) =>
      items.map((item) => {
        try {
          return { evt: one(item) }
        } catch (err) {
          // SQLite aborted the whole transaction (disk full, I/O error...): fail the batch, not just this event
          if (!db.inTransaction) throw err
          this.opts.onRollback?.()
          return { err }
        }
      }),
    ).immediate as (items: PendingEvent[]) => { evt?: LoggedEvent; err?: unknown }[]
  }

  /**
   * Appends an event with the next seq, running `update` (account state changes) in the same transaction,
   * then publishes it; resolves with the logged event once it is durable and published (rejects if its
   * update or the write failed: then nothing of it is stored or sent). The body is encoded once, with its
   * seq, and those bytes are what every consumer and every later replay gets. Events emitted close together
   * share one transaction (group commit, see the module comment).
   */
  emit(type: OutboundType, did: string, body: Record<string, unknown>, update?: () => void): Promise<LoggedEvent> {
    if (this.closed) return Promise.reject(new Error('the outbox is closed'))
    return this.enqueue(type, did, body, null, update)
  }

  /**
   * `emit` for a `#commit` whose frame is already built (from the upstream frame's bytes, see core's
   * CommitFrame): only its seq is written at append time. Listeners get the body decoded from the frame.
   */
  emitCommitFrame(did: string, frame: OutboundCommit, update?: () => void): Promise<LoggedEvent> {
    if (this.closed) return Promise.reject(new Error('the outbox is closed'))
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

  /** Writes the pending events now (one transaction), then publishes them in seq order. */
  flush(): void {
    if (this.flushScheduled) {
      clearTimeout(this.flushScheduled as NodeJS.Timeout)
      clearImmediate(this.flushScheduled as NodeJS.Immediate)
      this.flushScheduled = null
    }
    const items = this.pending
    if (items.length === 0) return
    this.pending = []
    let results: { evt?: LoggedEvent; err?: unknown }[]
    const start = performance.now()
    try {
      results = this.writeBatch(items)
    } catch (err) {
      // the transaction did not commit: nothing of the batch is stored
      this.opts.onRollback?.()
      this.stats_.failed += items.length
      for (const item of items) item.reject(err)
      return
    }
    this.stats_.txMs += performance.now() - start
    this.stats_.batches++
    // committed: publish in seq order (results are in append order; one corked write per consumer for the
    // whole batch), then the listeners, then tell the callers
    const committed: LoggedEvent[] = []
    for (const r of results) if (r.evt) committed.push(r.evt)
    try {
      this.server.publishBatch(committed)
    } catch (err) {
      this.opts.onError?.(err) // stored: consumers that missed it get it on replay
    }
    results.forEach((r, i) => {
      if (!r.evt) return
      if (this.listeners.length === 0) return
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

  stats(): { count: number; bytes: number; lastSeq: number } {
    return { ...this.log.stats(), lastSeq: this.log.lastAssignedSeq() }
  }

  /** Writes what is pending, then closes the subscribers. Later `emit`s reject. */
  async close(): Promise<void> {
    this.flush()
    this.closed = true
    if (this.retentionTimer) clearInterval(this.retentionTimer)
    this.retentionTimer = null
    await this.server.close()
  }
}
