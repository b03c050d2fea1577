/**
 * The relay's Jetstream endpoints, JSON events built from the relay's verified outbound stream and filtered
 * per subscriber:
 * - `GET /subscribe`: Jetstream's v1 wire (as the 2026 Jetstream still serves it there);
 * - `GET /xrpc/network.bsky.jetstream.subscribeEvents`: Jetstream v2, xrpc.v1.json message frames,
 *   server-push only, `CursorTooOld` for a sequence cursor the log no longer holds. Subprotocol (proposal
 *   0015): `xrpc.v1.json` echoed when offered, nothing echoed without an offer (same framing), an offer
 *   without it refused before the upgrade (400 InvalidRequest naming it).
 *
 * Cost: an event is converted (CAR read, record decode, JSON encode) once, and each wire shape encoded and
 * compressed at most once, for all subscribers; a subscriber only compares the kind, DID and collection
 * carried next to the bytes. Converted events are kept in a bounded cache keyed by relay seq, so live
 * delivery and any number of replays over the same range decode each logged event once. Nothing is built
 * while no subscriber is live.
 *
 * Cursor: a value below 10^15 is a Jetstream seq (relay seq × 1024 + op index, see events.ts), inclusive;
 * at or above it a unix-µs time (each outbound event has a Jetstream clock, relay_event_time: its n ops get
 * time_us t … t+n-1, strictly increasing across events). A cursor replays from the relay's event log, page
 * by page, only up to the outbox's `publishedSeq` (events committed but not yet durable are not read), then
 * switches to live in the same synchronous step as the read that found nothing more (a batch is published,
 * and `publishedSeq` moved, in one step once its WAL sync completed), so nothing is lost or sent twice. On /subscribe a cursor
 * older than the log starts at its oldest event; on v2 a seq cursor older than the log is refused before the
 * upgrade (400 CursorTooOld) and an older time cursor starts at the oldest event after an #info
 * OutdatedCursor frame.
 *
 * Slow subscribers: a socket holding more than `maxQueuedBytes` unsent bytes is closed (v1: close 1008
 * ConsumerTooSlow; v2: an error frame ConsumerTooSlow, then the close).
 *
 * Writes: a subscriber's socket is corked at its first message in a turn of the event loop and uncorked
 * right after that turn's synchronous work (the outbox publishes a group-committed batch in one step, a
 * replay sends a page in one step), so what a subscriber gets from one batch leaves in one write instead of
 * one per message (a write is most of the cost of a message: measured ~20 µs per write here).
 */
import type { IncomingMessage } from 'node:http'
import { createRequire } from 'node:module'
import { decodeFrame, mountSubscription, SubscriptionHttpError } from '@stratos/core/stream'
import type SqliteDatabase from 'better-sqlite3'
import type { WebSocket } from 'ws'
import type { Db } from '../db.js'
import type { Outbox, OutboundType, PublishedEvent } from '../outbox/outbox.js'
import type { ZstdDictionary } from './dictionary.js'
import {
  relaySeqOf,
  SEQ_STRIDE,
  toJetstreamItems,
  V2_NSID,
  v1Bytes,
  v2Bytes,
  v2Error,
  v2Info,
  type JetstreamItem,
} from './events.js'
import {
  negotiateV2Subprotocol,
  offeredSubprotocols,
  OptionsError,
  V2_SUBPROTOCOL,
  parseSubscribeEventsQuery,
  parseSubscribeQuery,
  parseSubscriberMessage,
  type Filter,
  type SubscribeParams,
} from './filter.js'

// loaded with Node's own resolution (its CommonJS build), the same module whatever bundles or transforms this file
const zstd = createRequire(import.meta.url)('@bokuweb/zstd-wasm') as typeof import('@bokuweb/zstd-wasm')
const { compress: zstdCompress, createCCtx, freeCCtx, decompressUsingDict, createDCtx, init: zstdInit } = zstd

/**
 * zstd-wasm initialised once per process: its init() instantiates the wasm module again (new memory) and
 * returns before that finishes when called a second time, which would invalidate contexts already made.
 */
let zstdReady: Promise<void> | null = null

/**
 * Dictionary compression: zstd-codec, whose prepared dictionaries (ZSTD_createCDict) are digested once;
 * zstd-wasm reloads the dictionary for every frame (measured 112 vs 39 µs per event with Jetstream's 110 KB
 * dictionary).
 */
