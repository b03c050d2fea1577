import SqliteDatabase from 'better-sqlite3'
import {
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  type Migration,
  type MigrationProvider,
} from 'kysely'
import pg from 'pg'

export type DbDialect = 'sqlite' | 'postgres'

/** A kysely instance plus the dialect it speaks, so callers can branch on SQL differences. */
export interface Database<Schema> {
  db: Kysely<Schema>
  dialect: DbDialect
  close(): Promise<void>
  /** SQLite only: the better-sqlite3 handle under Kysely, for prepared statements on hot paths */
  sqlite?: SqliteDatabase.Database
}

export interface SqliteOptions {
  /** milliseconds a writer waits for the lock before SQLITE_BUSY */
  busyTimeoutMs?: number
  readonly?: boolean
  /**
   * Keep up to this many prepared statements by SQL text and reuse them (default 0: kysely prepares
   * every statement anew, which costs as much as running a small one). Statements are not streamed
   * (`stream()`) when this is on, as two streams of one cached statement would clash.
   */
  statementCache?: number
}

/**
 * better-sqlite3 behind a cache of prepared statements (least recently used out). Kysely's SQLite
 * driver calls `prepare` for every query; with this it gets the statement prepared last time.
 */
function cachingDatabase(sqlite: SqliteDatabase.Database, size: number): SqliteDatabase.Database {
  const cache = new Map<string, SqliteDatabase.Statement>()
  return new Proxy(sqlite, {
    get(target, prop, receiver) {
      if (prop === 'prepare') {
        return (source: string) => {
          const hit = cache.get(source)
          if (hit) {
            cache.delete(source)
            cache.set(source, hit)
            return hit
          }
          const stmt = target.prepare(source)
          cache.set(source, stmt)
          if (cache.size > size) cache.delete(cache.keys().next().value!)
          return stmt
        }
      }
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}

/** Opens (creating if needed) a SQLite file in WAL mode. Use ':memory:' for a throwaway database. */
export function openSqlite<Schema>(path: string, opts: SqliteOptions = {}): Database<Schema> {
  const sqlite = new SqliteDatabase(path, { readonly: opts.readonly ?? false })
  if (path !== ':memory:' && !opts.readonly) sqlite.pragma('journal_mode = WAL')
  sqlite.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 5000}`)
  sqlite.pragma('synchronous = NORMAL')
  sqlite.pragma('foreign_keys = ON')
  const database = opts.statementCache ? cachingDatabase(sqlite, opts.statementCache) : sqlite
  const db = new Kysely<Schema>({ dialect: new SqliteDialect({ database }) })
  return { db, dialect: 'sqlite', close: () => db.destroy(), sqlite }
}

export interface PostgresOptions {
  /** search_path schema; created if missing. Lets tests isolate themselves in one database. */
  schema?: string
  poolSize?: number
}

/**
 * The schema each PostgreSQL Kysely instance opened here works in. The migrator must keep its own
 * bookkeeping tables there: left to itself it looks for them in every schema of the database, finds
 * another schema's `kysely_migration_lock` and then fails to use it from this search_path.
 */
const postgresSchemaOf = new WeakMap<Kysely<any>, string>()

/** Connects to PostgreSQL with a pool. */
export async function openPostgres<Schema>(url: string, opts: PostgresOptions = {}): Promise<Database<Schema>> {
  if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]*$/.test(opts.schema)) {
    throw new Error(`invalid PostgreSQL schema name: ${opts.schema}`)
  }
  if (opts.schema) {
    const setup = new pg.Client({ connectionString: url })
    await setup.connect()
    try {
      await setup.query(`CREATE SCHEMA IF NOT EXISTS "${opts.schema}"`)
    } finally {
      await setup.end()
    }
  }
  // search_path as a startup parameter: it is in force before the first query on every pooled connection
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 10,
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
  })
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) })
  postgresSchemaOf.set(db, opts.schema ?? 'public')
  return { db, dialect: 'postgres', close: () => db.destroy() }
}

/** Opens SQLite for a path, or PostgreSQL for a postgres:// or postgresql:// URL. */
export async function openDatabase<Schema>(location: string, opts: PostgresOptions & SqliteOptions = {}): Promise<Database<Schema>> {
  if (/^postgres(ql)?:\/\//.test(location)) return openPostgres<Schema>(location, opts)
  return openSqlite<Schema>(location, opts)
}

/** Migrations keyed by name; names sort in the order they run (use a numeric prefix: '001-init'). */
export type Migrations = Record<string, Migration>

class StaticMigrationProvider implements MigrationProvider {
  constructor(private readonly migrations: Migrations) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return this.migrations
  }
}

/** Runs every pending migration, throwing with the failing migration's name on error. */
export async function migrateToLatest(db: Kysely<any>, migrations: Migrations): Promise<void> {
  const migrationTableSchema = postgresSchemaOf.get(db)
  const migrator = new Migrator({
    db,
    provider: new StaticMigrationProvider(migrations),
    ...(migrationTableSchema ? { migrationTableSchema } : {}),
  })
  const { error, results } = await migrator.migrateToLatest()
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')
    const reason = error instanceof Error ? error.message : String(error)
    throw new Error(`migration ${failed?.migrationName ?? '(unknown)'} failed: ${reason}`)
  }
}
export { MultiRowStatement } from './multi-row.js'
export { lazyStatements } from './lazy-statements.js'
