/**
 * Event logs: where a subscription server replays from. Frames are stored pre-encoded, with their seq,
 * so a replay is a sequence of reads and sends with no re-encoding.
 */
import SqliteDatabase from 'better-sqlite3'
import { MultiRowStatement } from '../db/multi-row.js'

export interface LoggedEvent {
  seq: number
  frame: Uint8Array
}

/** What {@link SubscriptionServer} needs to replay a cursor. Implementations must return events in seq order. */
export interface EventLog {
  /** highest seq stored, or null when the log is empty */
  latestSeq(): Promise<number | null>
  /** lowest seq still stored (the start of the backfill window), or null when empty */
  earliestSeq(): Promise<number | null>
  /** up to `limit` events with seq > `seq`, ascending */
  readAfter(seq: number, limit: number): Promise<LoggedEvent[]>
  /**
   * Optional: highest seq ever assigned, even if retention has since deleted it. Lets the server tell an
   * old cursor (OutdatedCursor) from a future one (FutureCursor) when the whole log has been pruned.
   */
  headSeq?(): Promise<number | null>
}

export interface PruneOptions {
  /** drop events older than this */
  maxAgeMs?: number
  /** keep at most this many frame bytes (newest first) */
  maxBytes?: number
  /** clock for tests */
  now?: number
}

export interface PruneResult {
  deleted: number
  earliestSeq: number | null
}

// ---------------------------------------------------------------------------------------------------

interface MemoryEntry extends LoggedEvent {
  time: number
}

/** In-memory log (tests, throwaway dev servers). Single process, not durable. */
export class MemoryEventLog implements EventLog {
  private entries: MemoryEntry[] = []
  private last = 0

  /** Assigns the next seq, builds the frame for it and stores it. */
  append(makeFrame: (seq: number) => Uint8Array, time = Date.now()): LoggedEvent {
    const seq = this.last + 1
    const frame = makeFrame(seq)
    this.last = seq
    this.entries.push({ seq, frame, time })
    return { seq, frame }
  }

  /** Stores an event under a caller-chosen seq (must be above every stored seq). */
  insert(seq: number, frame: Uint8Array, time = Date.now()): void {
    if (!Number.isSafeInteger(seq) || seq <= this.last) throw new RangeError(`seq ${seq} is not above ${this.last}`)
    this.last = seq
    this.entries.push({ seq, frame, time })
  }

  /** Deletes every event with seq <= `seq`. */
  deleteThrough(seq: number): number {
    const idx = this.indexAfter(seq)
    this.entries.splice(0, idx)
    return idx
  }

  prune(opts: PruneOptions): PruneResult {
    const now = opts.now ?? Date.now()
    let cut = 0
    if (opts.maxAgeMs !== undefined) {
      const limit = now - opts.maxAgeMs
      for (let i = 0; i < this.entries.length; i++) if (this.entries[i]!.time < limit) cut = i + 1
    }
    if (opts.maxBytes !== undefined) {
      let total = 0
      for (let i = this.entries.length - 1; i >= cut; i--) {
        total += this.entries[i]!.frame.byteLength
        if (total > opts.maxBytes) {
          cut = i + 1
          break
        }
      }
    }
    this.entries.splice(0, cut)
    return { deleted: cut, earliestSeq: this.entries[0]?.seq ?? null }
  }

  get size(): number {
    return this.entries.length
  }

  private indexAfter(seq: number): number {
    let lo = 0
    let hi = this.entries.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.entries[mid]!.seq <= seq) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  async latestSeq(): Promise<number | null> {
    return this.entries.length ? this.entries[this.entries.length - 1]!.seq : null
  }

  async earliestSeq(): Promise<number | null> {
    return this.entries[0]?.seq ?? null
  }

  async headSeq(): Promise<number | null> {
    return this.last || null
  }

  async readAfter(seq: number, limit: number): Promise<LoggedEvent[]> {
    const start = this.indexAfter(seq)
    return this.entries.slice(start, start + limit).map(({ seq, frame }) => ({ seq, frame }))
  }
}