interface CodecDict {
  close(): void
}
interface ZstdCodecApi {
  Simple: new () => { compressUsingDict(bytes: Uint8Array, dict: CodecDict): Uint8Array | null }
  Dict: { Compression: new (dict: Uint8Array, level: number) => CodecDict }
}
let codecReady: Promise<ZstdCodecApi> | null = null
function loadCodec(): Promise<ZstdCodecApi> {
  const { ZstdCodec } = createRequire(import.meta.url)('zstd-codec') as { ZstdCodec: { run(cb: (zstd: ZstdCodecApi) => void): void } }
  return (codecReady ??= new Promise((resolve) => ZstdCodec.run(resolve)))
}

/** A dictionary prepared for compression. */
interface Prepared {
  dict: ZstdDictionary
  compress(bytes: Uint8Array): Uint8Array
}

function initZstd(): Promise<void> {
  return (zstdReady ??= (async () => {
    try {
      freeCCtx(createCCtx()) // already initialised (by another user of the module in this process)
    } catch {
      await zstdInit()
    }
  })())
}

export interface JetstreamHubOptions {
  db: Db
  outbox: Outbox
  maxQueuedBytes: number
  zstdLevel?: number
  pingIntervalMs?: number
  /** open subscriptions from one client address (default 32) */
  maxPerIp?: number
  /** /subscribe compress=true: frames compressed with this dictionary (without one: plain zstd frames) */
  zstdDictionary?: ZstdDictionary | null
  /** v2 zstdDictionary=<id>: the one dictionary served (without one, v2 compression is refused) */
  zstdDictionaryV2?: ZstdDictionary | null
  /** converted events kept for replays and live delivery, in (approximate) bytes; default 32 MiB */
  replayCacheBytes?: number
  onError?: (err: unknown) => void
}

export interface JetstreamStats {
  subscribers: number
  /** outbound events converted (decoded and JSON-encoded), live or for a replay */
  eventsConverted: number
  /** outbound events a replay took from the cache instead of converting them again */
  replayCacheHits: number
  /** Jetstream messages sent */
  messagesSent: number
  bytesSent: number
  /** messages compressed (once per event and wire shape) */
  compressed: number
  slowCut: number
}

const REPLAY_PAGE = 500
const REPLAY_LOW_WATER = 1024 * 1024
const V2_PATH = `/xrpc/${V2_NSID}`
const DICTIONARY_PATH = '/xrpc/network.bsky.jetstream.getZstdDictionary'

interface Row {
  seq: number
  type: string
  did: string | null
  frame: Uint8Array
  time: number
  time_us: number | null
}

interface Corkable {
  cork(): void
  uncork(): void
  destroyed?: boolean
}

class Subscriber {
  state: 'hello' | 'replay' | 'live' | 'closed' = 'hello'
  /** its socket is corked until the end of this turn */
  corked = false
  filter: Filter
  sent = 0
  readonly v2: boolean
  readonly compress: boolean
  constructor(
    readonly ws: WebSocket,
    readonly params: SubscribeParams,
    readonly remoteAddress: string | undefined,
  ) {
    this.filter = params.filter
    this.v2 = params.version === 2
    this.compress = this.v2 ? params.zstdDictionary !== undefined : params.compress
  }
}

/** Converted events by relay seq, least recently used first, bounded by an estimate of their bytes. */
class ItemCache {
  private readonly map = new Map<number, { items: JetstreamItem[]; bytes: number }>()
  private total = 0
  constructor(private readonly maxBytes: number) {}

  get(seq: number): JetstreamItem[] | undefined {
    const hit = this.map.get(seq)
    if (!hit) return undefined
    this.map.delete(seq)
    this.map.set(seq, hit)
    return hit.items
  }

  set(seq: number, items: JetstreamItem[]): void {
    if (this.maxBytes <= 0 || this.map.has(seq)) return
    // the kind-specific JSON, and room for the encoded shapes built from it
    let bytes = 64
    for (const it of items) bytes += 3 * it.inner.length + 256
    this.map.set(seq, { items, bytes })
    this.total += bytes
    for (const [k, v] of this.map) {
      if (this.total <= this.maxBytes) break
      this.map.delete(k)
      this.total -= v.bytes
    }
  }
}

export class JetstreamHub {
  private readonly subs = new Set<Subscriber>()
  private liveCount = 0
  private readonly cache: ItemCache
  private readonly stmts: {
    rows: SqliteDatabase.Statement<[number, number, number], Row>
    atOrBefore: SqliteDatabase.Statement<[number, number], { seq: number }>
    earliest: SqliteDatabase.Statement<[], { seq: number | null }>
  }
  private readonly stats_: JetstreamStats = {
    subscribers: 0,
    eventsConverted: 0,
    replayCacheHits: 0,
    messagesSent: 0,
    bytesSent: 0,
    compressed: 0,
    slowCut: 0,
  }
  private pingTimer: NodeJS.Timeout | null = null
  /** subscribers whose socket is corked until the end of this turn */
  private readonly corked: Subscriber[] = []

