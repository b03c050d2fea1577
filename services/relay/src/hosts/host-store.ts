/**
 * The persisted host list (table `host`): hostname, status, limits, and the last upstream seq processed
 * (the cursor the relay resumes from).
 */
import type SqliteDatabase from 'better-sqlite3'
import type { Db } from '../db.js'
import type { HostLimits } from '../config.js'

export const HOST_STATUSES = ['active', 'idle', 'offline', 'throttled', 'banned'] as const
export type HostStatus = (typeof HOST_STATUSES)[number]
export type HostOrigin = 'crawl' | 'admin' | 'config'

export interface Host {
  id: number
  hostname: string
  ssl: boolean
  status: HostStatus
  trusted: boolean
  /** per-host overrides of the default limits (set by the admin) */
  limits: Partial<HostLimits> | null
  /** last upstream seq processed */
  cursor: number
  addedBy: HostOrigin
  createdAt: number
  updatedAt: number
  lastEventAt: number | null
}

interface HostRow {
  id: number
  hostname: string
  ssl: number
  status: string
  trusted: number
  limits: string | null
  cursor: number
  added_by: string
  created_at: number
  updated_at: number
  last_event_at: number | null
}

function toHost(row: HostRow): Host {
  let limits: Partial<HostLimits> | null = null
  if (row.limits) {
    try {
      limits = JSON.parse(row.limits) as Partial<HostLimits>
    } catch {
      limits = null
    }
  }
  return {
    id: row.id,
    hostname: row.hostname,
    ssl: row.ssl === 1,
    status: (HOST_STATUSES as readonly string[]).includes(row.status) ? (row.status as HostStatus) : 'idle',
    trusted: row.trusted === 1,
    limits,
    cursor: row.cursor,
    addedBy: row.added_by as HostOrigin,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastEventAt: row.last_event_at,
  }
}

export class HostStore {
  private readonly s: {
    byName: SqliteDatabase.Statement<[string], HostRow>
    byId: SqliteDatabase.Statement<[number], HostRow>
    list: SqliteDatabase.Statement<[number, number], HostRow>
    all: SqliteDatabase.Statement<[], HostRow>
    insert: SqliteDatabase.Statement<[string, number, string, number, string, number, number], { id: number }>
    status: SqliteDatabase.Statement<[string, number, number]>
    cursor: SqliteDatabase.Statement<[number, number | null, number]>
    resetCursor: SqliteDatabase.Statement<[number, number, number]>
    limits: SqliteDatabase.Statement<[string | null, number, number]>
    trusted: SqliteDatabase.Statement<[number, number, number]>
    ssl: SqliteDatabase.Statement<[number, number, number]>
    createdSince: SqliteDatabase.Statement<[string, number], { n: number }>
  }

  constructor(private readonly db: Db) {
    this.s = {
      byName: db.prepare('SELECT * FROM host WHERE hostname = ?'),
      byId: db.prepare('SELECT * FROM host WHERE id = ?'),
      list: db.prepare('SELECT * FROM host WHERE id > ? ORDER BY id LIMIT ?'),
      all: db.prepare('SELECT * FROM host ORDER BY id'),
      insert: db.prepare(
        `INSERT INTO host (hostname, ssl, status, trusted, added_by, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
      ),
      status: db.prepare('UPDATE host SET status = ?, updated_at = ? WHERE id = ?'),
      cursor: db.prepare('UPDATE host SET cursor = ?, last_event_at = COALESCE(?, last_event_at) WHERE id = ?'),
      resetCursor: db.prepare('UPDATE host SET cursor = ?, updated_at = ? WHERE id = ?'),
      limits: db.prepare('UPDATE host SET limits = ?, updated_at = ? WHERE id = ?'),
      trusted: db.prepare('UPDATE host SET trusted = ?, updated_at = ? WHERE id = ?'),
      ssl: db.prepare('UPDATE host SET ssl = ?, updated_at = ? WHERE id = ?'),
      createdSince: db.prepare('SELECT COUNT(*) AS n FROM host WHERE added_by = ? AND created_at >= ?'),
    }
  }

  get(hostname: string): Host | undefined {
    const row = this.s.byName.get(hostname)
    return row ? toHost(row) : undefined
  }

  getById(id: number): Host | undefined {
    const row = this.s.byId.get(id)
    return row ? toHost(row) : undefined
  }

  /** Hosts in the order they were first seen, after the host with id `afterId`. */
  list(afterId: number, limit: number): Host[] {
    return this.s.list.all(afterId, limit).map(toHost)
  }

  all(): Host[] {
    return this.s.all.all().map(toHost)
  }

  create(opts: { hostname: string; ssl: boolean; status: HostStatus; trusted: boolean; addedBy: HostOrigin; now?: number }): Host {
    const now = opts.now ?? Date.now()
    const { id } = this.s.insert.get(opts.hostname, opts.ssl ? 1 : 0, opts.status, opts.trusted ? 1 : 0, opts.addedBy, now, now)!
    return this.getById(id)!
  }

  setStatus(id: number, status: HostStatus): void {
    this.s.status.run(status, Date.now(), id)
  }

  setCursor(id: number, cursor: number, lastEventAt: number | null): void {
    this.s.cursor.run(cursor, lastEventAt, id)
  }

  /** Sets the cursor even backwards (the host's stream was reset). */
  resetCursor(id: number, cursor: number): void {
    this.s.resetCursor.run(cursor, Date.now(), id)
  }

  setLimits(id: number, limits: Partial<HostLimits> | null): void {
    this.s.limits.run(limits && Object.keys(limits).length > 0 ? JSON.stringify(limits) : null, Date.now(), id)
  }

  setTrusted(id: number, trusted: boolean): void {
    this.s.trusted.run(trusted ? 1 : 0, Date.now(), id)
  }

  setSsl(id: number, ssl: boolean): void {
    this.s.ssl.run(ssl ? 1 : 0, Date.now(), id)
  }

  /** Hosts added through requestCrawl since `since` (ms). */
  crawledSince(since: number): number {
    return this.s.createdSince.get('crawl', since)!.n
  }
}
