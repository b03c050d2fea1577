/** Small helpers shared by the XRPC handlers: viewer, actor lookup, opaque keyset cursors. */
import { sql, type Expression, type ExpressionBuilder, type SqlBool } from 'kysely'
import type { AuthResult, HandlerOutput, ServiceCredentials, XrpcServer } from '@stratos/core/xrpc'
import { InvalidRequestError } from '@stratos/core/xrpc'
import type { AppContext } from '../context.js'
import type { Db } from '../indexer/indexer.js'
import { fixedRows } from '../hydration/sql.js'

export type Register = (server: XrpcServer, ctx: AppContext) => void

export function viewerOf(auth: AuthResult<ServiceCredentials | null> | AuthResult<ServiceCredentials>): string | null {
  return auth.credentials?.iss ?? null
}

/** A JSON answer. Views hold plain JSON only (records are stored as JSON): no lex-to-JSON pass is needed. */
export function json(body: unknown): HandlerOutput {
  return { encoding: 'application/json', body, plainJson: true }
}

/** DID of an at-identifier (a DID, or a handle the AppView has verified), or undefined. */
export async function resolveActor(db: Db, actor: string): Promise<string | undefined> {
  const rows = actor.startsWith('did:')
    ? await fixedRows<{ did: string }>(db, 'SELECT did FROM actor WHERE did = ?', [actor])
    : await fixedRows<{ did: string }>(db, 'SELECT did FROM actor WHERE handle = ? LIMIT 1', [actor.toLowerCase()])
  return rows[0]?.did
}

/** DIDs for at-identifiers, in input order (unknown ones left out). */
export async function resolveActors(db: Db, actors: string[]): Promise<string[]> {
  if (actors.length === 0) return []
  const dids = actors.filter((a) => a.startsWith('did:'))
  const handles = actors.filter((a) => !a.startsWith('did:')).map((h) => h.toLowerCase())
  const rows = await db
    .selectFrom('actor')
    .select(['did', 'handle'])
    .where((eb) => eb.or([...(dids.length ? [eb('did', 'in', dids)] : []), ...(handles.length ? [eb('handle', 'in', handles)] : [])]))
    .execute()
  const byDid = new Set(rows.map((r) => r.did))
  const byHandle = new Map(rows.filter((r) => r.handle).map((r) => [r.handle!, r.did]))
  const out: string[] = []
  for (const a of actors) {
    const did = a.startsWith('did:') ? (byDid.has(a) ? a : undefined) : byHandle.get(a.toLowerCase())
    if (did && !out.includes(did)) out.push(did)
  }
  return out
}

// cursors
// =

export interface KeysetCursor {
  primary: string
  secondary: string
}

/** Opaque cursor for a (sort value, tie-breaker) position. */
export function encodeCursor(primary: string, secondary: string): string {
  return Buffer.from(`${primary}::${secondary}`, 'utf8').toString('base64url')
}

export function decodeCursor(cursor: string | undefined): KeysetCursor | undefined {
  if (cursor === undefined || cursor === '') return undefined
  const raw = /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : ''
  const i = raw.indexOf('::')
  if (i <= 0) throw new InvalidRequestError('Malformed cursor')
  return { primary: raw.slice(0, i), secondary: raw.slice(i + 2) }
}

/** Keyset condition "after the cursor" for a descending (primary, secondary) order. */
export function beforeCursor<DB, TB extends keyof DB>(
  eb: ExpressionBuilder<DB, TB>,
  cursor: KeysetCursor | undefined,
  primaryCol: string,
  secondaryCol: string,
): Expression<SqlBool> {
  if (!cursor) return sql<SqlBool>`1 = 1`
  const p = sql.ref(primaryCol)
  const s = sql.ref(secondaryCol)
  return eb.or([
    sql<SqlBool>`${p} < ${cursor.primary}`,
    eb.and([sql<SqlBool>`${p} = ${cursor.primary}`, sql<SqlBool>`${s} < ${cursor.secondary}`]),
  ])
}

/** Offset cursors (search results ordered by rank). */
export function encodeOffset(n: number): string {
  return encodeCursor('offset', String(n))
}

export function decodeOffset(cursor: string | undefined): number {
  const c = decodeCursor(cursor)
  if (!c) return 0
  const n = Number(c.secondary)
  if (c.primary !== 'offset' || !Number.isSafeInteger(n) || n < 0) throw new InvalidRequestError('Malformed cursor')
  return n
}

/** The cursor of the last row when the page is full, else undefined. */
export function nextCursor<T>(rows: T[], limit: number, key: (row: T) => [string, string]): string | undefined {
  if (rows.length < limit || rows.length === 0) return undefined
  const [a, b] = key(rows[rows.length - 1]!)
  return encodeCursor(a, b)
}