  private constructor(
    private readonly o: JetstreamHubOptions,
    private readonly dictV1: Prepared | null,
    private readonly dictV2: Prepared | null,
  ) {
    this.stmts = {
      rows: o.db.prepare(
        `SELECT e.seq AS seq, e.type AS type, e.did AS did, e.frame AS frame, e.time AS time, t.time_us AS time_us
         FROM relay_event e LEFT JOIN relay_event_time t ON t.seq = e.seq WHERE e.seq > ? AND e.seq <= ? ORDER BY e.seq LIMIT ?`,
      ),
      atOrBefore: o.db.prepare('SELECT seq FROM relay_event_time WHERE time_us <= ? AND seq <= ? ORDER BY time_us DESC LIMIT 1'),
      earliest: o.db.prepare('SELECT MIN(seq) AS seq FROM relay_event'),
    }
    this.cache = new ItemCache(o.replayCacheBytes ?? 32 * 1024 * 1024)
    o.outbox.onPublish((evt) => this.publish(evt))
    const ping = o.pingIntervalMs ?? 30_000
    if (ping > 0) {
      this.pingTimer = setInterval(() => {
        for (const s of this.subs) if (s.ws.readyState === s.ws.OPEN) s.ws.ping()
      }, ping)
      this.pingTimer.unref()
    }
  }

  /**
   * Starts the hub. A dictionary is prepared once and checked: a sample compressed with it must decode, with
   * the same dictionary, by the other zstd library (zstd-wasm), or start-up fails.
   */
  static async create(o: JetstreamHubOptions): Promise<JetstreamHub> {
    await initZstd()
    const prepared: (Prepared | null)[] = []
    for (const dict of [o.zstdDictionary, o.zstdDictionaryV2]) {
      if (!dict) {
        prepared.push(null)
        continue
      }
      const codec = await loadCodec()
      const simple = new codec.Simple()
      let cdict: CodecDict
      try {
        cdict = new codec.Dict.Compression(dict.bytes, o.zstdLevel ?? 3)
        const sample = Buffer.from('{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"operation":"create"}}')
        const c = simple.compressUsingDict(sample, cdict)
        if (!c) throw new Error('compression failed')
        const back = decompressUsingDict(createDCtx(), c, dict.bytes)
        if (!Buffer.from(back).equals(sample)) throw new Error('round trip changed the bytes')
      } catch (err) {
        throw new Error(`zstd dictionary ${dict.path} is not usable: ${(err as Error).message}`)
      }
      prepared.push({
        dict,
        compress: (bytes) => {
          const out = simple.compressUsingDict(bytes, cdict)
          if (!out) throw new Error('zstd compression failed')
          return out
        },
      })
    }
    return new JetstreamHub(o, prepared[0]!, prepared[1]!)
  }

  /** Mounts GET /subscribe (v1), the v2 subscription and getZstdDictionary on the relay's HTTP server. */
  mount(app: Parameters<typeof mountSubscription>[0]): void {
    this.mountVersion(app, 1)
    this.mountVersion(app, 2)
    app.get(DICTIONARY_PATH, async (req, reply) => {
      const dict = this.o.zstdDictionaryV2
      const raw = (req.query as Record<string, unknown>).id
      const id = raw === undefined ? undefined : Number(raw)
      if (!dict || (id !== undefined && id !== dict.id)) {
        reply.code(400)
        return {
          error: 'DictionaryNotFound',
          message: dict
            ? `no zstd dictionary with id ${String(raw)}; the current one is ${dict.id}`
            : 'this relay serves no zstd dictionary (RELAY_JETSTREAM_V2_ZSTD_DICTIONARY is not set)',
        }
      }
      reply.header('content-type', 'application/octet-stream').header('cache-control', 'public, max-age=31536000, immutable')
      return reply.send(Buffer.from(dict.bytes))
    })
  }

