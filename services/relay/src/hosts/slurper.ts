/**
 * Connections to upstream hosts: one subscription (com.atproto.sync.subscribeRepos) per host, resumed from
 * the host's persisted cursor, reconnecting with capped exponential backoff. Tracks the host status:
 *   active    subscribed (connected or connecting)
 *   offline   the last connection failed; retrying with backoff
 *   idle      gave up after too many failed attempts in a row (a requestCrawl or addHost revives it)
 *   throttled over its hourly or daily event limit; resumes when the window is over
 *   banned    refused by the operator (or a banned domain)
 * Per-second limits slow reading from the host down instead.
 *
 * The cursor saved for a host is the highest upstream seq below which every event has been processed
 * (events of different accounts are processed concurrently).
 */
import { FrameError, StreamErrorFrame, StreamHttpError, SubscriptionClient, type StreamEvent } from '@stratos/core/stream'
import type { HostLimits } from '../config.js'
import { typeLabel, type Ingester } from '../ingest/ingester.js'
import type { Logger } from '../logger.js'
import type { RelayMetrics } from '../metrics.js'
import type { Host, HostStatus, HostStore } from './host-store.js'
import type { HostRateLimiter } from './limits.js'

export interface SlurperOptions {
  hosts: HostStore
  ingester: Ingester
  limiter: HostRateLimiter
  limitsFor: (host: Host) => HostLimits
  metrics: RelayMetrics
  log: Logger
  reconnectMinMs: number
  reconnectMaxMs: number
  /** consecutive failed attempts before a host goes idle (0 = never) */
  maxFailures: number
  /** events of one host being processed at once before reading from it pauses (default 100) */
  maxPendingPerHost?: number
  /** how often cursors are written (default 1 s) */
  cursorFlushMs?: number
  /** name resolution of host connections (outside dev mode: public addresses only, checked at connect) */
  lookup?: import('node:net').LookupFunction
}

interface Pending {
  seq: number
  done: boolean
  promise: Promise<void>
}

class Connection {
  client: SubscriptionClient | null = null
  pending: Pending[] = []
  cursor: number
  lastEventAt: number | null = null
  dirty = false
  failures = 0
  opened = false
  stopping = false
  throttleTimer: NodeJS.Timeout | null = null

  constructor(public host: Host) {
    this.cursor = host.cursor
  }
}

const SUBSCRIBE_NSID = 'com.atproto.sync.subscribeRepos'

export function subscribeUrl(host: Pick<Host, 'hostname' | 'ssl'>): string {
  return `${host.ssl ? 'wss' : 'ws'}://${host.hostname}/xrpc/${SUBSCRIBE_NSID}`
}

export class Slurper {
  private readonly conns = new Map<number, Connection>()
  private flushTimer: NodeJS.Timeout | null = null
  private closed = false

  constructor(private readonly o: SlurperOptions) {}

  /** Subscribes to every host that is not idle or banned. */
  start(): void {
    for (const host of this.o.hosts.all()) {
      if (host.status === 'active' || host.status === 'offline' || host.status === 'throttled') this.subscribe(host)
    }
    this.flushTimer = setInterval(() => this.flushCursors(), this.o.cursorFlushMs ?? 1_000)
    this.flushTimer.unref()
  }

  /** Connected (or connecting) host ids. */
  isSubscribed(hostId: number): boolean {
    const c = this.conns.get(hostId)
    return !!c && !!c.client && !c.stopping
  }

  /** The cursor of a host as processed so far (may be ahead of the stored one). */
  cursorOf(hostId: number): number | undefined {
    return this.conns.get(hostId)?.cursor
  }

