/**
 * SubscriptionClient: a resilient consumer of an XRPC event stream (e.g. a relay's or PDS's
 * com.atproto.sync.subscribeRepos). Resumes from the caller's cursor, processes message frames one at a
 * time in order, pauses the socket when it falls behind, and reconnects with capped exponential backoff.
 */
import { WebSocket, type RawData } from 'ws'
import type { IncomingMessage } from 'node:http'
import { cborDecode } from '../data/index.js'
import { bodySeq, checkFrameBody, matchMessageHeader } from './commit-frame.js'
import { decodeFrame, FrameError } from './frames.js'

export interface StreamEvent {
  /** header type, e.g. `#commit` */
  t: string
  body: Record<string, unknown>
  /** body.seq when it is an integer */
  seq?: number
  /** the frame as received */
  frame: Uint8Array
  /** with `rawTypes`: where the body starts in `frame` (the body is decoded only when `body` is read) */
  bodyStart?: number
}

/** A message of one of `rawTypes`: checked, not decoded (its body is decoded the first time it is read). */
class RawStreamEvent implements StreamEvent {
  seq?: number
  private decoded: Record<string, unknown> | undefined = undefined
  constructor(
    readonly t: string,
    readonly frame: Uint8Array,
    readonly bodyStart: number,
  ) {}

  get body(): Record<string, unknown> {
    return (this.decoded ??= cborDecode<Record<string, unknown>>(this.frame.subarray(this.bodyStart)))
  }
}

export interface StreamInfo {
  name: string
  message?: string
}

/** The server sent an error frame (e.g. FutureCursor, ConsumerTooSlow). */
export class StreamErrorFrame extends Error {
  constructor(
    readonly error: string,
    readonly errorMessage?: string,
  ) {
    super(errorMessage ? `${error}: ${errorMessage}` : error)
    this.name = 'StreamErrorFrame'
  }
}

/** The server refused the upgrade with an HTTP status (XRPC error body when it sent one). */
export class StreamHttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: string | undefined,
    readonly errorMessage: string | undefined,
  ) {
    super(`subscription refused: HTTP ${status}${error ? ` ${error}` : ''}${errorMessage ? `: ${errorMessage}` : ''}`)
    this.name = 'StreamHttpError'
  }
}

/** onEvent threw; the client reports it and goes on with the next event. */
export class StreamHandlerError extends Error {
  constructor(
    readonly event: StreamEvent,
    cause: unknown,
  ) {
    super(`event handler failed for ${event.t}${event.seq !== undefined ? ` seq ${event.seq}` : ''}`, { cause })
    this.name = 'StreamHandlerError'
  }
}

export interface SubscriptionClientOptions {
  /** endpoint URL, e.g. `wss://relay.example/xrpc/com.atproto.sync.subscribeRepos` (http(s) is turned into ws(s)) */
  url: string
  /** last processed seq, asked before every (re)connection; undefined → live tail */
  getCursor?: () => Promise<number | undefined> | number | undefined
  /** extra query parameters */
  params?: Record<string, string | number | boolean | readonly string[]>
  /** called for every message frame except `#info`, one at a time, in stream order */
  onEvent: (evt: StreamEvent) => Promise<void> | void
  /** `#info` frames (e.g. `{name: "OutdatedCursor"}`) */
  onInfo?: (info: StreamInfo) => void
  /** error frames (StreamErrorFrame), refused upgrades (StreamHttpError), malformed frames (FrameError),
   *  handler failures (StreamHandlerError), connection errors */
  onError?: (err: Error) => void
  onOpen?: () => void
  onClose?: (code: number, reason: string) => void
  /** first reconnect delay (default 1 s) */
  minBackoffMs?: number
  /** reconnect delay ceiling (default 30 s) */
  maxBackoffMs?: number
  /** pause reading from the socket when this many frames wait to be processed (default 100) */
  highWaterMark?: number
  /** resume once the backlog is down to this (default highWaterMark / 2) */
  lowWaterMark?: number
  /** largest frame accepted (default 8 MiB; the spec caps frames at 5 MB) */
  maxPayload?: number
  /** ping the server this often and reconnect if it does not answer by the next ping (default 30 s, 0 = off) */
  heartbeatIntervalMs?: number
  /** WebSocket handshake timeout (default 15 s) */
  connectTimeoutMs?: number
  headers?: Record<string, string>
  /** name resolution for the connection (e.g. publicOnlyLookup: refuse internal addresses at connect time) */
  lookup?: import('node:net').LookupFunction
  /** drop frames whose seq is <= the last seq seen on this connection (default true) */
  dropStaleSeq?: boolean
  /**
   * Message types handed to onEvent undecoded (e.g. `['#commit']` for a relay that forwards the bytes): a
   * frame whose header is the canonical `{op: 1, t}` of one of them is checked exactly as decodeFrame checks
   * it (the same frames are refused, the same way), its seq read in place, and its body decoded only if
   * `evt.body` is read. `evt.bodyStart` is set. Other frames are decoded as usual.
   */
  rawTypes?: readonly string[]
}

