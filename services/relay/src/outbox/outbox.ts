/**
 * The relay's outbound com.atproto.sync.subscribeRepos: its own seq, a durable event log (table
 * `relay_event` in relay.sqlite) with retention by age and bytes, and one SubscriptionServer that sends
 * each event's bytes, encoded once, to every consumer (replay, OutdatedCursor, FutureCursor and
 * ConsumerTooSlow are the core SubscriptionServer's).
 */
import { SqliteEventLog, SubscriptionServer, encodeMessageFrame, type ConsumerInfo, type LoggedEvent } from '@stratos/core/stream'
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
}

export class Outbox {
  readonly log: SqliteEventLog
  readonly server: SubscriptionServer
  private retentionTimer: NodeJS.Timeout | null = null

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
  }

  /**
   * Appends one event with the next seq, running `update` (account state changes) in the same transaction,
   * then publishes it. The body is encoded once, with its seq, and those bytes are what every consumer and
   * every later replay gets.
   */
  emit(type: OutboundType, did: string, body: Record<string, unknown>, update?: () => void): LoggedEvent {
    const evt = this.db.transaction(() => {
      update?.()
      return this.log.append(type, did, (seq) => encodeMessageFrame(type, { seq, ...body }))
    })()
    this.server.publish(evt.seq, evt.frame)
    return evt
  }

  /** Applies retention now: drops events older than the window and beyond the byte budget. */
  prune(now = Date.now()): { deleted: number; earliestSeq: number | null } {
    return this.log.prune({ maxAgeMs: this.opts.replayWindowMs, maxBytes: this.opts.replayMaxBytes, now })
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

  async close(): Promise<void> {
    if (this.retentionTimer) clearInterval(this.retentionTimer)
    this.retentionTimer = null
    await this.server.close()
  }
}
