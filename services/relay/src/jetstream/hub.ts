/**
 * The relay's Jetstream endpoint (GET /subscribe): JSON events built from the relay's verified outbound
 * stream, filtered per subscriber.
 *
 * Cost: a live event is converted (CAR read, record decode, JSON encode) once, and compressed at most once,
 * for all subscribers; a subscriber only compares the kind, DID and collection carried next to the bytes.
 * Nothing is built while no subscriber is live.
 *
 * Cursor: each outbound event has a Jetstream clock (relay_event_time, written in the event's own
 * transaction): its n ops get time_us t, t+1, ... t+n-1, strictly increasing across events. A cursor replays
 * from the relay's event log, page by page, then switches to live in the same synchronous step as the read
 * that found nothing more (events are published in the step that commits them), so nothing is lost or sent
 * twice. A v1 cursor older than the log starts at its oldest event; a v2 (sequence) cursor older than the log
 * is refused with CursorTooOld.
 *
 * Slow subscribers: a socket holding more than `maxQueuedBytes` unsent bytes is closed (1008 ConsumerTooSlow).
 */
import type { IncomingMessage } from 'node:http'
import { createRequire } from 'node:module'
import { decodeFrame, mountSubscription, SubscriptionHttpError } from '@stratos/core/stream'
import type SqliteDatabase from 'better-sqlite3'
import type { WebSocket } from 'ws'
import type { Db } from '../db.js'
import type { Outbox, OutboundType, PublishedEvent } from '../outbox/outbox.js'
import { jsonV2, toJetstreamItems, type JetstreamItem } from './events.js'
import { Filter, OptionsError, parseSubscribeQuery, parseSubscriberMessage, type SubscribeParams } from './filter.js'

// loaded with Node's own resolution (its CommonJS build), the same module whatever bundles or transforms this file
const zstd = createRequire(import.meta.url)('@bokuweb/zstd-wasm') as typeof import('@bokuweb/zstd-wasm')
const { compress: zstdCompress, init: zstdInit } = zstd

export interface JetstreamHubOptions {
  db: Db
  outbox: Outbox
  maxQueuedBytes: number
  zstdLevel?: number
  pingIntervalMs?: number
  /** open subscriptions from one client address (default 32) */
  maxPerIp?: number
  onError?: (err: unknown) => void
}

export interface JetstreamStats {
  subscribers: number
  /** outbound events converted for live subscribers */
  eventsConverted: number
  /** Jetstream messages sent */
  messagesSent: number
  bytesSent: number
  /** events compressed (once each) */
  compressed: number
  slowCut: number
}

const REPLAY_PAGE = 500
const REPLAY_LOW_WATER = 1024 * 1024

interface Row {
  seq: number
  type: string
  did: string | null
  frame: Uint8Array
  time: number
  time_us: number | null
}

class Subscriber {
  state: 'hello' | 'replay' | 'live' | 'closed' = 'hello'
  filter: Filter
  sent = 0
  constructor(
    readonly ws: WebSocket,
    readonly params: SubscribeParams,
    readonly remoteAddress: string | undefined,
  ) {
    this.filter = params.filter
  }
}

export class JetstreamHub {
  private readonly subs = new Set<Subscriber>()
  private liveCount = 0
  private readonly stmts: {
    rows: SqliteDatabase.Statement<[number, number], Row>
    atOrBefore: SqliteDatabase.Statement<[number], { seq: number }>
    earliest: SqliteDatabase.Statement<[], { seq: number | null }>
  }
  private readonly stats_: JetstreamStats = {
    subscribers: 0,
    eventsConverted: 0,
    messagesSent: 0,
    bytesSent: 0,
    compressed: 0,
    slowCut: 0,
  }
  private pingTimer: NodeJS.Timeout | null = null