interface Connection {
  ws: WebSocket
  done: Promise<{ events: number }>
  abort(): void
}

export class SubscriptionClient {
  private readonly opts: SubscriptionClientOptions
  private running = false
  private runPromise: Promise<void> | null = null
  private current: Connection | null = null
  private wakeSleep: (() => void) | null = null
  private attempt = 0
  readonly stats = { connects: 0, frames: 0, events: 0, duplicates: 0, errors: 0 }

  constructor(opts: SubscriptionClientOptions) {
    this.opts = opts
  }

  get isRunning(): boolean {
    return this.running
  }

  get connected(): boolean {
    return this.current?.ws.readyState === WebSocket.OPEN
  }

  /** Starts connecting (idempotent). */
  start(): this {
    if (this.running) return this
    this.running = true
    this.runPromise = this.run()
    return this
  }

  /** Stops after the event being processed (if any); queued frames are dropped. */
  async stop(): Promise<void> {
    this.running = false
    this.wakeSleep?.()
    this.current?.abort()
    await this.runPromise
    this.runPromise = null
  }

  private report(err: Error): void {
    this.stats.errors++
    try {
      this.opts.onError?.(err)
    } catch {
      // a throwing error handler must not break the stream
    }
  }

  /** capped exponential backoff with jitter: between half and all of min * 2^attempt, capped */
  backoffMs(attempt: number): number {
    const min = this.opts.minBackoffMs ?? 1_000
    const max = this.opts.maxBackoffMs ?? 30_000
    const base = Math.min(max, min * 2 ** Math.min(attempt, 30))
    return Math.round(base / 2 + Math.random() * (base / 2))
  }

