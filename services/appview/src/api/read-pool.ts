/**
 * Read workers: the read-only XRPC methods answered in worker threads, each with its own read-only
 * connection to the SQLite file (WAL: readers see every committed transaction and never wait for the
 * writer), its own hydrator and views. The main thread keeps HTTP, auth and every write; a worker runs
 * the method's handler (the same code as in the main thread) inside one read transaction (a consistent
 * snapshot: the viewer's repo rev is read in it too, before the handler's reads), serializes the answer to
 * JSON bytes and hands them back (the buffer moved, not copied), so both cores serve reads.
 *
 * Until the workers are up, and for PostgreSQL or an in-memory SQLite database, the methods run in the
 * main thread as before.
 */
import type { Worker } from 'node:worker_threads'
import { startWorker } from '@stratos/core/workers'
import { XRPCError } from '@stratos/core/xrpc'
import type { AcceptedLabeler } from '../labels/labels.js'
import type { ChangeFeed } from '../hydration/change-feed.js'

/** The methods that only read (no input, no writes, no network calls): the ones read workers answer. */
export const WORKER_METHODS: ReadonlySet<string> = new Set([
  'app.bsky.actor.getProfile',
  'app.bsky.actor.getProfiles',
  'app.bsky.feed.getActorLikes',
  'app.bsky.feed.getAuthorFeed',
  'app.bsky.feed.getLikes',
  'app.bsky.feed.getListFeed',
  'app.bsky.feed.getPostThread',
  'app.bsky.feed.getPosts',
  'app.bsky.feed.getQuotes',
  'app.bsky.feed.getRepostedBy',
  'app.bsky.feed.getTimeline',
  'app.bsky.graph.getFollowers',
  'app.bsky.graph.getFollows',
  'app.bsky.graph.getList',
  'app.bsky.graph.getLists',
  'app.bsky.notification.listNotifications',
])

/** One request for a read worker. */
export interface ReadTask {
  nsid: string
  params: Record<string, unknown>
  /** the authenticated viewer (service JWT iss), or null */
  viewer: string | null
  labelers: AcceptedLabeler[]
  /** the AppView's public URL (image URLs) */
  publicUrl: string
  /** validate the output against the lexicons (APPVIEW_VALIDATE_OUTPUT) */
  validate: boolean
}

/** A worker's answer: the JSON body's UTF-8 bytes and headers, or the XRPC error to answer with. */
export type ReadResult =
  | { ok: true; body: Uint8Array; headers: Record<string, string> }
  | { ok: false; status: number; error: string; message: string; headers: Record<string, string> }

/** kept between answers (one at a time per thread): where an answer's JSON is written, grown as needed */
let out = Buffer.allocUnsafeSlow(1 << 16)
/** a buffer grown past this is dropped after the answer (not kept that large) */
const OUT_KEEP_BYTES = 16 << 20
/** bytes written to `out` so far in the answer being encoded */
let at = 0
/** objects this close to the root are written property by property; deeper ones with one JSON.stringify */
const SPLIT_DEPTH = 2
/** arrays of at least this many elements (within SPLIT_ARRAY_MAX_DEPTH) are written element by element */
const SPLIT_ARRAY = 8
const SPLIT_ARRAY_MAX_DEPTH = 8

function put(s: string): void {
  // (UTF-8 takes at most 3 bytes per UTF-16 unit)
  const need = at + s.length * 3
  if (need > out.length) {
    const grown = Buffer.allocUnsafeSlow(Math.max(need, out.length * 2))
    out.copy(grown, 0, 0, at)
    out = grown
  }
  at += out.write(s, at)
}

function splittable(v: object, depth: number, array: boolean): boolean {
  if (array) return (v as unknown[]).length >= SPLIT_ARRAY && depth < SPLIT_ARRAY_MAX_DEPTH && typeof (v as { toJSON?: unknown }).toJSON !== 'function'
  if (depth >= SPLIT_DEPTH) return false
  const proto = Object.getPrototypeOf(v)
  return (proto === Object.prototype || proto === null) && typeof (v as { toJSON?: unknown }).toJSON !== 'function'
}

