/**
 * Hydration's queries as fixed SQL texts, one per query kind and dialect, with every list of keys bound
 * as ONE parameter (SQLite: a JSON array read with json_each; PostgreSQL: an array compared with ANY).
 * A query's text is then the same whatever the list's length: it is written and compiled once (no query
 * builder work per call) and SQLite's statement cache always finds it prepared, instead of one statement
 * per IN-list length.
 */
import { CompiledQuery, PostgresAdapter, type Kysely } from 'kysely'
import { didHashesOf, type ChangeSet } from './change-feed.js'

/** A placeholder in a query template: a scalar, or a list of keys. */
export type Arg = { list: readonly string[] } | string | number | null

export interface ListSql {
  readonly dialect: 'sqlite' | 'postgres'
  /** runs a query written with `?` placeholders (lists: `IN ?L`) */
  rows<T>(text: PreparedText, args: Arg[]): Promise<T[]>
  /** compiles a query template once (`keyed`: see PreparedText) */
  prepare(template: string, opts?: { keyed?: boolean }): PreparedText
}

export interface PreparedText {
  readonly sql: string
  /**
   * Every row the statement reads carries, in the key columns of a table of WATCHED_TABLES
   * (./change-feed.ts), a DID that its parameters name (bare, in an AT-URI, in a list): a read worker's cache
   * then keeps its result across writes that touch none of those DIDs. Only for statements that read
   * nothing else (test/read-cache.test.ts checks the tables).
   */
  readonly keyed?: boolean
}

/** The parts of a better-sqlite3 statement that reads use. */
export interface SqliteStatement {
  readonly reader: boolean
  all(params: unknown[]): unknown[]
  raw(toggle: boolean): SqliteStatement
  /** `type`: the declared type of a table column, null for an expression */
  columns(): { name: string; type: string | null }[]
}

/** The parts of a better-sqlite3 handle that reads use. */
export interface SqliteHandle {
  readonly inTransaction: boolean
  prepare(source: string): SqliteStatement
}

/**
 * A statement that reads, run in raw mode (rows as arrays) with its rows turned into objects by a function
 * made for its columns: better-sqlite3 builds each row object one property at a time (the main cost of
 * reading a row of 15 columns was that object, not SQLite: 500 against 300 µs for 200 actor rows), a
 * literal of fixed shape costs little. The objects are the ones the statement gives in object mode (same
 * names, same values; a name given twice keeps the last column, as there).
 *
 * `json`: the same statement wrapped to return all its rows as ONE JSON text (an array of arrays), which
 * JSON.parse turns into the row arrays: better-sqlite3 makes each row array and each of its values through
 * V8's API one call at a time (~0.15 µs per value, ~0.4 µs per row: more than SQLite's own work for a row
 * of an index seek), V8's JSON parser makes them far faster. Only for statements whose rows' order does not
 * matter (no ORDER BY: the aggregate's input order is not specified) and whose columns have distinct names.
 * JSON holds text and integers exactly (an integer beyond 2^53 comes back rounded, as better-sqlite3 gives
 * it too) and reals too (SQLite writes 17 significant digits); not blobs: json_array reads a blob as JSONB
 * (x'00' comes back null), so a statement with a column declared BLOB stays in raw mode.
 */
interface ReadStatement {
  stmt: SqliteStatement
  toObject: ((row: unknown[]) => unknown) | null
  json?: SqliteStatement
}

/** An SQL identifier, quoted. */
function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

function readStatement(handle: SqliteHandle, sql: string): ReadStatement {
  const stmt = handle.prepare(sql)
  if (!stmt.reader) return { stmt, toObject: null }
  const columns = stmt.columns()
  const names = columns.map((c) => c.name)
  // (a column named __proto__ would set the prototype in a literal: such statements stay in object mode)
  if (names.includes('__proto__')) return { stmt, toObject: null }
  stmt.raw(true)
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- the names are the statement's own columns, quoted by JSON.stringify
  const toObject = new Function('r', `return { ${names.map((n, i) => `${JSON.stringify(n)}: r[${i}]`).join(', ')} }`) as (row: unknown[]) => unknown
  if (names.length === 0 || new Set(names).size !== names.length || /\bORDER\s+BY\b/i.test(sql)) return { stmt, toObject }
  if (columns.some((c) => c.type !== null && /BLOB/i.test(c.type))) return { stmt, toObject }
  const json = handle.prepare(`SELECT json_group_array(json_array(${names.map(quoteIdent).join(', ')})) FROM (${sql})`)
  json.raw(true)
  return { stmt, toObject, json }
}