// ---------------------------------------------------------------------------------------------------

export interface SqliteEventLogOptions {
  /** table name (default `stream_event`); lets one database hold several endpoints' logs */
  table?: string
  /**
   * 'full' (default for files this class opens): every append is fsynced before it returns, so a seq
   * handed out is never reused after a crash. 'normal': WAL default, durable across process crashes only.
   */
  synchronous?: 'full' | 'normal'
}

export interface SqliteEventRow {
  seq: number
  type: string
  did: string | null
  time: number
  frame: Uint8Array
}

export interface AppendItem {
  type: string
  did?: string | null
  /** builds the frame once the seq is known */
  frame: (seq: number) => Uint8Array
  time?: number
}

/** An event with its seq already assigned and its frame built (see {@link SqliteEventLog.appendAssigned}). */
export interface AssignedEvent {
  seq: number
  type: string
  did?: string | null
  time: number
  frame: Uint8Array
}

/**
 * Durable event log on better-sqlite3: table `(seq INTEGER PRIMARY KEY, type, did, time, size, frame BLOB)`.
 * Seqs are assigned as last+1 inside an IMMEDIATE transaction, and the last seq is kept in a side table
 * so pruning everything never makes seq go back. One writer per file.
 *
 * The side table also keeps the number of events and their frame bytes, updated in the transaction that
 * appends or deletes them (so a rollback takes them back too): `stats()` and the byte budget of `prune` read
 * them instead of scanning the log, whose size is the replay window (hours of the network's events).
 */
export class SqliteEventLog implements EventLog {
  readonly db: SqliteDatabase.Database
  private readonly ownsDb: boolean
  private readonly table: string
  private readonly stmts: {
    last: SqliteDatabase.Statement<[], { last_seq: number }>
    setLast: SqliteDatabase.Statement<[number]>
    insert: MultiRowStatement
    latest: SqliteDatabase.Statement<[], { seq: number | null }>
    earliest: SqliteDatabase.Statement<[], { seq: number | null }>
    readAfter: SqliteDatabase.Statement<[number, number], { seq: number; frame: Buffer }>
    readRows: SqliteDatabase.Statement<[number, number], SqliteEventRow>
    deleteThrough: SqliteDatabase.Statement<[number]>
    ageCut: SqliteDatabase.Statement<[number], { seq: number | null }>
    totals: SqliteDatabase.Statement<[], { count: number; bytes: number }>
    sizesFromStart: SqliteDatabase.Statement<[], { seq: number; size: number }>
    totalsThrough: SqliteDatabase.Statement<[number], { count: number; bytes: number | null }>
    addTotals: SqliteDatabase.Statement<[number, number]>
  }
  private readonly deleteThroughTx: (seq: number) => number
  private readonly appendTx: (items: AppendItem[]) => LoggedEvent[]
  private readonly assignedTx: (events: AssignedEvent[]) => void