  private constructor(private readonly o: JetstreamHubOptions) {
    this.stmts = {
      rows: o.db.prepare(
        `SELECT e.seq AS seq, e.type AS type, e.did AS did, e.frame AS frame, e.time AS time, t.time_us AS time_us
         FROM relay_event e LEFT JOIN relay_event_time t ON t.seq = e.seq WHERE e.seq > ? ORDER BY e.seq LIMIT ?`,
      ),
      atOrBefore: o.db.prepare('SELECT seq FROM relay_event_time WHERE time_us <= ? ORDER BY time_us DESC LIMIT 1'),
      earliest: o.db.prepare('SELECT MIN(seq) AS seq FROM relay_event'),
    }
    o.outbox.onPublish((evt) => this.publish(evt))
    const ping = o.pingIntervalMs ?? 30_000
    if (ping > 0) {
      this.pingTimer = setInterval(() => {
        for (const s of this.subs) if (s.ws.readyState === s.ws.OPEN) s.ws.ping()
      }, ping)
      this.pingTimer.unref()
    }
  }

  static async create(o: JetstreamHubOptions): Promise<JetstreamHub> {
    await zstdInit()
    return new JetstreamHub(o)
  }

  /** Mounts GET /subscribe on the relay's HTTP server. */
  mount(app: Parameters<typeof mountSubscription>[0]): void {
    const parsed = new WeakMap<IncomingMessage, SubscribeParams>()
    mountSubscription(
      app,
      'jetstream.subscribe',
      (ws, req) => {
        const params = parsed.get(req) ?? parseSubscribeQuery(new URL(req.url ?? '/', 'http://x').searchParams)
        this.attach(ws, params, req.socket.remoteAddress)
      },
      {
        path: '/subscribe',
        maxPerIp: this.o.maxPerIp,
        maxPayload: 1024 * 1024, // options_update with up to 10,000 DIDs
        parseParams: (query) => {
          try {
            const p = parseSubscribeQuery(query)
            this.checkCursor(p)
            return {}
          } catch (err) {
            if (err instanceof OptionsError) throw new SubscriptionHttpError(400, 'InvalidRequest', err.message)
            throw err
          }
        },
        authorize: (req) => {
          const query = new URL(req.url ?? '/', 'http://x').searchParams
          const zstd = String(req.headers['socket-encoding'] ?? '').toLowerCase() === 'zstd'
          parsed.set(req, parseSubscribeQuery(query, zstd))
        },
      },
    )
  }

  /** v2: a sequence cursor older than the log is refused. */
  private checkCursor(p: SubscribeParams): void {
    if (p.cursorSeq === undefined) return
    const earliest = this.stmts.earliest.get()?.seq ?? null
    const head = this.o.outbox.log.lastAssignedSeq()
    if (p.cursorSeq >= head) return
    if (earliest === null || p.cursorSeq < earliest - 1) {
      throw new SubscriptionHttpError(400, 'CursorTooOld', `cursor ${p.cursorSeq} is older than the relay's log`)
    }
  }

  stats(): JetstreamStats {
    return { ...this.stats_, subscribers: this.subs.size }
  }

  /** Takes a new subscriber (after the WebSocket handshake). */
  attach(ws: WebSocket, params: SubscribeParams, remoteAddress?: string): void {
    const sub = new Subscriber(ws, params, remoteAddress)
    this.subs.add(sub)
    ws.on('message', (data, isBinary) => {
      if (sub.state === 'closed') return
      try {
        const text = isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString()
        sub.filter = parseSubscriberMessage(text, sub.filter)
      } catch (err) {
        this.cut(sub, 1008, err instanceof OptionsError ? err.message.slice(0, 120) : 'bad message')
        return
      }
      if (sub.state === 'hello') this.begin(sub)
    })
    ws.on('close', () => this.remove(sub))
    ws.on('error', (err) => {
      this.o.onError?.(err)
      this.remove(sub)
    })
    if (!params.requireHello) this.begin(sub)
  }

  private remove(sub: Subscriber): void {
    if (sub.state === 'live') this.liveCount--
    sub.state = 'closed'
    this.subs.delete(sub)
  }

  private cut(sub: Subscriber, code: number, reason: string): void {
    if (sub.state === 'closed') return
    this.remove(sub)
    try {
      sub.ws.close(code, reason)
    } catch {
      // already closing
    }
    setTimeout(() => sub.ws.terminate(), 2_000).unref()
  }

  private goLive(sub: Subscriber): void {
    if (sub.state === 'closed') return
    sub.state = 'live'
    this.liveCount++
  }