  private async run(): Promise<void> {
    while (this.running) {
      let cursor: number | undefined
      try {
        cursor = await this.opts.getCursor?.()
      } catch (err) {
        this.report(err instanceof Error ? err : new Error(String(err)))
        cursor = undefined
        await this.sleep(this.backoffMs(this.attempt++))
        continue
      }
      if (!this.running) break
      const conn = this.connect(cursor)
      this.current = conn
      const { events } = await conn.done
      this.current = null
      if (!this.running) break
      if (events > 0) this.attempt = 0
      await this.sleep(this.backoffMs(this.attempt++))
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wakeSleep = () => {
        this.wakeSleep = null
        done()
      }
    })
  }

  private buildUrl(cursor: number | undefined): string {
    const url = new URL(this.opts.url)
    if (url.protocol === 'http:') url.protocol = 'ws:'
    else if (url.protocol === 'https:') url.protocol = 'wss:'
    for (const [k, v] of Object.entries(this.opts.params ?? {})) {
      url.searchParams.delete(k)
      if (Array.isArray(v)) for (const item of v) url.searchParams.append(k, String(item))
      else url.searchParams.set(k, String(v))
    }
    if (cursor !== undefined) url.searchParams.set('cursor', String(cursor))
    return url.toString()
  }

  private connect(cursor: number | undefined): Connection {
    const hwm = Math.max(1, this.opts.highWaterMark ?? 100)
    const lwm = Math.min(hwm - 1, this.opts.lowWaterMark ?? Math.floor(hwm / 2))
    const dropStale = this.opts.dropStaleSeq ?? true
    const ws = new WebSocket(this.buildUrl(cursor), {
      perMessageDeflate: false,
      maxPayload: this.opts.maxPayload ?? 8 * 1024 * 1024,
      handshakeTimeout: this.opts.connectTimeoutMs ?? 15_000,
      headers: this.opts.headers,
      ...(this.opts.lookup ? { lookup: this.opts.lookup } : {}),
    })
    this.stats.connects++

    const queue: Buffer[] = []
    let paused = false
    let processing = false
    let socketClosed = false
    let aborted = false // stop processing what is queued (stop() or a broken stream)
    let suppressErrors = false
    let events = 0
    let lastSeq = cursor ?? 0
    let alive = true
    let heartbeat: NodeJS.Timeout | null = null
    let resolveDone!: (v: { events: number }) => void
    const done = new Promise<{ events: number }>((r) => (resolveDone = r))

    const finish = () => {
      if (!socketClosed || processing) return
      if (heartbeat) clearInterval(heartbeat)
      heartbeat = null
      queue.length = 0
      resolveDone({ events })
    }

    const drop = () => {
      aborted = true
      queue.length = 0
      ws.terminate()
    }

    const rawTypes = this.opts.rawTypes ?? []
    const handleRaw = async (data: Buffer, t: string, bodyStart: number): Promise<void> => {
      let seq: number | undefined
      try {
        checkFrameBody(data, bodyStart)
        seq = bodySeq(data, bodyStart)
      } catch (err) {
        this.report(err instanceof FrameError ? err : new FrameError(String(err)))
        drop()
        return
      }
      if (seq !== undefined) {
        if (dropStale && seq <= lastSeq) {
          this.stats.duplicates++
          return
        }
        lastSeq = seq
      }
      const evt = new RawStreamEvent(t, data, bodyStart)
      if (seq !== undefined) evt.seq = seq
      events++
      this.stats.events++
      try {
        await this.opts.onEvent(evt)
      } catch (err) {
        this.report(new StreamHandlerError(evt, err))
      }
    }

    const handle = async (data: Buffer): Promise<void> => {
      if (rawTypes.length > 0) {
        const raw = matchMessageHeader(data, rawTypes)
        if (raw && raw.t !== '#info') return handleRaw(data, raw.t, raw.bodyStart)
      }
      let frame
      try {
        frame = decodeFrame(data)
      } catch (err) {
        this.report(err instanceof FrameError ? err : new FrameError(String(err)))
        drop() // malformed framing: drop the connection, the cursor resumes where we were
        return
      }
      if (frame.op === 'unknown') return
      if (frame.op === -1) {
        this.report(new StreamErrorFrame(frame.error, frame.message))
        aborted = true // the server closes after an error frame
        queue.length = 0
        return
      }
      if (frame.t === '#info') {
        const name = typeof frame.body.name === 'string' ? frame.body.name : 'unknown'
        const message = typeof frame.body.message === 'string' ? frame.body.message : undefined
        try {
          this.opts.onInfo?.(message === undefined ? { name } : { name, message })
        } catch (err) {
          this.report(err instanceof Error ? err : new Error(String(err)))
        }
        return
      }
      const seq = Number.isSafeInteger(frame.body.seq) ? (frame.body.seq as number) : undefined
      if (seq !== undefined) {
        if (dropStale && seq <= lastSeq) {
          this.stats.duplicates++
          return
        }
        lastSeq = seq
      }
      const evt: StreamEvent = { t: frame.t, body: frame.body, frame: data }
      if (seq !== undefined) evt.seq = seq
      events++
      this.stats.events++
      try {
        await this.opts.onEvent(evt)
      } catch (err) {
        this.report(new StreamHandlerError(evt, err))
      }
    }

    const pump = async () => {
      if (processing) return
      processing = true
      try {
        while (queue.length > 0 && !aborted && this.running) {
          const data = queue.shift()!
          if (paused && queue.length <= lwm && !socketClosed) {
            paused = false
            alive = true
            ws.resume()
          }
          await handle(data)
        }
      } finally {
        processing = false
        finish()
      }
    }

    ws.on('open', () => {
      try {
        this.opts.onOpen?.()
      } catch {
        // ignore
      }
      const every = this.opts.heartbeatIntervalMs ?? 30_000
      if (every > 0) {
        heartbeat = setInterval(() => {
          if (paused || ws.readyState !== WebSocket.OPEN) return // a paused socket cannot read the pong
          if (!alive) {
            this.report(new Error('subscription heartbeat timed out'))
            ws.terminate()
            return
          }
          alive = false
          ws.ping()
        }, every)
        heartbeat.unref()
      }
    })
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (aborted) return
      alive = true
      this.stats.frames++
      if (!isBinary) {
        this.report(new FrameError('text frame on an event stream'))
        drop()
        return
      }
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
      queue.push(buf)
      if (!paused && queue.length >= hwm) {
        paused = true
        ws.pause()
      }
      void pump()
    })
    ws.on('pong', () => {
      alive = true
    })
    ws.on('ping', () => {
      alive = true
    })
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      suppressErrors = true
      const chunks: Buffer[] = []
      let size = 0
      const give = () => {
        clearTimeout(timer)
        let error: string | undefined
        let message: string | undefined
        try {
          const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: unknown; message?: unknown }
          if (typeof json.error === 'string') error = json.error
          if (typeof json.message === 'string') message = json.message
        } catch {
          // not JSON: status only
        }
        this.report(new StreamHttpError(res.statusCode ?? 0, error, message))
        ws.terminate()
      }
      const timer = setTimeout(give, 5_000)
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size <= 16 * 1024) chunks.push(chunk)
      })
      res.once('end', give)
      res.once('error', give)
    })
    ws.on('error', (err) => {
      if (suppressErrors || aborted) return
      this.report(err)
    })
    ws.on('close', (code, reason) => {
      socketClosed = true
      try {
        this.opts.onClose?.(code, reason.toString())
      } catch {
        // ignore
      }
      if (!this.running) aborted = true
      finish()
    })

    return {
      ws,
      done,
      abort: () => {
        aborted = true
        queue.length = 0
        if (ws.readyState === WebSocket.OPEN) {
          ws.close(1000, 'client stopping')
          setTimeout(() => ws.terminate(), 2_000).unref()
        } else {
          ws.terminate()
        }
      },
    }
  }
}