function allRows(s: ReadStatement, params: unknown[]): unknown[] {
  let rows: unknown[]
  if (s.json) {
    const [[text]] = s.json.all(params) as [[string]]
    rows = JSON.parse(text) as unknown[]
  } else rows = s.stmt.all(params)
  if (!s.toObject) return rows
  for (let i = 0; i < rows.length; i++) rows[i] = s.toObject(rows[i] as unknown[])
  return rows
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
 * Results of the listSql / fixedRows statements run on one read-only connection, kept while what they read
 * does not change. `begin` is called at the start of each read transaction with the connection's
 * `PRAGMA data_version`, which changes whenever another connection commits, and (with a ChangeFeed on the
 * writer, see ./change-feed.ts) with what the writer changed since the last request:
 * - a keyed statement's result (see `keyed` in listSql's prepare) depends only on rows that carry a DID of
 *   its parameters: it goes when a write touches one of those DIDs, and survives the others;
 * - any other result goes at every commit.
 * Without a change feed, every result goes at every commit. A kept result is therefore exactly what the
 * statement would return in the current snapshot (never stale). The rows are shared between requests:
 * callers must not modify them.
 */
export class ReadCache {
  private version: number | null = null
  private readonly entries = new Map<string, { rows: unknown[]; deps: readonly number[] | null }>()
  /** keyed entries by the hash of each DID they depend on */
  private readonly byDid = new Map<number, Set<string>>()
  private readonly unkeyed = new Set<string>()
  private rowsHeld = 0
  private fed = false
  private unsettled: ReadonlySet<number> = new Set()
  private blind = false
  hits = 0
  misses = 0

  /** `maxRows`: the rows kept at most (over all entries); the oldest entries leave first */
  constructor(private readonly maxRows: number) {}

  /** At the start of a read transaction, after its snapshot started: the connection's data_version and, with a change feed, what changed. */
  begin(dataVersion: number, changes?: ChangeSet): void {
    if (changes) {
      this.fed = true
      if (changes.all) for (const key of [...this.entries.keys()]) this.remove(key)
      else for (const h of changes.changed) this.dropDid(h)
      this.unsettled = changes.unsettled
      this.blind = changes.blind
    }
    if (dataVersion === this.version) return
    this.version = dataVersion
    if (!this.fed) {
      this.entries.clear()
      this.byDid.clear()
      this.unkeyed.clear()
      this.rowsHeld = 0
    } else {
      for (const key of this.unkeyed) this.remove(key)
    }
  }

  get(key: string): unknown[] | undefined {
    const e = this.entries.get(key)
    if (e) this.hits++
    else this.misses++
    return e?.rows
  }

  /** Keeps `rows`; `deps`: the hashes of the DIDs a keyed statement's parameters name (null: not keyed). */
  set(key: string, rows: unknown[], deps: readonly number[] | null = null): void {
    const size = rows.length + 1
    if (size > this.maxRows) return
    if (deps && deps.length === 0) deps = null
    if (deps && this.fed) {
      // (from this snapshot, a result on a DID whose write may not be in it yet would be stale once it is)
      if (this.blind) return
      for (const h of deps) if (this.unsettled.has(h)) return
    }
    this.remove(key)
    keptResults.add(rows)
    this.entries.set(key, { rows, deps })
    this.rowsHeld += size
    if (deps) {
      for (const h of deps) {
        let keys = this.byDid.get(h)
        if (!keys) this.byDid.set(h, (keys = new Set()))
        keys.add(key)
      }
    } else this.unkeyed.add(key)
    while (this.rowsHeld > this.maxRows) this.remove(this.entries.keys().next().value!)
  }

  /** entries kept */
  get size(): number {
    return this.entries.size
  }

  private dropDid(h: number): void {
    const keys = this.byDid.get(h)
    if (keys) for (const key of [...keys]) this.remove(key)
  }