  private begin(sub: Subscriber): void {
    const p = sub.params
    let after: number | null = null
    let minTimeUs = 0
    if (p.cursorSeq !== undefined) {
      after = p.cursorSeq
    } else if (p.cursorUs !== undefined) {
      minTimeUs = p.cursorUs
      const at = this.stmts.atOrBefore.get(p.cursorUs)
      // older than the log: from its oldest event
      after = at ? at.seq - 1 : 0
    }
    if (after === null) return this.goLive(sub)
    sub.state = 'replay'
    void this.replay(sub, after, minTimeUs).catch((err) => {
      this.o.onError?.(err)
      this.cut(sub, 1011, 'replay failed')
    })
  }

  private async replay(sub: Subscriber, after: number, minTimeUs: number): Promise<void> {
    for (;;) {
      if (sub.state !== 'replay') return
      const rows = this.stmts.rows.all(after, REPLAY_PAGE)
      if (rows.length === 0) {
        // caught up: live from here, in this same step (no event can be published in between)
        this.goLive(sub)
        return
      }
      for (const row of rows) {
        after = row.seq
        const items = this.rowItems(row)
        this.deliver(sub, items, minTimeUs)
        if (sub.state !== 'replay') return
      }
      while (sub.state === 'replay' && sub.ws.bufferedAmount > REPLAY_LOW_WATER) {
        await new Promise((r) => setTimeout(r, 5))
      }
      await new Promise((r) => setImmediate(r))
    }
  }

  private rowItems(row: Row): JetstreamItem[] {
    const frame = decodeFrame(row.frame)
    if (frame.op !== 1) return []
    const evt: PublishedEvent = {
      seq: row.seq,
      timeUs: row.time_us ?? row.time * 1000,
      type: frame.t as OutboundType,
      did: row.did ?? '',
      body: frame.body,
    }
    try {
      return toJetstreamItems(evt)
    } catch (err) {
      this.o.onError?.(err)
      return []
    }
  }

  /** Live: called by the outbox right after each event is committed. */
  publish(evt: PublishedEvent): void {
    if (this.liveCount === 0) return
    let items: JetstreamItem[]
    try {
      items = toJetstreamItems(evt)
    } catch (err) {
      this.o.onError?.(err)
      return
    }
    this.stats_.eventsConverted++
    if (items.length === 0) return
    for (const sub of this.subs) {
      if (sub.state === 'live') this.deliver(sub, items, 0)
    }
  }

  private encoded(item: JetstreamItem, v2: boolean, compress: boolean): Buffer {
    if (!compress) return v2 ? jsonV2(item) : item.json
    if (v2) return (item.zstdV2 ??= this.compress(jsonV2(item)))
    return (item.zstd ??= this.compress(item.json))
  }

  private compress(buf: Buffer): Buffer {
    this.stats_.compressed++
    const level = this.o.zstdLevel ?? 3
    // plain zstd frames (no dictionary id): decoders that load Jetstream's dictionary decode them too
    const out = zstdCompress(buf, level)
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength)
  }

  private deliver(sub: Subscriber, items: JetstreamItem[], minTimeUs: number): void {
    const { filter, params } = sub
    const v2 = params.version === 2
    for (const item of items) {
      if (item.timeUs <= minTimeUs) continue
      if (!filter.matches(item)) continue
      if (filter.maxMessageSizeBytes > 0 && item.json.byteLength > filter.maxMessageSizeBytes) continue
      const buf = this.encoded(item, v2, params.compress)
      sub.ws.send(buf, { binary: params.compress })
      sub.sent++
      this.stats_.messagesSent++
      this.stats_.bytesSent += buf.byteLength
    }
    if (sub.ws.bufferedAmount > this.o.maxQueuedBytes) {
      this.stats_.slowCut++
      this.cut(sub, 1008, 'ConsumerTooSlow')
    }
  }

  /** Closes every subscriber (server shutdown). */
  close(): void {
    if (this.pingTimer) clearInterval(this.pingTimer)
    for (const sub of [...this.subs]) this.cut(sub, 1001, 'server shutting down')
  }
}
