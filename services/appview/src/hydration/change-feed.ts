/**
 * What the writer changed, told to the read workers: the DIDs of the rows each write touches, so that a
 * read worker's kept statement results (ReadCache in ./sql.ts) survive the writes that do not concern them
 * instead of all being dropped at every commit (under live ingest: every few milliseconds).
 *
 * Writer side (ChangeFeed, on the main thread's connection, the only one that writes): TEMP triggers on
 * the tables that keyed statements read (WATCHED_TABLES) call a function with the row's key columns, old
 * and new (DIDs and AT-URIs); it writes a 32-bit hash of each DID found into a ring in shared memory and
 * publishes how far it wrote (`written`). Once the connection is out of its transaction (checked at the
 * next turn of the event loop, then every millisecond), everything written so far belongs to transactions
 * that have ended, committed or not: that is published too (`settled`).
 *
 * Reader side (ChangeReader, in each read worker, once per request): `settled` is read BEFORE the request's
 * read snapshot starts and the ring AFTER it. A write that is in the snapshot put its hashes in the ring
 * before its COMMIT, so before the snapshot, so before the ring was read: the kept results it touches are
 * dropped before they can be served. A hash past `settled` may belong to a transaction that is not in the
 * snapshot yet (unsettled): no result that depends on its DID is kept from this snapshot (it would be
 * stale once that transaction commits) until a later request finds it settled. If the ring went round
 * before a worker read it, the worker drops every keyed result and keeps none until what it missed has
 * settled. Hashes only ever make the cache drop more than it had to (two DIDs with one hash), never less.
 */
import type SqliteDatabase from 'better-sqlite3'

/**
 * The tables whose rows keyed statements read, with the columns that name the rows' DIDs (DIDs or AT-URIs).
 * A keyed statement (see `keyed` in ./sql.ts) may only read these tables, and every row that can be in its
 * result (or change it) must carry, in these columns, a DID that is in the statement's parameters.
 */
export const WATCHED_TABLES: Readonly<Record<string, readonly string[]>> = {
  actor: ['did'],
  // (a record's URI names its creator: the creator column stands for both)
  profile: ['creator'],
  record: ['did'],
  profile_agg: ['did'],
  record_agg: ['uri'],
  post: ['creator', 'replyRoot', 'replyParent', 'quoteUri'],
  feed_item: ['originatorDid', 'postUri'],
  like: ['creator', 'subject'],
  repost: ['creator', 'subject'],
  follow: ['creator', 'subjectDid'],
  block: ['creator', 'subjectDid'],
  list_item: ['creator', 'subjectDid', 'listUri'],
  list_block: ['creator', 'subjectUri'],
  list_mute: ['mutedByDid', 'listUri'],
  mute: ['mutedByDid', 'subjectDid'],
  threadgate: ['creator', 'postUri'],
  postgate: ['creator', 'postUri'],
}

/** FNV-1a of the UTF-16 units of `s` from `start` to `end`, as a 32-bit integer */
function hashRange(s: string, start: number, end: number): number {
  let h = 0x811c9dc5
  for (let i = start; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h | 0
}

/**
 * The hash of the DID a value names: a DID itself, or the authority of an AT-URI when it is a DID; null for
 * anything else. The writer (row values) and the readers (statement parameters) both go through this.
 */
export function didHashOf(v: unknown): number | null {
  if (typeof v !== 'string') return null
  if (v.startsWith('did:')) return hashRange(v, 0, v.length)
  if (v.startsWith('at://did:')) {
    const end = v.indexOf('/', 5)
    return hashRange(v, 5, end < 0 ? v.length : end)
  }
  return null
}

/** The hash of a DID. */
export function didHash(did: string): number {
  return hashRange(did, 0, did.length)
}

/**
 * The hashes of the DIDs statement parameters name (scalars, or lists bound as one JSON array: see
 * ./sql.ts), each once.
 */
export function didHashesOf(params: readonly unknown[]): number[] {
  const out = new Set<number>()
  for (const p of params) {
    if (typeof p === 'string' && p.startsWith('[')) {
      let list: unknown
      try {
        list = JSON.parse(p)
      } catch {
        continue
      }
      if (Array.isArray(list)) for (const v of list) add(out, didHashOf(v))
    } else if (Array.isArray(p)) {
      for (const v of p) add(out, didHashOf(v))
    } else add(out, didHashOf(p))
  }
  return [...out]
}

function add(set: Set<number>, h: number | null): void {
  if (h !== null) set.add(h)
}

/** ring slots (hashes) by default: 4 MiB of shared memory */
export const DEFAULT_RING_SLOTS = 1 << 20

const WRITTEN = 0
const SETTLED = 1
const HEAD_BYTES = 16

/** The writer side: install on the connection that writes (attach), hand `buffer` to the readers. */
export class ChangeFeed {
  readonly buffer: SharedArrayBuffer
  private readonly head: BigInt64Array
  private readonly ring: Int32Array
  private readonly mask: number
  private written = 0
  private checking = false
  private sqlite: SqliteDatabase.Database | null = null

  constructor(slots: number = DEFAULT_RING_SLOTS) {
    if (!Number.isInteger(Math.log2(slots)) || slots < 2) throw new RangeError(`ring slots must be a power of two, got ${slots}`)
    this.buffer = new SharedArrayBuffer(HEAD_BYTES + slots * 4)
    this.head = new BigInt64Array(this.buffer, 0, 2)
    this.ring = new Int32Array(this.buffer, HEAD_BYTES, slots)
    this.mask = slots - 1
  }

  /**
   * Installs the triggers (TEMP: this connection only) and their function on `sqlite`, the connection every
   * write goes through. Tables of WATCHED_TABLES that do not exist are skipped.
   */
  attach(sqlite: SqliteDatabase.Database): void {
    this.sqlite = sqlite
    sqlite.function('stratos_read_changed', { varargs: true, deterministic: false }, (...values: unknown[]) => {
      this.touch(values)
      return null
    })
    const exists = sqlite.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).pluck()
    for (const [table, cols] of Object.entries(WATCHED_TABLES)) {
      if (!exists.get(table)) continue
      const of = (row: 'NEW' | 'OLD') => cols.map((c) => `${row}."${c}"`).join(', ')
      const trigger = (op: string, args: string) =>
        sqlite.exec(
          `CREATE TEMP TRIGGER IF NOT EXISTS "stratos_read_changed_${table}_${op}" AFTER ${op} ON main."${table}" BEGIN SELECT stratos_read_changed(${args}); END`,
        )
      trigger('INSERT', of('NEW'))
      trigger('UPDATE', `${of('OLD')}, ${of('NEW')}`)
      trigger('DELETE', of('OLD'))
    }
  }

  /** Records the DIDs in `values` as changed (called by the triggers, inside the writing transaction). */
  touch(values: readonly unknown[]): void {
    let w = this.written
    for (let i = 0; i < values.length; i++) {
      const h = didHashOf(values[i])
      if (h !== null) this.ring[w++ & this.mask] = h
    }
    if (w === this.written) return
    this.written = w
    Atomics.store(this.head, WRITTEN, BigInt(w))
    if (!this.checking) {
      this.checking = true
      setImmediate(this.check).unref()
    }
  }

  /** how many hashes were written so far */
  get position(): number {
    return this.written
  }

  private readonly check = (): void => {
    let open = false
    try {
      open = !!this.sqlite?.open && this.sqlite.inTransaction
    } catch {
      open = false
    }
    if (open) {
      // a transaction across awaits (kysely's): look again shortly, without keeping the event loop busy
      setTimeout(this.check, 1).unref()
      return
    }
    this.checking = false
    Atomics.store(this.head, SETTLED, BigInt(this.written))
  }
}

