/**
 * SubscriptionServer: fans pre-encoded frames of one endpoint (e.g. com.atproto.sync.subscribeRepos) out
 * to its WebSocket consumers, with cursor replay from an {@link EventLog}, bounded per-consumer queues and
 * keepalive pings.
 */
import { WebSocket } from 'ws'
import type { EventLog, LoggedEvent } from './event-log.js'
import { encodeErrorFrame, encodeInfoFrame } from './frames.js'

export interface SubscriptionServerOptions {
  /** where cursors are replayed from; `publish` must be called only after the event is in this log */
  log: EventLog
  /** cut a consumer with ConsumerTooSlow when this many frames are not yet flushed to its socket (default 20,000) */
  maxQueuedFrames?: number
  /** ... or when its socket holds this many unsent bytes (ws bufferedAmount; default 16 MiB) */
  maxQueuedBytes?: number
  /** events read from the log per query during a replay (default 500) */
  replayBatchSize?: number
  /** during a replay, pause reading the log while the socket holds more than this (default 1 MiB) */
  replayHighWaterBytes?: number
  /** ping every consumer this often; one that has not answered the previous ping is terminated (default 30 s, 0 = off) */
  pingIntervalMs?: number
  /** after an error frame / close, terminate the socket if the peer has not closed within this (default 5 s) */
  closeTimeoutMs?: number
  onConsumerOpen?: (consumer: ConsumerInfo) => void
  onConsumerClose?: (consumer: ConsumerInfo, reason: string) => void
  onError?: (err: unknown, consumer?: ConsumerInfo) => void
}

export interface AttachOptions {
  /** last seq the consumer processed; undefined → live tail only */
  cursor?: number
  remoteAddress?: string
}

export interface ConsumerInfo {
  id: number
  remoteAddress: string | undefined
  /** ISO timestamp */
  connectedAt: string
  cursor: number | undefined
  /** 'replay' while catching up from the log, then 'live' */
  phase: 'replay' | 'live' | 'closing'
  /** frames handed to the socket */
  sent: number
  /** frames waiting: not yet flushed to the socket, plus live events buffered during a replay */
  queued: number
  /** bytes the socket has not sent yet */
  bufferedBytes: number
  /** highest seq sent */
  lastSeq: number
}

const OPEN = WebSocket.OPEN

/** Unmasked, final, binary WebSocket frames (what `ws.send(frame, {binary: true})` writes) of each event, back to back. */
function wsFrames(events: readonly { frame: Uint8Array }[]): Buffer {
  let total = 0
  for (const e of events) {
    const len = e.frame.byteLength
    total += (len < 126 ? 2 : len < 65536 ? 4 : 10) + len
  }
  const out = Buffer.allocUnsafe(total)
  let p = 0
  for (const e of events) {
    const len = e.frame.byteLength
    out[p++] = 0x82
    if (len < 126) {
      out[p++] = len
    } else if (len < 65536) {
      out[p++] = 126
      out.writeUInt16BE(len, p)
      p += 2
    } else {
      out[p++] = 127
      out.writeUInt32BE(Math.floor(len / 2 ** 32), p)
      out.writeUInt32BE(len >>> 0, p + 4)
      p += 8
    }
    out.set(e.frame, p)
    p += len
  }
  return out
}

class Consumer {
  phase: 'replay' | 'live' | 'closing' = 'live'
  sent = 0
  unflushed = 0
  lastSeq = 0
  alive = true
  liveBuffer: LoggedEvent[] = []
  liveBufferBytes = 0
  liveOverflowed = false
  drainWaiter: (() => void) | null = null
  closeTimer: NodeJS.Timeout | null = null
  readonly connectedAt = new Date().toISOString()
  readonly onFlushed: (err?: Error) => void

  constructor(
    readonly id: number,
    readonly ws: WebSocket,
    readonly cursor: number | undefined,
    readonly remoteAddress: string | undefined,
    private readonly drainBelow: number,
  ) {
    this.onFlushed = () => {
      this.unflushed--
      if (this.drainWaiter && (this.ws.readyState !== OPEN || this.ws.bufferedAmount <= this.drainBelow)) {
        const w = this.drainWaiter
        this.drainWaiter = null
        w()
      }
    }
  }

