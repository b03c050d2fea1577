import type SqliteDatabase from 'better-sqlite3'

/**
 * Rows read through one SQLite connection, kept while that connection's `total_changes()` stays where it was
 * when they were read. For a database that is written through this connection only: any insert, update or
 * delete (a takedown or a raw UPDATE included) empties the cache before the next read. `total_changes()` reads
 * a counter of the connection: no table, so no transaction and no lock. Rows read inside a transaction are not
 * kept (it may yet be rolled back); the cache is emptied when it holds `maxRows`.
 */
export class ChangeCheckedCache<V> {
  private readonly rows = new Map<string, V>()
  private generation = -1
  private changesStmt: SqliteDatabase.Statement<[], number> | null = null

  constructor(
    private readonly db: SqliteDatabase.Database,
    private readonly maxRows: number,
  ) {}

  private changes(): number {
    this.changesStmt ??= this.db.prepare<[], number>('SELECT total_changes()').pluck()
    return this.changesStmt.get()!
  }

  /** The value kept for `key`, or `load()`'s (kept unless read inside a transaction). */
  get(key: string, load: () => V): V {
    const generation = this.changes()
    if (generation !== this.generation) {
      this.rows.clear()
      this.generation = generation
    }
    const hit = this.rows.get(key)
    if (hit !== undefined) return hit
    const value = load()
    if (!this.db.inTransaction) {
      if (this.rows.size >= this.maxRows) this.rows.clear()
      this.rows.set(key, value)
    }
    return value
  }

  /** Drops every kept row (a write through another connection). */
  clear(): void {
    this.rows.clear()
  }

  /** Runs a write that leaves the kept rows valid (it touches other tables): they stay, unless already stale. */
  unaffectedBy<T>(write: () => T): T {
    const before = this.changes()
    const out = write()
    if (this.generation === before) this.generation = this.changes()
    return out
  }
}
