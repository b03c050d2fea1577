/**
 * Multi-row statements of the ingest hot path, written as SQL text once per shape (table, columns, row
 * count, conflict clause) and run through kysely as compiled queries: kysely's query builder parses every
 * value of every row into a node tree and compiles it again for each statement, which cost more than
 * SQLite took to run the statements. The same text runs on both dialects (only the placeholders differ),
 * and on SQLite the statement prepared for a text is reused (the driver's statement cache).
 */
import { CompiledQuery, type Kysely } from 'kysely'
import type { DbDialect } from '@stratos/core/db'

type AnyDb = Kysely<any>

const quote = (id: string) => `"${id}"`

/** SQL texts by shape (bounded: shapes are few, row counts are at most the chunk size). */
const texts = new Map<string, string>()

function valuesText(dialect: DbDialect, columns: readonly string[], rows: number, exprs?: Readonly<Record<string, string>>): string {
  const parts: string[] = []
  let n = 0
  for (let r = 0; r < rows; r++) {
    const cells: string[] = []
    for (const c of columns) {
      const p = dialect === 'postgres' ? `$${++n}` : '?'
      // a column whose value goes through an SQL function (to_tsvector('simple', $1))
      const e = exprs?.[c]
      cells.push(e ? e.replace('{}', p) : p)
    }
    parts.push(`(${cells.join(', ')})`)
  }
  return parts.join(', ')
}

export interface InsertShape {
  table: string
  columns: readonly string[]
  /** what follows VALUES (…): 'ON CONFLICT DO NOTHING', an upsert clause, a RETURNING list */
  tail?: string
  /** per column, an SQL expression around the placeholder `{}` */
  exprs?: Readonly<Record<string, string>>
}

/** The compiled INSERT of `rows` (each an array in `shape.columns` order). */
export function compileInsert(dialect: DbDialect, shape: InsertShape, rows: readonly (readonly unknown[])[]): CompiledQuery {
  const key = `${dialect}\u0000${shape.table}\u0000${shape.columns.join(',')}\u0000${rows.length}\u0000${shape.tail ?? ''}\u0000${JSON.stringify(shape.exprs ?? null)}`
  let text = texts.get(key)
  if (text === undefined) {
    text = `INSERT INTO ${quote(shape.table)} (${shape.columns.map(quote).join(', ')}) VALUES ${valuesText(dialect, shape.columns, rows.length, shape.exprs)}${shape.tail ? ` ${shape.tail}` : ''}`
    if (texts.size > 5000) texts.clear()
    texts.set(key, text)
  }
  const params: unknown[] = []
  for (const row of rows) for (const v of row) params.push(v === undefined ? null : v)
  return CompiledQuery.raw(text, params)
}

/**
 * Inserts `rows` (objects; `columns` picks and orders their fields) in chunks of `chunk`; returns the rows
 * the statements returned (with a RETURNING tail).
 */
export async function insertRows<R = unknown>(
  db: AnyDb,
  dialect: DbDialect,
  shape: InsertShape,
  rows: readonly object[],
  chunk = 200,
): Promise<R[]> {
  const out: R[] = []
  for (let i = 0; i < rows.length; i += chunk) {
    const slice = rows.slice(i, i + chunk).map((r) => shape.columns.map((c) => (r as Record<string, unknown>)[c]))
    const res = await db.executeQuery<R>(compileInsert(dialect, shape, slice))
    for (const r of res.rows) out.push(r)
  }
  return out
}

/** Quoted identifier (tables and columns of the schema: no quotes in them). */
export function ident(id: string): string {
  return quote(id)
}

/** PostgreSQL texts of `?`-placeholder statements (the texts are constants of the code: few). */
const pgTexts = new Map<string, string>()

/**
 * Runs a fixed statement written with `?` placeholders (numbered `$n` on PostgreSQL) without kysely's
 * builder; the text must not hold a `?` anywhere else.
 */
export async function runQuery<R = unknown>(db: AnyDb, dialect: DbDialect, text: string, params: readonly unknown[]): Promise<R[]> {
  let t = text
  if (dialect === 'postgres') {
    t = pgTexts.get(text) ?? ''
    if (!t) {
      let n = 0
      t = text.replace(/\?/g, () => `$${++n}`)
      pgTexts.set(text, t)
    }
  }
  return (await db.executeQuery<R>(CompiledQuery.raw(t, params as unknown[]))).rows
}
