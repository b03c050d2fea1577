/**
 * Accounts as the relay sees them (table `account`): the host they are on, their hosting status upstream
 * and by operator decision, and the last verified repo state (rev, commit, data root) that sync 1.1 chains
 * the next commit to.
 */
import type SqliteDatabase from 'better-sqlite3'
import type { Db } from '../db.js'

export type SyncStatus = 'synchronized' | 'desynchronized'

export interface Account {
  did: string
  hostId: number | null
  upstreamActive: boolean
  upstreamStatus: string | null
  /** taken down by the relay operator */
  takedown: boolean
  syncStatus: SyncStatus
  rev: string | null
  commitCid: string | null
  dataCid: string | null
  createdAt: number
  updatedAt: number
}

interface AccountRow {
  did: string
  host_id: number | null
  upstream_active: number
  upstream_status: string | null
  takedown: number
  sync_status: string
  rev: string | null
  commit_cid: string | null
  data_cid: string | null
  created_at: number
  updated_at: number
}

function toAccount(r: AccountRow): Account {
  return {
    did: r.did,
    hostId: r.host_id,
    upstreamActive: r.upstream_active === 1,
    upstreamStatus: r.upstream_status,
    takedown: r.takedown === 1,
    syncStatus: r.sync_status === 'desynchronized' ? 'desynchronized' : 'synchronized',
    rev: r.rev,
    commitCid: r.commit_cid,
    dataCid: r.data_cid,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

export interface RepoStateUpdate {
  rev: string
  commitCid: string
  dataCid: string
  syncStatus: SyncStatus
}

/** most account rows kept in memory (the least recently read go first) */
const CACHE_MAX = 50_000

export class AccountStore {
  /**
   * Rows as last read, by DID (an ingested commit reads its account three times). Every write through this
   * store drops the DID's entry, except a new repo state, which updates it to the row as written (so the
   * account's next commit reads no row); a write that is rolled back (a failed event or batch in the outbox's
   * transaction) must be followed by `forgetCached()`, since a row read inside that transaction may be cached.
   */
  private readonly cache = new Map<string, Account>()
  private readonly s: {
    get: SqliteDatabase.Statement<[string], AccountRow>
    insert: SqliteDatabase.Statement<[string, number | null, number, number]>
    host: SqliteDatabase.Statement<[number | null, number, string]>
    upstream: SqliteDatabase.Statement<[number, string | null, number, string]>
    takedown: SqliteDatabase.Statement<[number, number, string]>
    repo: SqliteDatabase.Statement<[string, string, string, string, number, string]>
    sync: SqliteDatabase.Statement<[string, number, string]>
    list: SqliteDatabase.Statement<[string, number], AccountRow>
    countByHost: SqliteDatabase.Statement<[], { host_id: number; n: number }>
    countHost: SqliteDatabase.Statement<[number], { n: number }>
  }

  constructor(db: Db) {
    this.s = {
      get: db.prepare('SELECT * FROM account WHERE did = ?'),
      insert: db.prepare('INSERT INTO account (did, host_id, created_at, updated_at) VALUES (?, ?, ?, ?)'),
      host: db.prepare('UPDATE account SET host_id = ?, updated_at = ? WHERE did = ?'),
      upstream: db.prepare('UPDATE account SET upstream_active = ?, upstream_status = ?, updated_at = ? WHERE did = ?'),
      takedown: db.prepare('UPDATE account SET takedown = ?, updated_at = ? WHERE did = ?'),
      repo: db.prepare(
        'UPDATE account SET rev = ?, commit_cid = ?, data_cid = ?, sync_status = ?, updated_at = ? WHERE did = ?',
      ),
      sync: db.prepare('UPDATE account SET sync_status = ?, updated_at = ? WHERE did = ?'),
      list: db.prepare('SELECT * FROM account WHERE did > ? ORDER BY did LIMIT ?'),
      countByHost: db.prepare('SELECT host_id, COUNT(*) AS n FROM account WHERE host_id IS NOT NULL GROUP BY host_id'),
      countHost: db.prepare('SELECT COUNT(*) AS n FROM account WHERE host_id = ?'),
    }
  }

  /** The account's row (a frozen object, shared between callers). */
  get(did: string): Account | undefined {
    const hit = this.cache.get(did)
    if (hit) {
      // most recently used last
      this.cache.delete(did)
      this.cache.set(did, hit)
      return hit
    }
    const row = this.s.get.get(did)
    if (!row) return undefined
    const account = Object.freeze(toAccount(row))
    this.cache.set(did, account)
    if (this.cache.size > CACHE_MAX) this.cache.delete(this.cache.keys().next().value!)
    return account
  }

  /** Drops every cached row (after a rolled-back write). */
  forgetCached(): void {
    this.cache.clear()
  }

  create(did: string, hostId: number | null): Account {
    const now = Date.now()
    this.cache.delete(did)
    this.s.insert.run(did, hostId, now, now)
    return this.get(did)!
  }

  setHost(did: string, hostId: number | null): void {
    this.cache.delete(did)
    this.s.host.run(hostId, Date.now(), did)
  }

  setUpstreamStatus(did: string, active: boolean, status: string | null): void {
    this.cache.delete(did)
    this.s.upstream.run(active ? 1 : 0, status, Date.now(), did)
  }

  setTakedown(did: string, takedown: boolean): void {
    this.cache.delete(did)
    this.s.takedown.run(takedown ? 1 : 0, Date.now(), did)
  }

  setRepoState(did: string, st: RepoStateUpdate): void {
    const now = Date.now()
    const hit = this.cache.get(did)
    this.cache.delete(did)
    this.s.repo.run(st.rev, st.commitCid, st.dataCid, st.syncStatus, now, did)
    // the row as written (each commit of an account reads it again): kept when the account was cached
    if (hit) this.cache.set(did, Object.freeze({ ...hit, rev: st.rev, commitCid: st.commitCid, dataCid: st.dataCid, syncStatus: st.syncStatus, updatedAt: now }))
  }

  setSyncStatus(did: string, status: SyncStatus): void {
    this.cache.delete(did)
    this.s.sync.run(status, Date.now(), did)
  }

  /** Accounts in DID order after `afterDid`. */
  list(afterDid: string, limit: number): Account[] {
    return this.s.list.all(afterDid, limit).map(toAccount)
  }

  countByHost(): Map<number, number> {
    return new Map(this.s.countByHost.all().map((r) => [r.host_id, r.n]))
  }

  countForHost(hostId: number): number {
    return this.s.countHost.get(hostId)!.n
  }
}

/** What the relay reports for an account: an operator takedown overrides the upstream status. */
export function accountStatus(a: Pick<Account, 'takedown' | 'upstreamActive' | 'upstreamStatus'>): {
  active: boolean
  status?: string
} {
  if (a.takedown) return { active: false, status: 'takendown' }
  if (!a.upstreamActive) return a.upstreamStatus ? { active: false, status: a.upstreamStatus } : { active: false }
  return { active: true }
}