  /** Starts (or keeps) the subscription to a host and marks it active. */
  subscribe(host: Host): void {
    if (this.closed) return
    let conn = this.conns.get(host.id)
    if (conn && conn.client && !conn.stopping) {
      conn.host = { ...conn.host, ...host, cursor: conn.cursor }
      return
    }
    if (conn?.throttleTimer) clearTimeout(conn.throttleTimer)
    if (!conn) {
      conn = new Connection(host)
      this.conns.set(host.id, conn)
    } else {
      conn.host = { ...host, cursor: conn.cursor }
    }
    conn.stopping = false
    conn.failures = 0
    conn.throttleTimer = null
    this.setStatus(conn, 'active')
    const c = conn
    c.client = new SubscriptionClient({
      url: subscribeUrl(host),
      getCursor: async () => {
        // every event handed out earlier is finished before resuming, so none is processed twice
        await Promise.all(c.pending.map((p) => p.promise))
        return c.cursor
      },
      onEvent: (evt) => this.onEvent(c, evt),
      // #commit frames are checked but not decoded: verified from their bytes and forwarded as those bytes
      rawTypes: ['#commit'],
      onInfo: (info) => this.o.log.info({ host: c.host.hostname, info }, 'upstream info message'),
      onError: (err) => this.onError(c, err),
      onOpen: () => {
        c.opened = true
        c.failures = 0
        if (c.host.status !== 'active') this.setStatus(c, 'active')
        this.o.log.info({ host: c.host.hostname, cursor: c.cursor }, 'connected to host')
      },
      onClose: (code, reason) => this.onClose(c, code, reason),
      minBackoffMs: this.o.reconnectMinMs,
      maxBackoffMs: this.o.reconnectMaxMs,
      lookup: this.o.lookup,
    })
    c.client.start()
  }

  /** Stops the subscription to a host and gives it `status` (idle, throttled, banned). */
  async unsubscribe(hostId: number, status: HostStatus): Promise<void> {
    const conn = this.conns.get(hostId)
    if (!conn) {
      this.o.hosts.setStatus(hostId, status)
      return
    }
    this.setStatus(conn, status)
    await this.stopConnection(conn)
    if (status !== 'throttled' && conn.throttleTimer) {
      clearTimeout(conn.throttleTimer)
      conn.throttleTimer = null
    }
  }

  private async stopConnection(conn: Connection): Promise<void> {
    conn.stopping = true
    const client = conn.client
    conn.client = null
    if (client) await client.stop()
    await Promise.all(conn.pending.map((p) => p.promise))
    this.flushCursor(conn)
  }

  private setStatus(conn: Connection, status: HostStatus): void {
    if (conn.host.status === status) return
    conn.host = { ...conn.host, status }
    this.o.hosts.setStatus(conn.host.id, status)
    this.o.log.info({ host: conn.host.hostname, status }, 'host status changed')
  }

  /** Current status of a host as the connection manager sees it. */
  statusOf(hostId: number): HostStatus | undefined {
    return this.conns.get(hostId)?.host.status
  }

  private async onEvent(conn: Connection, evt: StreamEvent): Promise<void> {
    if (conn.stopping) return
    // rate limits
    for (;;) {
      const r = this.o.limiter.take(conn.host.id, this.o.limitsFor(conn.host))
      if (r.ok) break
      if ('waitMs' in r) {
        await new Promise((resolve) => setTimeout(resolve, r.waitMs))
        if (conn.stopping) return
        continue
      }
      this.throttle(conn, r.throttleUntil, r.window)
      return // not processed: the cursor stays before it, it is read again when the host resumes
    }

    const seq = evt.seq
    if (seq === undefined) {
      const type = typeLabel(evt.t)
      this.o.metrics.received.inc({ type })
      if (type !== 'other') this.o.metrics.dropped.inc({ reason: 'malformed' }) // unknown types are ignored
      return
    }
    const entry: Pending = { seq, done: false, promise: Promise.resolve() }
    // the event as it is (a #commit's body is not decoded: the ingester reads its frame in place)
    entry.promise = this.o.ingester.submit(conn.host, evt).then(() => {
      entry.done = true
      this.advance(conn)
    })
    conn.pending.push(entry)
    const max = this.o.maxPendingPerHost ?? 100
    while (conn.pending.length >= max && !conn.stopping) await conn.pending[0]!.promise
  }

  private advance(conn: Connection): void {
    while (conn.pending.length > 0 && conn.pending[0]!.done) {
      const p = conn.pending.shift()!
      if (p.seq > conn.cursor) conn.cursor = p.seq
      conn.lastEventAt = Date.now()
      conn.dirty = true
    }
  }