  private mountVersion(app: Parameters<typeof mountSubscription>[0], version: 1 | 2): void {
    const parsed = new WeakMap<IncomingMessage, SubscribeParams>()
    const parse = (req: IncomingMessage): SubscribeParams => {
      const query = new URL(req.url ?? '/', 'http://x').searchParams
      const zstd = String(req.headers['socket-encoding'] ?? '').toLowerCase().includes('zstd')
      const offered = offeredSubprotocols(req.headers['sec-websocket-protocol'])
      if (version === 2) {
        negotiateV2Subprotocol(offered)
        return parseSubscribeEventsQuery(query, zstd)
      }
      return parseSubscribeQuery(query, zstd) // v1 predates subprotocols: an offer is never selected
    }
    mountSubscription(
      app,
      version === 2 ? V2_NSID : 'jetstream.subscribe',
      (ws, req) => {
        const params = parsed.get(req) ?? parse(req)
        this.attach(ws, params, req.socket.remoteAddress)
      },
      {
        path: version === 2 ? V2_PATH : '/subscribe',
        maxPerIp: this.o.maxPerIp,
        // an offer authorize let through: v2 echoes xrpc.v1.json when offered; v1 selects none (as Jetstream)
        handleProtocols: (offered) => (version === 2 && offered.has(V2_SUBPROTOCOL) ? V2_SUBPROTOCOL : false),
        maxPayload: version === 2 ? 4096 : 1024 * 1024, // v1: options_update with up to 10,000 DIDs
        parseParams: () => ({}),
        // async: what it throws becomes the refusal (400 with the XRPC error), never an uncaught exception
        authorize: async (req) => {
          try {
            const p = parse(req)
            if (p.version === 2) this.checkV2(p)
            parsed.set(req, p)
          } catch (err) {
            if (err instanceof OptionsError) throw new SubscriptionHttpError(400, 'InvalidRequest', err.message)
            throw err
          }
        },
      },
    )
  }

  /** v2, before the upgrade: the dictionary asked for is the one served; a seq cursor is still in the log. */
  private checkV2(p: SubscribeParams): void {
    if (p.zstdDictionary !== undefined) {
      const dict = this.o.zstdDictionaryV2
      if (!dict) {
        throw new SubscriptionHttpError(
          400,
          'UnknownZstdDictionary',
          'this relay has no zstd dictionary for this endpoint (its operator did not set RELAY_JETSTREAM_V2_ZSTD_DICTIONARY); connect without zstdDictionary',
        )
      }
      if (dict.id !== p.zstdDictionary) {
        throw new SubscriptionHttpError(
          400,
          'UnknownZstdDictionary',
          `unknown zstd dictionary id ${p.zstdDictionary}; the current dictionary id is ${dict.id} (fetch it with network.bsky.jetstream.getZstdDictionary)`,
        )
      }
    }
    if (p.cursorSeq === undefined) return
    const s = relaySeqOf(p.cursorSeq)
    const head = this.o.outbox.publishedSeq
    if (s > head) return // the future: live
    const earliest = this.stmts.earliest.get()?.seq ?? null
    // events before the oldest logged one were pruned (seqs start at 1)
    const lost = earliest === null ? head > 0 : s < earliest && earliest > 1
    if (lost) {
      const floor = (earliest ?? head + 1) * SEQ_STRIDE
      throw new SubscriptionHttpError(400, 'CursorTooOld', `cursor ${p.cursorSeq} is older than the relay's log, which starts at seq ${floor}`)
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
      if (sub.v2) {
        // server-push only
        this.cut(sub, 1008, 'this endpoint takes no messages')
        return
      }
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
    let from: ((item: JetstreamItem) => boolean) | null = null
    if (p.cursorSeq !== undefined) {
      const c = p.cursorSeq
      const s = relaySeqOf(c)
      if (s <= this.o.outbox.publishedSeq) {
        // inclusive; older than the log: from its oldest event (v2 refused it before the upgrade)
        after = s - 1
        from = (item) => item.seq >= c
      }
    } else if (p.cursorUs !== undefined) {
      const t = p.cursorUs
      const at = this.stmts.atOrBefore.get(t, this.o.outbox.publishedSeq)
      after = at ? at.seq - 1 : 0
      // v1 sends what follows the last time_us a client saw; v2 what was witnessed at or after the time
      from = sub.v2 ? (item) => item.timeUs >= t : (item) => item.timeUs > t
      if (sub.v2 && !at) {
        const earliest = this.stmts.earliest.get()?.seq ?? null
        if (earliest !== null && earliest > 1) {
          this.send(sub, v2Info('OutdatedCursor', `cursor ${t} is older than the relay's log; resuming from seq ${earliest * SEQ_STRIDE}`))
        }
      }
    }
    if (after === null) return this.goLive(sub)
    sub.state = 'replay'
    void this.replay(sub, after, from).catch((err) => {
      this.o.onError?.(err)
      this.cut(sub, 1011, 'replay failed')
    })
  }

  private async replay(sub: Subscriber, after: number, from: ((item: JetstreamItem) => boolean) | null): Promise<void> {
    for (;;) {
      if (sub.state !== 'replay') return
      const rows = this.stmts.rows.all(after, this.o.outbox.publishedSeq, REPLAY_PAGE)
      if (rows.length === 0) {
        // caught up: live from here, in this same step (no event can be published in between)
        this.goLive(sub)
        return
      }
      for (const row of rows) {
        after = row.seq
        this.deliver(sub, this.rowItems(row), from)
        if (sub.state !== 'replay') return
      }
      while (sub.state === 'replay' && sub.ws.bufferedAmount > REPLAY_LOW_WATER) {
        await new Promise((r) => setTimeout(r, 5))
      }
      await new Promise((r) => setImmediate(r))
    }
  }

  /** The Jetstream events of a logged event: from the cache, or converted once and cached. */
  private rowItems(row: Row): JetstreamItem[] {
    const cached = this.cache.get(row.seq)
    if (cached) {
      this.stats_.replayCacheHits++
      return cached
    }
    const frame = decodeFrame(row.frame)
    if (frame.op !== 1) return []
    const evt: PublishedEvent = {
      seq: row.seq,
      timeUs: row.time_us ?? row.time * 1000,
      type: frame.t as OutboundType,
      did: row.did ?? '',
      body: frame.body,
    }
    return this.convert(evt)
  }

  private convert(evt: PublishedEvent): JetstreamItem[] {
    let items: JetstreamItem[]
    try {
      items = toJetstreamItems(evt)
    } catch (err) {
      this.o.onError?.(err)
      items = []
    }
    this.stats_.eventsConverted++
    this.cache.set(evt.seq, items)
    return items
  }

  /** Live: called by the outbox right after each event is committed. */
  publish(evt: PublishedEvent): void {
    if (this.liveCount === 0) return
    const items = this.convert(evt)
    if (items.length === 0) return
    for (const sub of this.subs) {
      if (sub.state === 'live') this.deliver(sub, items, null)
    }
  }

  private compressed(item: JetstreamItem, v2: boolean): Buffer {
    if (v2) return (item.zstdV2 ??= this.compress(v2Bytes(item), this.dictV2))
    return (item.zstdV1 ??= this.compress(v1Bytes(item)!, this.dictV1))
  }

  private compress(buf: Buffer, dict: Prepared | null): Buffer {
    this.stats_.compressed++
    // without a dictionary: plain zstd frames (dictionary id 0), which decoders holding a dictionary decode too
    const out = dict ? dict.compress(buf) : zstdCompress(buf, this.o.zstdLevel ?? 3)
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength)
  }