  info(): ConsumerInfo {
    return {
      id: this.id,
      remoteAddress: this.remoteAddress,
      connectedAt: this.connectedAt,
      cursor: this.cursor,
      phase: this.phase,
      sent: this.sent,
      queued: this.unflushed + this.liveBuffer.length,
      bufferedBytes: this.ws.bufferedAmount,
      lastSeq: this.lastSeq,
    }
  }
}

export class SubscriptionServer {
  private readonly log: EventLog
  private readonly live = new Map<number, Consumer>()
  private readonly closing = new Set<Consumer>()
  private nextId = 1
  private lastPublished = 0
  private pingTimer: NodeJS.Timeout | null = null
  private closed = false
  readonly opts: Required<Omit<SubscriptionServerOptions, 'onConsumerOpen' | 'onConsumerClose' | 'onError' | 'log'>> &
    Pick<SubscriptionServerOptions, 'onConsumerOpen' | 'onConsumerClose' | 'onError'>

  constructor(opts: SubscriptionServerOptions) {
    this.log = opts.log
    this.opts = {
      maxQueuedFrames: opts.maxQueuedFrames ?? 20_000,
      maxQueuedBytes: opts.maxQueuedBytes ?? 16 * 1024 * 1024,
      replayBatchSize: opts.replayBatchSize ?? 500,
      replayHighWaterBytes: opts.replayHighWaterBytes ?? 1024 * 1024,
      pingIntervalMs: opts.pingIntervalMs ?? 30_000,
      closeTimeoutMs: opts.closeTimeoutMs ?? 5_000,
      onConsumerOpen: opts.onConsumerOpen,
      onConsumerClose: opts.onConsumerClose,
      onError: opts.onError,
    }
    if (this.opts.pingIntervalMs > 0) {
      this.pingTimer = setInterval(() => this.pingAll(), this.opts.pingIntervalMs)
      this.pingTimer.unref()
    }
  }

  /** Highest seq passed to {@link publish}. */
  get lastPublishedSeq(): number {
    return this.lastPublished
  }

  /**
   * Sends an already encoded frame to every live consumer: the same buffer object to each (encode once).
   * Call in seq order, after the event is stored in the log. Consumers still replaying buffer it.
   */
  publish(seq: number, frame: Uint8Array): void {
    if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError(`invalid seq: ${seq}`)
    if (seq > this.lastPublished) this.lastPublished = seq
    for (const c of this.live.values()) {
      if (c.phase === 'live') this.sendLive(c, seq, frame)
      else if (c.phase === 'replay') this.bufferDuringReplay(c, seq, frame)
    }
  }