/** What a reader learns at the start of a request (see ChangeReader.read). */
export interface ChangeSet {
  /** hashes of the DIDs changed since the last read (their kept results go) */
  changed: readonly number[]
  /** the ring went round: every keyed result goes */
  all: boolean
  /** DIDs whose results must not be kept from this snapshot */
  unsettled: ReadonlySet<number>
  /** no keyed result may be kept from this snapshot (what the reader missed has not settled yet) */
  blind: boolean
}

const NONE: ReadonlySet<number> = new Set()

/** The reader side (one per read connection): `settled()` before the snapshot starts, `read()` after. */
export class ChangeReader {
  private readonly head: BigInt64Array
  private readonly ring: Int32Array
  private readonly slots: number
  private pos: number
  /** written indexes and hashes read past `settled` (oldest first) */
  private pendingAt: number[] = []
  private pendingHash: number[] = []
  private pendingSet: ReadonlySet<number> = NONE
  private blindUntil: number

  constructor(buffer: SharedArrayBuffer) {
    this.head = new BigInt64Array(buffer, 0, 2)
    this.ring = new Int32Array(buffer, HEAD_BYTES)
    this.slots = this.ring.length
    // what was written before this reader started is not known: nothing kept until it has settled
    this.pos = Number(Atomics.load(this.head, WRITTEN))
    this.blindUntil = this.pos
  }

  /** Everything written before this index belongs to ended transactions. Read it BEFORE the snapshot starts. */
  settled(): number {
    return Number(Atomics.load(this.head, SETTLED))
  }

  /** What changed since the last call. Call it AFTER the snapshot started, with what `settled()` said before. */
  read(settled: number): ChangeSet {
    const w = Number(Atomics.load(this.head, WRITTEN))
    const changed: number[] = []
    let all = false
    const mask = this.slots - 1
    for (let i = this.pos; i < w; i++) {
      const h = this.ring[i & mask]!
      changed.push(h)
      if (i >= settled) {
        this.pendingAt.push(i)
        this.pendingHash.push(h)
      }
    }
    // slots are overwritten when the writer is a whole ring ahead: then what was read may be wrong
    const after = Number(Atomics.load(this.head, WRITTEN))
    if (after - this.pos > this.slots) {
      all = true
      changed.length = 0
      this.pendingAt = []
      this.pendingHash = []
      this.blindUntil = after
      this.pos = after
    } else {
      this.pos = w
    }
    let drop = 0
    while (drop < this.pendingAt.length && this.pendingAt[drop]! < settled) drop++
    if (drop > 0) {
      this.pendingAt.splice(0, drop)
      this.pendingHash.splice(0, drop)
    }
    if (drop > 0 || changed.length > 0 || all) this.pendingSet = this.pendingHash.length === 0 ? NONE : new Set(this.pendingHash)
    return { changed, all, unsettled: this.pendingSet, blind: settled < this.blindUntil }
  }
}