  private throttle(conn: Connection, until: number, window: string): void {
    if (conn.stopping) return
    this.o.log.warn({ host: conn.host.hostname, window, until: new Date(until).toISOString() }, 'host over its event limit: throttled')
    this.setStatus(conn, 'throttled')
    void this.stopConnection(conn).then(() => {
      if (this.closed || conn.host.status !== 'throttled') return
      conn.throttleTimer = setTimeout(() => {
        conn.throttleTimer = null
        if (this.closed || conn.host.status !== 'throttled') return
        const host = this.o.hosts.getById(conn.host.id)
        if (host && host.status === 'throttled') this.subscribe(host)
      }, Math.max(0, until - Date.now()))
      conn.throttleTimer.unref()
    })
  }

  private onError(conn: Connection, err: Error): void {
    if (err instanceof FrameError) {
      const reason = err.truncated ? 'truncated-frame' : 'malformed-frame'
      this.o.metrics.received.inc({ type: 'invalid-frame' })
      this.o.metrics.dropped.inc({ reason })
      this.o.log.warn({ host: conn.host.hostname, err: err.message }, 'malformed frame from host: reconnecting')
      return
    }
    if (err instanceof StreamErrorFrame) {
      this.o.metrics.upstreamErrors.inc({ kind: err.error === 'FutureCursor' ? 'future-cursor' : 'error-frame' })
      if (err.error === 'FutureCursor') {
        // the host's stream was reset (its seq went back): start over from its window
        this.o.log.warn({ host: conn.host.hostname, cursor: conn.cursor }, 'host says our cursor is in the future: resetting it')
        conn.cursor = 0
        conn.dirty = false
        this.o.hosts.resetCursor(conn.host.id, 0)
      } else {
        this.o.log.warn({ host: conn.host.hostname, error: err.error, message: err.errorMessage }, 'error frame from host')
      }
      return
    }
    if (err instanceof StreamHttpError) {
      this.o.metrics.upstreamErrors.inc({ kind: 'http' })
      this.o.log.warn({ host: conn.host.hostname, status: err.status, error: err.error }, 'host refused the subscription')
      return
    }
    this.o.metrics.upstreamErrors.inc({ kind: err.name === 'StreamHandlerError' ? 'handler' : 'connection' })
    this.o.log.debug({ host: conn.host.hostname, err: err.message }, 'subscription error')
  }

  private onClose(conn: Connection, code: number, reason: string): void {
    const wasOpen = conn.opened
    conn.opened = false
    if (conn.stopping || this.closed) return
    this.flushCursor(conn)
    if (!wasOpen) conn.failures++
    this.o.log.info({ host: conn.host.hostname, code, reason, failures: conn.failures }, 'host connection closed')
    if (this.o.maxFailures > 0 && conn.failures >= this.o.maxFailures) {
      this.o.log.warn({ host: conn.host.hostname, failures: conn.failures }, 'host unreachable: going idle')
      void this.unsubscribe(conn.host.id, 'idle')
      return
    }
    this.setStatus(conn, 'offline')
  }

  private flushCursor(conn: Connection): void {
    if (!conn.dirty) return
    conn.dirty = false
    this.o.hosts.setCursor(conn.host.id, conn.cursor, conn.lastEventAt)
  }

  /** Writes the cursors that moved since the last flush. */
  flushCursors(): void {
    for (const conn of this.conns.values()) {
      try {
        this.flushCursor(conn)
      } catch (err) {
        this.o.log.error({ err, host: conn.host.hostname }, 'saving a host cursor failed')
      }
    }
  }

  /** Stops every subscription, waits for the events in flight and saves the cursors. */
  async close(): Promise<void> {
    this.closed = true
    if (this.flushTimer) clearInterval(this.flushTimer)
    this.flushTimer = null
    await Promise.all(
      [...this.conns.values()].map(async (conn) => {
        if (conn.throttleTimer) clearTimeout(conn.throttleTimer)
        conn.throttleTimer = null
        await this.stopConnection(conn)
      }),
    )
    await this.o.ingester.queue.idle()
    this.flushCursors()
  }
}