  private remove(key: string): void {
    const e = this.entries.get(key)
    if (!e) return
    this.entries.delete(key)
    this.rowsHeld -= e.rows.length + 1
    if (!e.deps) {
      this.unkeyed.delete(key)
      return
    }
    for (const h of e.deps) {
      const keys = this.byDid.get(h)
      if (!keys) continue
      keys.delete(key)
      if (keys.size === 0) this.byDid.delete(h)
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
 *
 * `FROM ?J j JOIN t ON t.key = j.value ...` reads a list of keys as a table `j` (column `value`) that drives
 * the join: SQLite gets `json_each(?) j CROSS JOIN` (CROSS JOIN keeps the list as the outer loop: one index
 * seek per key, and no temporary b-tree of the keys as `IN (SELECT ...)` builds), PostgreSQL
 * `unnest($n::text[]) AS j(value) JOIN`. A key listed twice gives its rows twice: callers pass unique keys.
 */
export function listSql(db: Kysely<any>): ListSql {
  const dialect = db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite'
  const direct = dialect === 'sqlite' ? sqliteHandles.get(db) : undefined
  const statements = new Map<string, ReadStatement>()
  return {
    dialect,
    prepare(template: string, opts: { keyed?: boolean } = {}): PreparedText {
      let n = 0
      const sql =
        dialect === 'sqlite'
          ? template.replace(/(\S+) IN \?L/g, '$1 IN (SELECT value FROM json_each(?))').replace(/\?J (\w+) JOIN/g, 'json_each(?) $1 CROSS JOIN')
          : template.replace(/(\S+) IN \?L|\?J (\w+) JOIN|\?/g, (m, col: string | undefined, alias: string | undefined) =>
              col ? `${col} = ANY($${++n})` : alias ? `unnest($${++n}::text[]) AS ${alias}(value) JOIN` : `$${++n}`,
            )
      return opts.keyed ? { sql, keyed: true } : { sql }
    },
    async rows<T>(text: PreparedText, args: Arg[]): Promise<T[]> {
      // (a list passed more than once, the same object, is turned into JSON once)
      const lists: { list: readonly string[] }[] = []
      const encoded: unknown[] = []
      const params = args.map((a) => {
        if (a === null || typeof a !== 'object') return a
        const i = lists.indexOf(a)
        if (i >= 0) return encoded[i]
        const v = dialect === 'sqlite' ? JSON.stringify(a.list) : [...a.list]
        lists.push(a)
        encoded.push(v)
        return v
      })
      if (direct && !direct.inTransaction) {
        let stmt = statements.get(text.sql)
        if (!stmt) statements.set(text.sql, (stmt = readStatement(direct, text.sql)))
        if (stmt.stmt.reader) {
          const cache = readCaches.get(db)
          if (!cache) return allRows(stmt, params) as T[]
          const key = cacheKey(text.sql, params)
          let rows = cache.get(key)
          if (!rows) cache.set(key, (rows = allRows(stmt, params)), text.keyed ? didHashesOf(params) : null)
          return rows as T[]
        }
      }
      const res = await db.executeQuery<T>(CompiledQuery.raw(text.sql, params))
      return res.rows as T[]
    },
  }
}

const perDb = new WeakMap<Kysely<any>, { q: ListSql; texts: Map<string, PreparedText>; keyedTexts: Map<string, PreparedText> }>()

/**
 * Runs a fixed query template (see listSql) on `db`, compiling it the first time it is seen: for the
 * handlers' own small per-request queries (the viewer's repo rev, an actor by DID or handle...).
 * `keyed`: see PreparedText.
 */
export async function fixedRows<T>(db: Kysely<any>, template: string, args: Arg[], opts: { keyed?: boolean } = {}): Promise<T[]> {
  let entry = perDb.get(db)
  if (!entry) perDb.set(db, (entry = { q: listSql(db), texts: new Map(), keyedTexts: new Map() }))
  const texts = opts.keyed ? entry.keyedTexts : entry.texts
  let text = texts.get(template)
  if (!text) texts.set(template, (text = entry.q.prepare(template, opts)))
  return entry.q.rows<T>(text, args)
}