function putValue(v: unknown, depth: number): void {
  if (v !== null && typeof v === 'object') {
    const array = Array.isArray(v)
    if (splittable(v, depth, array)) {
      if (array) {
        put('[')
        for (let i = 0; i < v.length; i++) {
          if (i > 0) put(',')
          putValue(v[i], depth + 1)
        }
        put(']')
        return
      }
      let first = true
      for (const key of Object.keys(v)) {
        const x = (v as Record<string, unknown>)[key]
        if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue
        put(first ? `{${JSON.stringify(key)}:` : `,${JSON.stringify(key)}:`)
        first = false
        putValue(x, depth + 1)
      }
      put(first ? '{}' : '}')
      return
    }
  }
  // (in an array, what JSON.stringify leaves out is null; object properties of that kind are skipped above)
  put(JSON.stringify(v) ?? 'null')
}

/**
 * The UTF-8 bytes of JSON.stringify(value), in a buffer of their own (to be transferred). JSON.stringify of
 * a whole answer builds one string as long as the answer: past 128 KB (a 200-reply thread is 192 KB) V8
 * allocates it in its large-object space, a fresh mapping per answer that only a full (mark-compact) GC
 * frees, flattened there before encoding: page faults, unmaps and major GCs took more CPU than the handler.
 * The top levels are written here piece by piece instead (objects near the root, long arrays), each piece
 * a JSON.stringify small enough for the young generation, into a buffer kept between answers; the bytes
 * are then copied out once.
 */
export function jsonBytes(value: unknown): Uint8Array {
  at = 0
  try {
    putValue(value, 0)
    const bytes = Buffer.allocUnsafeSlow(at)
    out.copy(bytes, 0, 0, at)
    return new Uint8Array(bytes.buffer, 0, at)
  } finally {
    if (out.length > OUT_KEEP_BYTES) out = Buffer.allocUnsafeSlow(1 << 16)
  }
}

export interface ReadPoolOptions {
  /** worker threads (at least 1) */
  size: number
  /** the SQLite database file (opened read-only by each worker) */
  dbPath: string
  modServiceDid?: string
  /** statement results each worker keeps while what they read does not change, in rows (0: none; default 200,000) */
  cacheRows?: number
  /**
   * the writer's change feed (attached to the connection that writes): kept results survive the writes that
   * do not touch them; without it, every commit empties the workers' caches
   */
  changes?: ChangeFeed
  onWorkerError?: (err: unknown, index: number) => void
}

interface Slot {
  worker: Worker
  ready: boolean
  inFlight: Map<number, { resolve: (r: any) => void; reject: (e: unknown) => void }>
}


/** rows of statement results a worker keeps by default (a few tens of MB) */
export const DEFAULT_CACHE_ROWS = 200_000

/**
 * bytes of the database file each read worker's connection maps into memory (PRAGMA mmap_size; address space,
 * not memory): SQLite's largest (SQLITE_MAX_MMAP_SIZE, 0x7fff0000 as better-sqlite3 builds it; a larger value is
 * cut to it). The bench's 1M-record database is 1.67 GB: with 1 GiB mapped, the pages past it (indexes written
 * late among them) were read with a pread each and copied into the connection's page cache: getTimeline's
 * handler 3,065/3,007 -> 2,356/2,447 µs CPU with 2 GiB (one thread, cache off, alternated).
 */
export const READ_MMAP_BYTES = 0x7fff0000

/** a worker that dies this many times without answering is not started again */
const MAX_RESTARTS = 5

/** A read worker's statement-result cache counters, and its hydrator's parsed post versions found and not. */
export interface ReadCacheStats {
  hits: number
  misses: number
  kept: number
  postVersions?: { hits: number; misses: number }
  /** the connection's PRAGMA mmap_size (0: pages are read with pread into its page cache) */
  mmapBytes?: number
}

export class ReadPool {
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false
  private failures = 0
  /** requests answered by the workers */
  served = 0

  constructor(private readonly o: ReadPoolOptions) {
    if (!Number.isInteger(o.size) || o.size < 1) throw new RangeError(`read workers must be an integer >= 1, got ${o.size}`)
    for (let i = 0; i < o.size; i++) this.slots.push(this.spawn(i))
  }

  get size(): number {
    return this.slots.length
  }

  /** The thread ids of the workers. */
  threadIds(): number[] {
    return this.slots.map((s) => s.worker.threadId)
  }