  private send(sub: Subscriber, plain: Buffer): void {
    const buf = sub.compress ? this.compress(plain, sub.v2 ? this.dictV2 : this.dictV1) : plain
    this.cork(sub)
    sub.ws.send(buf, { binary: sub.compress })
  }

  /** Corks the subscriber's socket until the end of this turn (once per turn). */
  private cork(sub: Subscriber): void {
    if (sub.corked) return
    const socket = (sub.ws as unknown as { _socket?: Corkable })._socket
    if (!socket || socket.destroyed) return
    socket.cork()
    sub.corked = true
    if (this.corked.push(sub) === 1) process.nextTick(() => this.uncorkAll())
  }

  private uncorkAll(): void {
    for (const sub of this.corked.splice(0)) {
      sub.corked = false
      const socket = (sub.ws as unknown as { _socket?: Corkable })._socket
      socket?.uncork()
    }
  }

  private deliver(sub: Subscriber, items: JetstreamItem[], from: ((item: JetstreamItem) => boolean) | null): void {
    const { filter, v2 } = sub
    for (const item of items) {
      if (from && !from(item)) continue
      if (!filter.matches(item)) continue
      const plain = v2 ? v2Bytes(item) : v1Bytes(item)
      if (!plain) continue // v1 has no sync events
      if (filter.maxMessageSizeBytes > 0 && plain.byteLength > filter.maxMessageSizeBytes) continue
      const buf = sub.compress ? this.compressed(item, v2) : plain
      this.cork(sub)
      sub.ws.send(buf, { binary: sub.compress })
      sub.sent++
      this.stats_.messagesSent++
      this.stats_.bytesSent += buf.byteLength
    }
    if (sub.ws.bufferedAmount > this.o.maxQueuedBytes) {
      this.stats_.slowCut++
      if (v2) this.send(sub, v2Error('ConsumerTooSlow', 'the subscriber fell too far behind'))
      this.cut(sub, 1008, 'ConsumerTooSlow')
    }
  }

  /** Closes every subscriber (server shutdown). */
  close(): void {
    if (this.pingTimer) clearInterval(this.pingTimer)
    for (const sub of [...this.subs]) this.cut(sub, 1001, 'server shutting down')
  }
}
