/**
 * Hydration's queries as fixed SQL texts, one per query kind and dialect, with every list of keys bound
 * as ONE parameter (SQLite: a JSON array read with json_each; PostgreSQL: an array compared with ANY).
 * A query's text is then the same whatever the list's length: it is written and compiled once (no query
 * builder work per call) and SQLite's statement cache always finds it prepared, instead of one statement
 * per IN-list length.
 */
import { CompiledQuery, PostgresAdapter, type Kysely } from 'kysely'

/** A placeholder in a query template: a scalar, or a list of keys. */
export type Arg = { list: readonly string[] } | string | number | null

export interface ListSql {
  readonly dialect: 'sqlite' | 'postgres'
  /** runs a query written with `?` placeholders (lists: `IN ?L`) */
  rows<T>(text: PreparedText, args: Arg[]): Promise<T[]>
  /** compiles a query template once */
  prepare(template: string): PreparedText
}

export interface PreparedText {
  readonly sql: string
}

/** The parts of a better-sqlite3 handle that reads use. */
export interface SqliteHandle {
  readonly inTransaction: boolean
  prepare(source: string): { readonly reader: boolean; all(params: unknown[]): unknown[] }
}

const sqliteHandles = new WeakMap<Kysely<any>, SqliteHandle>()
const readCaches = new WeakMap<Kysely<any>, ReadCache>()
/** the results a ReadCache holds (their rows are the same objects for every request that reads them) */
const keptResults = new WeakSet<unknown[]>()

/** Whether `rows` is a result kept by a read cache: its row objects are shared by the requests that read it. */
export function isKeptResult(rows: unknown[]): boolean {
  return keptResults.has(rows)
}

/**
 * Results of the listSql / fixedRows statements run on one read-only connection, kept while the database
 * does not change: `begin` is called at the start of each read transaction with the connection's
 * `PRAGMA data_version`, which changes whenever another connection commits, and any change empties the
 * cache. A cached result is therefore exactly what the statement would return in the current snapshot
 * (never stale). The rows are shared between requests: callers must not modify them.
 */
export class ReadCache {
  private version: number | null = null
  private readonly entries = new Map<string, unknown[]>()
  private rowsHeld = 0
  hits = 0
  misses = 0

  /** `maxRows`: the rows kept at most (over all entries); the oldest entries leave first */
  constructor(private readonly maxRows: number) {}

  begin(dataVersion: number): void {
    if (dataVersion === this.version) return
    this.version = dataVersion
    this.entries.clear()
    this.rowsHeld = 0
  }

  get(key: string): unknown[] | undefined {
    const rows = this.entries.get(key)
    if (rows) this.hits++
    else this.misses++
    return rows
  }

  set(key: string, rows: unknown[]): void {
    const size = rows.length + 1
    if (size > this.maxRows) return
    keptResults.add(rows)
    this.entries.set(key, rows)
    this.rowsHeld += size
    while (this.rowsHeld > this.maxRows) {
      const [oldest, held] = this.entries.entries().next().value!
      this.entries.delete(oldest)
      this.rowsHeld -= held.length + 1
    }
  }
}

/**
 * A statement and its parameters as one string: each parameter tagged with its type and strings with their
 * length, so that no two different parameter lists give the same key (whatever characters they hold).
 */
function cacheKey(sql: string, params: unknown[]): string {
  let key = sql
  for (const p of params) {
    if (p === null) key += '\u0000n'
    else if (typeof p === 'number') key += `\u0000#${p}`
    else {
      const str = String(p)
      key += `\u0000${str.length}:${str}`
    }
  }
  return key
}

/**
 * Keeps the results of listSql / fixedRows statements run directly on `db` (a read-only connection that
 * only ever reads inside transactions whose start calls cache.begin) in `cache`.
 */
export function cacheReads(db: Kysely<any>, cache: ReadCache): void {
  readCaches.set(db, cache)
}

/**
 * Lets the queries of listSql / fixedRows on `db` (a SQLite database) run on its better-sqlite3 handle
 * directly, without kysely's per-query work (connection hand-off, promises: ~35 µs a query), whenever
 * no transaction is open on it. While one is (kysely holds the connection across awaits for it), they
 * go through kysely and wait for the transaction's end as before: a read never sees uncommitted rows.
 */
export function readDirectly(db: Kysely<any>, sqlite: SqliteHandle): void {
  sqliteHandles.set(db, sqlite)
}

/**
 * Templates use `?` for a scalar and `IN ?L` for a list of keys ("x IN ?L"): SQLite gets
 * `x IN (SELECT value FROM json_each(?))`, PostgreSQL `x = ANY($n)`.
 */
export function listSql(db: Kysely<any>): ListSql {
  const dialect = db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite'
  const direct = dialect === 'sqlite' ? sqliteHandles.get(db) : undefined
  const statements = new Map<string, ReturnType<SqliteHandle['prepare']>>()
  return {
    dialect,
    prepare(template: string): PreparedText {
      let n = 0
      const sql =
        dialect === 'sqlite'
          ? template.replace(/(\S+) IN \?L/g, '$1 IN (SELECT value FROM json_each(?))')
          : template.replace(/(\S+) IN \?L|\?/g, (m, col: string | undefined) => (col ? `${col} = ANY($${++n})` : `$${++n}`))
      return { sql }
    },
    async rows<T>(text: PreparedText, args: Arg[]): Promise<T[]> {
      const params = args.map((a) =>
        a !== null && typeof a === 'object' ? (dialect === 'sqlite' ? JSON.stringify(a.list) : [...a.list]) : a,
      )
      if (direct && !direct.inTransaction) {
        let stmt = statements.get(text.sql)
        if (!stmt) statements.set(text.sql, (stmt = direct.prepare(text.sql)))
        if (stmt.reader) {
          const cache = readCaches.get(db)
          if (!cache) return stmt.all(params) as T[]
          const key = cacheKey(text.sql, params)
          let rows = cache.get(key)
          if (!rows) cache.set(key, (rows = stmt.all(params)))
          return rows as T[]
        }
      }
      const res = await db.executeQuery<T>(CompiledQuery.raw(text.sql, params))
      return res.rows as T[]
    },
  }
}

const perDb = new WeakMap<Kysely<any>, { q: ListSql; texts: Map<string, PreparedText> }>()

/**
 * Runs a fixed query template (see listSql) on `db`, compiling it the first time it is seen: for the
 * handlers' own small per-request queries (the viewer's repo rev, an actor by DID or handle...).
 */
export async function fixedRows<T>(db: Kysely<any>, template: string, args: Arg[]): Promise<T[]> {
  let entry = perDb.get(db)
  if (!entry) perDb.set(db, (entry = { q: listSql(db), texts: new Map() }))
  let text = entry.texts.get(template)
  if (!text) entry.texts.set(template, (text = entry.q.prepare(template)))
  return entry.q.rows<T>(text, args)
}