  /**
   * `publish` for several consecutive events at once (e.g. one group-committed batch): each live consumer
   * gets them in seq order with its socket corked, so the batch leaves in one write per consumer instead of
   * one per event and consumer. Same rules as `publish` otherwise.
   */
  publishBatch(events: readonly { seq: number; frame: Uint8Array }[]): void {
    if (events.length === 0) return
    if (events.length === 1) return this.publish(events[0]!.seq, events[0]!.frame)
    for (const e of events) {
      if (!Number.isSafeInteger(e.seq) || e.seq < 1) throw new RangeError(`invalid seq: ${e.seq}`)
      if (e.seq > this.lastPublished) this.lastPublished = e.seq
    }
    // the batch as WebSocket frames, built once for every consumer it can be written to as it is
    let framed: Buffer | null = null
    for (const c of this.live.values()) {
      if (c.phase === 'live') {
        if (this.writeFramed(c, events, (framed ??= wsFrames(events)))) continue
        const socket = (c.ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket
        socket?.cork()
        try {
          for (const e of events) {
            if (c.phase !== 'live') break // cut (ConsumerTooSlow) in the middle of the batch
            this.sendLive(c, e.seq, e.frame)
          }
        } finally {
          socket?.uncork()
        }
      } else if (c.phase === 'replay') {
        for (const e of events) this.bufferDuringReplay(c, e.seq, e.frame)
      }
    }
  }

  /**
   * Writes a whole batch, already framed, to a live consumer's socket in one write: only when that is what
   * sending the events one by one would do (every event new to it, the socket open, ws's sender idle, and
   * no event would find the consumer over its limits). Otherwise false: send them one by one.
   */
  private writeFramed(c: Consumer, events: readonly { seq: number }[], framed: Buffer): boolean {
    const ws = c.ws as unknown as {
      readyState: number
      bufferedAmount: number
      _socket?: { write(b: Uint8Array, cb: (err?: Error) => void): boolean }
      _sender?: { _state?: number; _queue?: unknown[] }
    }
    const socket = ws._socket
    const sender = ws._sender
    if (!socket || !sender || sender._state !== 0 || (sender._queue?.length ?? 0) > 0) return false
    if (ws.readyState !== OPEN || events[0]!.seq <= c.lastSeq) return false
    const n = events.length
    if (c.unflushed + n > this.opts.maxQueuedFrames || ws.bufferedAmount + framed.length >= this.opts.maxQueuedBytes) return false
    c.unflushed += n
    c.sent += n
    c.lastSeq = events[n - 1]!.seq
    socket.write(framed, () => {
      for (let i = 0; i < n; i++) c.onFlushed()
    })
    return true
  }

  /**
   * Takes over an open WebSocket. With a cursor: replays seq > cursor from the log, then continues live
   * (no gap, no duplicate); a cursor older than the window gets `#info OutdatedCursor` first; a cursor
   * above the latest seq gets the error frame `FutureCursor` and is closed.
   */
  attach(ws: WebSocket, opts: AttachOptions | number = {}): ConsumerInfo {
    const o: AttachOptions = typeof opts === 'number' ? { cursor: opts } : opts
    const cursor = o.cursor
    if (cursor !== undefined && (!Number.isSafeInteger(cursor) || cursor < 0)) {
      throw new RangeError(`invalid cursor: ${cursor}`)
    }
    const remote =
      o.remoteAddress ?? ((ws as unknown as { _socket?: { remoteAddress?: string } })._socket?.remoteAddress)
    const c = new Consumer(this.nextId++, ws, cursor, remote, Math.floor(this.opts.replayHighWaterBytes / 4))
    if (this.closed) {
      ws.close(1001, 'server shutting down')
      return c.info()
    }
    if (ws.readyState !== OPEN) return c.info() // went away before we got it
    this.live.set(c.id, c)
    ws.on('close', () => this.remove(c, 'closed'))
    ws.on('error', (err) => this.opts.onError?.(err, c.info()))
    ws.on('pong', () => {
      c.alive = true
    })
    ws.on('message', () => undefined) // servers ignore client frames
    this.opts.onConsumerOpen?.(c.info())

    if (cursor === undefined) {
      c.phase = 'live'
      c.lastSeq = this.lastPublished
    } else {
      c.phase = 'replay'
      c.lastSeq = cursor
      this.replay(c, cursor).catch((err) => {
        this.opts.onError?.(err, c.info())
        this.shut(c, 1011, 'replay failed', 'replay failed')
      })
    }
    return c.info()
  }

  /** Snapshot of the connected consumers. */
  consumers(): ConsumerInfo[] {
    return [...this.live.values()].map((c) => c.info())
  }

  /** Closes every consumer (1001 going away) and stops pinging. Resolves once they are all gone. */
  async close(): Promise<void> {
    this.closed = true
    if (this.pingTimer) clearInterval(this.pingTimer)
    this.pingTimer = null
    const all = [...this.live.values(), ...this.closing]
    const done = all.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.ws.readyState === WebSocket.CLOSED) return resolve()
          c.ws.once('close', () => resolve())
        }),
    )
    for (const c of this.live.values()) this.shut(c, 1001, 'server shutting down', 'server closed')
    await Promise.all(done)
  }

  // -------------------------------------------------------------------------------------------------

  private send(c: Consumer, frame: Uint8Array): void {
    c.unflushed++
    c.sent++
    c.ws.send(frame, { binary: true }, c.onFlushed)
  }

  private sendLive(c: Consumer, seq: number, frame: Uint8Array): void {
    if (seq <= c.lastSeq) return
    if (c.ws.readyState !== OPEN) return
    if (c.unflushed >= this.opts.maxQueuedFrames || c.ws.bufferedAmount >= this.opts.maxQueuedBytes) {
      this.fail(c, 'ConsumerTooSlow', 'Stream consumer too slow')
      return
    }
    c.lastSeq = seq
    this.send(c, frame)
  }

  private bufferDuringReplay(c: Consumer, seq: number, frame: Uint8Array): void {
    if (c.liveOverflowed) return
    c.liveBuffer.push({ seq, frame })
    c.liveBufferBytes += frame.byteLength
    if (c.liveBuffer.length > this.opts.maxQueuedFrames || c.liveBufferBytes > this.opts.maxQueuedBytes) {
      // Too much arrived while replaying: drop the buffer; these events are in the log and the replay
      // keeps reading it until it catches up with no overflow.
      c.liveBuffer = []
      c.liveBufferBytes = 0
      c.liveOverflowed = true
    }
  }

  private waitForDrain(c: Consumer): Promise<void> {
    return new Promise((resolve) => {
      if (c.ws.readyState !== OPEN || c.unflushed === 0) return resolve()
      c.drainWaiter = resolve
    })
  }

  private async replay(c: Consumer, cursor: number): Promise<void> {
    const [latest, earliest, assigned] = await Promise.all([
      this.log.latestSeq(),
      this.log.earliestSeq(),
      this.log.headSeq ? this.log.headSeq() : null,
    ])
    if (c.phase !== 'replay') return
    const head = Math.max(latest ?? 0, assigned ?? 0, this.lastPublished)
    if (cursor > head) {
      this.fail(c, 'FutureCursor', 'Cursor in the future.')
      return
    }
    const outdated = cursor > 0 && (earliest === null ? cursor < head : cursor < earliest - 1)
    if (outdated) {
      this.send(c, encodeInfoFrame('OutdatedCursor', 'Requested cursor exceeded limit. Possibly missing events'))
    }
    const batchSize = this.opts.replayBatchSize
    let last = cursor
    for (;;) {
      const batch = await this.log.readAfter(last, batchSize)
      if (c.phase !== 'replay') return
      for (const evt of batch) {
        if (evt.seq <= last) continue
        last = evt.seq
        c.lastSeq = evt.seq
        this.send(c, evt.frame)
        if (c.ws.bufferedAmount > this.opts.replayHighWaterBytes) {
          await this.waitForDrain(c)
          if (c.phase !== 'replay') return
        }
      }
      if (batch.length < batchSize) {
        if (c.liveOverflowed) {
          // live events were dropped while we read: they are in the log by now, read again
          c.liveOverflowed = false
          continue
        }
        break
      }
    }
    // hand-off (synchronous, no await past the last check): flush what arrived live during the replay
    c.phase = 'live'
    const buffered = c.liveBuffer
    c.liveBuffer = []
    c.liveBufferBytes = 0
    for (const evt of buffered) {
      if (c.phase !== 'live') break
      this.sendLive(c, evt.seq, evt.frame)
    }
  }

  private pingAll(): void {
    for (const c of this.live.values()) {
      if (c.ws.readyState !== OPEN) continue
      if (!c.alive) {
        this.remove(c, 'ping timeout')
        c.ws.terminate()
        continue
      }
      c.alive = false
      c.ws.ping()
    }
  }

  /** error frame, then close */
  private fail(c: Consumer, error: string, message: string): void {
    if (c.phase === 'closing') return
    if (c.ws.readyState === OPEN) {
      c.sent++
      c.ws.send(encodeErrorFrame(error, message), { binary: true })
    }
    this.shut(c, 1008, error, error)
  }

  private shut(c: Consumer, code: number, reason: string, why: string): void {
    if (c.phase === 'closing') return
    this.remove(c, why)
    this.closing.add(c)
    c.ws.once('close', () => {
      this.closing.delete(c)
      if (c.closeTimer) clearTimeout(c.closeTimer)
    })
    if (c.ws.readyState === OPEN || c.ws.readyState === WebSocket.CONNECTING) {
      try {
        c.ws.close(code, reason)
      } catch {
        c.ws.terminate()
      }
      c.closeTimer = setTimeout(() => c.ws.terminate(), this.opts.closeTimeoutMs)
      c.closeTimer.unref()
    } else {
      this.closing.delete(c)
    }
  }

  private remove(c: Consumer, reason: string): void {
    if (!this.live.has(c.id)) return
    this.live.delete(c.id)
    c.phase = 'closing'
    c.liveBuffer = []
    c.liveBufferBytes = 0
    if (c.drainWaiter) {
      const w = c.drainWaiter
      c.drainWaiter = null
      w()
    }
    this.opts.onConsumerClose?.(c.info(), reason)
  }
}