  constructor(pathOrDb: string | SqliteDatabase.Database, opts: SqliteEventLogOptions = {}) {
    const table = opts.table ?? 'stream_event'
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new Error(`invalid table name: ${table}`)
    this.table = table
    if (typeof pathOrDb === 'string') {
      this.db = new SqliteDatabase(pathOrDb)
      this.ownsDb = true
      if (pathOrDb !== ':memory:') this.db.pragma('journal_mode = WAL')
      this.db.pragma(`synchronous = ${opts.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`)
      this.db.pragma('busy_timeout = 5000')
    } else {
      this.db = pathOrDb
      this.ownsDb = false
    }
    const meta = `${table}_meta`
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS ${table} (
        seq INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        did TEXT,
        time INTEGER NOT NULL,
        size INTEGER NOT NULL,
        frame BLOB NOT NULL
      );
      CREATE INDEX IF NOT EXISTS ${table}_time_idx ON ${table}(time);
      CREATE TABLE IF NOT EXISTS ${meta} (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL);
      INSERT OR IGNORE INTO ${meta} (id, last_seq) VALUES (1, COALESCE((SELECT MAX(seq) FROM ${table}), 0));
    `)
    // the totals (a log written before they were kept: counted once, here)
    const metaColumns = new Set((this.db.prepare(`SELECT name FROM pragma_table_info('${meta}')`).all() as { name: string }[]).map((c) => c.name))
    if (!metaColumns.has('event_count')) {
      this.db.exec(`
        ALTER TABLE ${meta} ADD COLUMN event_count INTEGER NOT NULL DEFAULT -1;
        ALTER TABLE ${meta} ADD COLUMN event_bytes INTEGER NOT NULL DEFAULT -1;
      `)
    }
    this.db.exec(`
      UPDATE ${meta} SET event_count = (SELECT COUNT(*) FROM ${table}), event_bytes = (SELECT COALESCE(SUM(size), 0) FROM ${table})
      WHERE id = 1 AND event_count < 0
    `)
    this.stmts = {
      last: this.db.prepare(`SELECT last_seq FROM ${meta} WHERE id = 1`),
      setLast: this.db.prepare(`UPDATE ${meta} SET last_seq = ? WHERE id = 1`),
      addTotals: this.db.prepare(`UPDATE ${meta} SET event_count = event_count + ?, event_bytes = event_bytes + ? WHERE id = 1`),
      insert: new MultiRowStatement(this.db, `INSERT INTO ${table} (seq, type, did, time, size, frame)`, 6),
      latest: this.db.prepare(`SELECT MAX(seq) AS seq FROM ${table}`),
      earliest: this.db.prepare(`SELECT MIN(seq) AS seq FROM ${table}`),
      readAfter: this.db.prepare(`SELECT seq, frame FROM ${table} WHERE seq > ? ORDER BY seq LIMIT ?`),
      readRows: this.db.prepare(`SELECT seq, type, did, time, frame FROM ${table} WHERE seq > ? ORDER BY seq LIMIT ?`),
      deleteThrough: this.db.prepare(`DELETE FROM ${table} WHERE seq <= ?`),
      ageCut: this.db.prepare(`SELECT MAX(seq) AS seq FROM ${table} WHERE time < ?`),
      // read from the oldest event on, only as far as the prune goes
      sizesFromStart: this.db.prepare(`SELECT seq, size FROM ${table} ORDER BY seq`),
      totalsThrough: this.db.prepare(`SELECT COUNT(*) AS count, SUM(size) AS bytes FROM ${table} WHERE seq <= ?`),
      totals: this.db.prepare(`SELECT event_count AS count, event_bytes AS bytes FROM ${meta} WHERE id = 1`),
    }
    this.deleteThroughTx = this.db.transaction((seq: number) => {
      const gone = this.stmts.totalsThrough.get(seq)!
      if (gone.count === 0) return 0
      const deleted = this.stmts.deleteThrough.run(seq).changes
      this.stmts.addTotals.run(-gone.count, -(gone.bytes ?? 0))
      return deleted
    })
    this.appendTx = this.db.transaction((items: AppendItem[]) => {
      let seq = this.stmts.last.get()!.last_seq
      const out: LoggedEvent[] = []
      const rows: unknown[] = []
      let bytes = 0
      for (const item of items) {
        seq += 1
        const frame = item.frame(seq)
        rows.push(seq, item.type, item.did ?? null, item.time ?? Date.now(), frame.byteLength, frame)
        bytes += frame.byteLength
        out.push({ seq, frame })
      }
      this.stmts.insert.run(rows)
      this.stmts.setLast.run(seq)
      this.stmts.addTotals.run(items.length, bytes)
      return out
    }).immediate as (items: AppendItem[]) => LoggedEvent[]
    this.assignedTx = this.db.transaction((events: AssignedEvent[]) => {
      let seq = this.stmts.last.get()!.last_seq
      const rows: unknown[] = []
      let bytes = 0
      for (const e of events) {
        if (e.seq !== seq + 1) throw new RangeError(`seq ${e.seq} does not follow ${seq}`)
        seq = e.seq
        rows.push(seq, e.type, e.did ?? null, e.time, e.frame.byteLength, e.frame)
        bytes += e.frame.byteLength
      }
      this.stmts.insert.run(rows)
      this.stmts.setLast.run(seq)
      this.stmts.addTotals.run(events.length, bytes)
    }).immediate as (events: AssignedEvent[]) => void
  }

  /** Assigns seq = last + 1, builds the frame with it and stores it durably. */
  append(type: string, did: string | null | undefined, frame: (seq: number) => Uint8Array, time?: number): LoggedEvent {
    return this.appendTx([{ type, did, frame, time }])[0]!
  }

  /** Appends several events in one transaction (consecutive seqs). */
  appendMany(items: AppendItem[]): LoggedEvent[] {
    if (items.length === 0) return []
    return this.appendTx(items)
  }

  /**
   * Appends events whose seqs the caller assigned: consecutive from `lastAssignedSeq() + 1` (else nothing is
   * written and it throws), the frames built with them. For a writer that builds each frame inside its own
   * transaction before the rows are written (one multi-row insert); call it in that same transaction.
   */
  appendAssigned(events: AssignedEvent[]): void {
    if (events.length > 0) this.assignedTx(events)
  }

  /** last seq ever assigned (survives pruning), 0 for a new log */
  lastAssignedSeq(): number {
    return this.stmts.last.get()!.last_seq
  }

  async latestSeq(): Promise<number | null> {
    return this.stmts.latest.get()?.seq ?? null
  }

  async earliestSeq(): Promise<number | null> {
    return this.stmts.earliest.get()?.seq ?? null
  }

  async headSeq(): Promise<number | null> {
    return this.lastAssignedSeq() || null
  }

  async readAfter(seq: number, limit: number): Promise<LoggedEvent[]> {
    return this.stmts.readAfter.all(seq, limit)
  }

  /** Rows with their metadata (type, did, time), for admin views and tests. */
  readRowsAfter(seq: number, limit: number): SqliteEventRow[] {
    return this.stmts.readRows.all(seq, limit)
  }

  /** events held and their frame bytes (kept with the log: no scan) */
  stats(): { count: number; bytes: number } {
    const t = this.stmts.totals.get()!
    return { count: t.count, bytes: t.bytes }
  }

  /**
   * Retention: deletes the oldest events so that none is older than `maxAgeMs` and the frames left add up
   * to at most `maxBytes`. Always deletes a prefix (seq order), so the window stays contiguous.
   */
  prune(opts: PruneOptions): PruneResult {
    const now = opts.now ?? Date.now()
    let cut = 0
    if (opts.maxAgeMs !== undefined) cut = Math.max(cut, this.stmts.ageCut.get(now - opts.maxAgeMs)?.seq ?? 0)
    if (opts.maxBytes !== undefined) cut = Math.max(cut, this.bytesCut(opts.maxBytes))
    const deleted = cut > 0 ? this.deleteThroughTx(cut) : 0
    return { deleted, earliestSeq: this.stmts.earliest.get()?.seq ?? null }
  }

  /** Deletes every event with seq <= `seq`. */
  deleteThrough(seq: number): number {
    return this.deleteThroughTx(seq)
  }

  /** The last seq of the shortest prefix whose removal leaves at most `maxBytes` (0: none to remove). */
  private bytesCut(maxBytes: number): number {
    let excess = this.stats().bytes - maxBytes
    if (excess <= 0) return 0
    let last = 0
    for (const row of this.stmts.sizesFromStart.iterate()) {
      excess -= row.size
      last = row.seq
      if (excess <= 0) break
    }
    return last
  }

  close(): void {
    if (this.ownsDb && this.db.open) this.db.close()
  }
}