  /** At least one worker is up (else the caller answers in its own thread). */
  get available(): boolean {
    return !this.closed && this.slots.some((s) => s.ready)
  }

  /** Resolves once every worker has opened the database (rejects if one cannot start). */
  async ready(): Promise<void> {
    await Promise.all(
      this.slots.map(
        (slot, i) =>
          new Promise<void>((resolve, reject) => {
            if (slot.ready) return resolve()
            const onMsg = (m: { ready?: true }) => {
              if (m.ready) {
                slot.worker.off('message', onMsg)
                resolve()
              }
            }
            slot.worker.on('message', onMsg)
            slot.worker.once('exit', (code) => reject(new Error(`read worker ${i} exited with code ${code}`)))
          }),
      ),
    )
  }

  /** Runs a read on the least busy ready worker. */
  run(task: ReadTask): Promise<ReadResult> {
    let best: Slot | undefined
    for (const s of this.slots) if (s.ready && (!best || s.inFlight.size < best.inFlight.size)) best = s
    if (!best || this.closed) return Promise.reject(new Error('no read worker is available'))
    const slot = best
    const id = this.nextId++
    return new Promise<ReadResult>((resolve, reject) => {
      slot.inFlight.set(id, { resolve, reject })
      if (slot.inFlight.size === 1) slot.worker.ref()
      slot.worker.postMessage({ id, task })
    })
  }

  /** Each worker's statement cache counters, and its hydrator's parsed post versions found and not (for tests and benches). */
  async cacheStats(): Promise<ReadCacheStats[]> {
    return Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<ReadCacheStats>((resolve, reject) => {
            const id = this.nextId++
            slot.inFlight.set(id, { resolve, reject })
            if (slot.inFlight.size === 1) slot.worker.ref()
            slot.worker.postMessage({ id, stats: true })
          }),
      ),
    )
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.all(
      this.slots.map(async (slot) => {
        for (const t of slot.inFlight.values()) t.reject(new Error('the read pool is closed'))
        slot.inFlight.clear()
        await slot.worker.terminate()
      }),
    )
  }

  private spawn(index: number): Slot {
    const url = new URL(`./read-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url)
    const name = `appview-read-${index}`
    const worker = startWorker(url, {
      workerData: {
        dbPath: this.o.dbPath,
        modServiceDid: this.o.modServiceDid,
        name,
        cacheRows: this.o.cacheRows ?? DEFAULT_CACHE_ROWS,
        ...(this.o.changes ? { changes: this.o.changes.buffer } : {}),
      },
      name,
    })
    const slot: Slot = { worker, ready: false, inFlight: new Map() }
    worker.on('message', (m: { ready?: true; id?: number; res?: ReadResult; stats?: unknown; err?: string }) => {
      if (m.ready) {
        slot.ready = true
        this.failures = 0
        return
      }
      const t = m.id !== undefined ? slot.inFlight.get(m.id) : undefined
      if (!t) return
      slot.inFlight.delete(m.id!)
      if (slot.inFlight.size === 0) worker.unref()
      if (m.stats) return t.resolve(m.stats)
      this.served++
      if (m.err !== undefined) t.reject(new Error(m.err))
      else t.resolve(m.res!)
    })
    const died = (err: unknown) => {
      if (this.closed || this.slots[index] !== slot) return
      this.o.onWorkerError?.(err, index)
      for (const t of slot.inFlight.values()) t.reject(err)
      slot.inFlight.clear()
      slot.ready = false
      // (a worker that cannot start stays down: the methods run in the main thread)
      if (++this.failures < MAX_RESTARTS) this.slots[index] = this.spawn(index)
    }
    worker.on('error', died)
    worker.on('exit', (code) => died(new Error(`read worker ${index} exited with code ${code}`)))
    worker.unref()
    return slot
  }
}

/** The answer of a worker as the XRPC server takes it (its error rethrown). */
export function readOutput(res: ReadResult): { encoding: string; body: Buffer; headers: Record<string, string> } {
  if (!res.ok) throw new XRPCError(res.status, res.error, res.message, res.headers)
  return {
    encoding: 'application/json; charset=utf-8',
    body: Buffer.from(res.body.buffer, res.body.byteOffset, res.body.byteLength),
    headers: res.headers,
  }
}
