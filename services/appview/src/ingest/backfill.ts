/**
 * Network backfill: enumerates every repo of the upstreams (com.atproto.sync.listRepos on the relay, or
 * on each PDS followed directly), then fetches, verifies and indexes each one through the ingester's
 * resync (getRepo under the fetcher's per-host limits, with retries), a few at a time. The live stream
 * runs meanwhile: a repo's resync takes its turn in that account's queue, so its live events are applied
 * after the fetched repo when newer, and a repo already indexed at the listed rev is skipped.
 *
 * Memory: at most `concurrency` repos are in flight, and a new one starts only while the CAR bytes of
 * those in flight (fetched and not indexed yet; one still being fetched counts as the average repo so
 * far, an equal share of the bound before the first) leave room for another average repo under `maxBytesInFlight`. One repo always may run, however
 * big (the fetcher's size cap bounds it).
 *
 * Progress is kept in the database (backfill_source, backfill_repo): a backfill stopped midway resumes
 * where it stopped on the next start. A repo that cannot be fetched (after retries) is marked failed;
 * a new backfill (admin call) tries it again.
 */
import { sql } from 'kysely'
import type { Logger } from 'pino'
import type { Db } from '../indexer/indexer.js'
import type { Ingester } from './ingester.js'

export interface BackfillOptions {
  db: Db
  ingester: Ingester
  log: Logger
  /** http(s) base URLs to enumerate (the relay, or the PDSes) */
  upstreams: string[]
  /** repos fetched and indexed at once, at most (default 32) */
  concurrency?: number
  /** CAR bytes of the repos in flight above which no new repo starts (default 64 MiB) */
  maxBytesInFlight?: number
  /** progress log interval (default 10 s) */
  progressEveryMs?: number
}

export type BackfillState = 'idle' | 'listing' | 'running' | 'done'

export interface BackfillStatus {
  state: BackfillState
  startedAt: string | null
  finishedAt: string | null
  sources: { source: string; listed: boolean; finishedAt: string | null }[]
  reposTotal: number
  reposDone: number
  reposFailed: number
  reposPending: number
  /** repos being fetched, checked or indexed now, and their CAR bytes (fetched ones) */
  reposInFlight: number
  bytesInFlight: number
  /** records indexed by this run */
  records: number
  recordsPerSec: number
  reposPerSec: number
  /** seconds left at the current rate (null when unknown) */
  etaSeconds: number | null
}

interface RepoRow {
  did: string
  rev: string | null
  attempts: number
}

const PAGE = 1000
export const DEFAULT_BACKFILL_CONCURRENCY = 32
export const DEFAULT_BACKFILL_MAX_BYTES = 64 * 1024 * 1024

function httpBase(url: string): string {
  const u = new URL(url)
  const proto = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol
  return `${proto}//${u.host}${u.pathname.replace(/\/+$/, '')}`
}

export class Backfiller {
  private state: BackfillState = 'idle'
  private running: Promise<void> | null = null
  private stopping = false
  private startedAt: number | null = null
  private finishedAt: string | null = null
  private recordsAtStart = 0
  private doneThisRun = 0
  private counts = { total: 0, done: 0, failed: 0 }
  private progressTimer: NodeJS.Timeout | null = null
  /** repo outcomes not saved yet (see saveStatuses) */
  private unsaved: { did: string; status: string; attempts: number; error: string | null; updatedAt: string }[] = []
  private saveTimer: NodeJS.Timeout | null = null
  private saving: Promise<void> = Promise.resolve()
  /** repos in flight: their CAR size once fetched (null before) */
  private readonly inFlight = new Map<string, number | null>()
  private bytesInFlight = 0
  /** room taken by a worker that is picking its next repo (counted like a repo not fetched yet) */
  private reserved = 0
  /** repos fetched by this process and their bytes (the estimate of a repo not fetched yet) */
  private fetchedRepos = 0
  private fetchedBytes = 0
  private readonly roomWaiters: (() => void)[] = []

  constructor(private readonly opts: BackfillOptions) {}

  private get db(): Db {
    return this.opts.db
  }

  /** On start-up: a first start (nothing listed yet) or an unfinished backfill runs in the background. */
  async startIfNeeded(): Promise<boolean> {
    if (this.opts.upstreams.length === 0) return false
    const sources = await this.db.selectFrom('backfill_source').select(['source', 'finishedAt']).execute()
    const known = new Map(sources.map((s) => [s.source, s.finishedAt]))
    const needed = this.opts.upstreams.some((u) => !known.has(httpBase(u)) || known.get(httpBase(u)) === null)
    if (!needed) return false
    this.start()
    return true
  }

  /**
   * Starts a backfill in the background (idempotent while one runs). `restart` enumerates the upstreams
   * again and re-checks every repo (repos already indexed at their listed rev are not fetched again).
   */
  start(opts: { restart?: boolean } = {}): Promise<void> {
    if (this.running) return this.running
    this.stopping = false
    this.running = this.run(opts.restart ?? false)
      .catch((err) => this.opts.log.error({ err: (err as Error).message }, 'backfill failed'))
      .finally(() => {
        this.running = null
        if (this.progressTimer) clearInterval(this.progressTimer)
        this.progressTimer = null
      })
    return this.running
  }

  /** Stops after the repos in progress (the rest stays pending for the next start). */
  async stop(): Promise<void> {
    this.stopping = true
    this.wake()
    await this.running
  }

  get isRunning(): boolean {
    return this.running !== null
  }

  private async run(restart: boolean): Promise<void> {
    const now = () => new Date().toISOString()
    this.startedAt = Date.now()
    this.finishedAt = null
    this.recordsAtStart = this.opts.ingester.stats.resyncedRecords
    this.doneThisRun = 0
    if (restart) {
      await this.db.deleteFrom('backfill_source').execute()
      await this.db.updateTable('backfill_repo').set({ status: 'pending', attempts: 0, error: null, updatedAt: now() }).execute()
    }
    this.state = 'listing'
    await this.refreshCounts()
    this.progressTimer = setInterval(() => void this.logProgress().catch(() => undefined), this.opts.progressEveryMs ?? 10_000)
    this.progressTimer.unref()
    // list and index at once: workers take repos as pages come in
    const listing = this.listAll()
    let listed = false
    void listing.finally(() => (listed = true))
    this.state = 'running'
    const workers: Promise<void>[] = []
    const claimed = new Set<string>()
    const queue: RepoRow[] = []
    const next = async (): Promise<RepoRow | null> => {
      for (;;) {
        if (this.stopping) return null
        const row = queue.shift()
        if (row) return row
        const wasListed = listed
        const rows = await this.db
          .selectFrom('backfill_repo')
          .select(['did', 'rev', 'attempts'])
          .where('status', '=', 'pending')
          .orderBy('did')
          .limit(500)
          .execute()
        for (const r of rows) if (!claimed.has(r.did)) {
          claimed.add(r.did)
          queue.push(r)
        }
        if (queue.length > 0) continue
        if (wasListed) return null
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    const concurrency = this.opts.concurrency ?? DEFAULT_BACKFILL_CONCURRENCY
    for (let i = 0; i < concurrency; i++) {
      workers.push(
        (async () => {
          for (;;) {
            await this.room()
            let row: RepoRow | null
            try {
              row = await next()
            } finally {
              this.reserved--
            }
            if (!row) {
              this.wake()
              return
            }
            this.inFlight.set(row.did, null)
            try {
              await this.backfillOne(row)
            } finally {
              this.release(row.did)
            }
          }
        })(),
      )
    }
    try {
      await Promise.all(workers)
      await listing
    } finally {
      // what the workers finished is saved even when one of them failed
      await this.saveStatuses()
    }
    await this.refreshCounts()
    if (this.stopping) {
      this.state = 'idle'
      this.opts.log.info(this.progress(), 'backfill stopped; it resumes on the next start')
      return
    }
    const failedSources = await this.db.selectFrom('backfill_source').select('source').where('listed', '=', 0).execute()
    if (failedSources.length === 0) {
      this.finishedAt = now()
      await this.db.updateTable('backfill_source').set({ finishedAt: this.finishedAt }).where('finishedAt', 'is', null).execute()
    }
    this.state = 'done'
    this.opts.log.info(this.progress(), 'backfill finished')
  }

  /** The byte size a repo not fetched yet is counted at: the average so far (before any: an equal share of the bound). */
  private get estimate(): number {
    if (this.fetchedRepos > 0) return this.fetchedBytes / this.fetchedRepos
    return (this.opts.maxBytesInFlight ?? DEFAULT_BACKFILL_MAX_BYTES) / (this.opts.concurrency ?? DEFAULT_BACKFILL_CONCURRENCY)
  }

  /** Bytes in flight, repos still being fetched counted at the estimate. */
  private bytesHeld(): number {
    let unknown = this.reserved
    for (const v of this.inFlight.values()) if (v === null) unknown++
    return this.bytesInFlight + unknown * this.estimate
  }

  /** Resolves once another repo fits under the byte bound (at once when none is in flight), and takes that room. */
  private async room(): Promise<void> {
    const max = this.opts.maxBytesInFlight ?? DEFAULT_BACKFILL_MAX_BYTES
    while (this.inFlight.size + this.reserved > 0 && !this.stopping && this.bytesHeld() + this.estimate > max) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve))
    }
    this.reserved++
  }

  private wake(): void {
    for (const w of this.roomWaiters.splice(0)) w()
  }

  private fetched(did: string, bytes: number): void {
    if (!this.inFlight.has(did)) return
    const before = this.inFlight.get(did)
    this.bytesInFlight += bytes - (before ?? 0)
    this.inFlight.set(did, bytes)
    // (a repo fetched again, after a key change: counted once in the average)
    if (before === null) {
      this.fetchedRepos++
      this.fetchedBytes += bytes
    }
  }

  private release(did: string): void {
    this.bytesInFlight -= this.inFlight.get(did) ?? 0
    this.inFlight.delete(did)
    this.wake()
  }

  /** Pages through listRepos of every upstream, from the saved cursor; rows go in as pending. */
  private async listAll(): Promise<void> {
    for (const upstream of this.opts.upstreams) {
      const source = httpBase(upstream)
      let row = await this.db.selectFrom('backfill_source').selectAll().where('source', '=', source).executeTakeFirst()
      if (!row) {
        row = { source, cursor: null, listed: 0, startedAt: new Date().toISOString(), finishedAt: null }
        await this.db.insertInto('backfill_source').values(row).onConflict((oc) => oc.column('source').doNothing()).execute()
      }
      if (row.listed) continue
      let cursor = row.cursor
      let failures = 0
      while (!this.stopping) {
        let page: { cursor?: unknown; repos?: unknown }
        try {
          const url = `${source}/xrpc/com.atproto.sync.listRepos?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
          const bytes = await this.opts.ingester.fetcher.fetchBytes(url, { accept: 'application/json' })
          page = JSON.parse(new TextDecoder().decode(bytes)) as typeof page
        } catch (err) {
          failures++
          this.opts.log.warn({ source, err: (err as Error).message, failures }, 'backfill: listRepos failed')
          if (failures >= 3) break
          await new Promise((r) => setTimeout(r, 1000 * failures))
          continue
        }
        failures = 0
        const repos = Array.isArray(page.repos) ? (page.repos as Record<string, unknown>[]) : []
        const updatedAt = new Date().toISOString()
        const rows = repos
          .filter((r) => typeof r.did === 'string' && r.did.startsWith('did:') && r.active !== false)
          .map((r) => ({ did: r.did as string, source, rev: typeof r.rev === 'string' ? r.rev : null, status: 'pending', attempts: 0, error: null, updatedAt }))
        const next = typeof page.cursor === 'string' && page.cursor !== '' && repos.length > 0 ? page.cursor : null
        await this.db.transaction().execute(async (tx) => {
          for (let i = 0; i < rows.length; i += 200) {
            const chunk = rows.slice(i, i + 200)
            await tx
              .insertInto('backfill_repo')
              .values(chunk)
              .onConflict((oc) =>
                oc.column('did').doUpdateSet((eb) => ({ rev: eb.ref('excluded.rev'), status: 'pending', attempts: 0, error: null, updatedAt })).where('backfill_repo.status', '!=', 'pending'),
              )
              .execute()
          }
          await tx.updateTable('backfill_source').set({ cursor: next, listed: next ? 0 : 1 }).where('source', '=', source).execute()
        })
        await this.refreshCounts()
        if (!next) break
        cursor = next
      }
    }
  }

  private async backfillOne(row: RepoRow): Promise<void> {
    const updatedAt = () => new Date().toISOString()
    let error: string | null = null
    // (a repo already indexed at the listed rev, or later, is not fetched: checked in the account's queue)
    const ok = await this.opts.ingester.resync(row.did, {
      retries: 2,
      listedRev: row.rev,
      // its repos in flight are bounded by its concurrency: one PDS host serving all of them is a queue, not a refusal
      waitForHost: true,
      onFetched: (bytes) => this.fetched(row.did, bytes),
    }).catch((err) => {
      this.opts.log.warn({ did: row.did, err: (err as Error).message }, 'backfill: repo failed')
      return false
    })
    if (!ok) error = 'could not fetch and verify the repo (see the log)'

    // stopped midway: the repo stays pending for the next start
    if (!ok && this.stopping) return
    const attempts = row.attempts + 1
    const status = ok ? 'done' : 'failed'
    this.unsaved.push({ did: row.did, status, attempts, error, updatedAt: updatedAt() })
    if (this.unsaved.length >= 200) await this.saveStatuses()
    else if (!this.saveTimer) {
      this.saveTimer = setTimeout(() => void this.saveStatuses().catch((err) => this.opts.log.warn({ err: (err as Error).message }, 'backfill: saving progress failed')), 250)
      this.saveTimer.unref()
    }
    if (status === 'done') {
      this.counts.done++
      this.doneThisRun++
    } else if (status === 'failed') this.counts.failed++
  }

  /**
   * Repo outcomes are saved together (one transaction per 250 ms or 200 repos, not one per repo). A repo
   * done but not saved when the process stops is checked again on the next start: its repo state is
   * already at the listed rev, so it is not fetched again.
   */
  private async saveStatuses(): Promise<void> {
    if (this.saveTimer) clearTimeout(this.saveTimer)
    this.saveTimer = null
    const rows = this.unsaved.splice(0)
    if (rows.length === 0) return this.saving
    this.saving = this.saving
      .catch(() => undefined)
      .then(() =>
        this.db.transaction().execute(async (tx) => {
          for (const status of ['done', 'failed']) {
            const group = rows.filter((r) => r.status === status)
            if (status === 'done') {
              // (done: attempts and error as before; written by groups)
              for (let i = 0; i < group.length; i += 500) {
                const dids = group.slice(i, i + 500).map((r) => r.did)
                await tx.updateTable('backfill_repo').set({ status, error: null, updatedAt: group[0]!.updatedAt, attempts: sql`attempts + 1` }).where('did', 'in', dids).execute()
              }
            } else {
              for (const r of group) {
                await tx.updateTable('backfill_repo').set({ status, attempts: r.attempts, error: r.error, updatedAt: r.updatedAt }).where('did', '=', r.did).execute()
              }
            }
          }
        }),
      )
    return this.saving
  }

  private async refreshCounts(): Promise<void> {
    const rows = await this.db.selectFrom('backfill_repo').select(['status', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('status').execute()
    const by = new Map(rows.map((r) => [r.status, Number(r.n)]))
    this.counts = {
      total: [...by.values()].reduce((a, b) => a + b, 0),
      done: by.get('done') ?? 0,
      failed: by.get('failed') ?? 0,
    }
  }

  private progress(): Omit<BackfillStatus, 'sources'> {
    const elapsed = this.startedAt ? (Date.now() - this.startedAt) / 1000 : 0
    const records = this.opts.ingester.stats.resyncedRecords - this.recordsAtStart
    const pending = Math.max(0, this.counts.total - this.counts.done - this.counts.failed)
    const reposPerSec = elapsed > 0 ? this.doneThisRun / elapsed : 0
    return {
      state: this.state,
      startedAt: this.startedAt ? new Date(this.startedAt).toISOString() : null,
      finishedAt: this.finishedAt,
      reposTotal: this.counts.total,
      reposDone: this.counts.done,
      reposFailed: this.counts.failed,
      reposPending: pending,
      reposInFlight: this.inFlight.size,
      bytesInFlight: this.bytesInFlight,
      records,
      recordsPerSec: elapsed > 0 ? Math.round(records / elapsed) : 0,
      reposPerSec: Math.round(reposPerSec * 10) / 10,
      etaSeconds: this.state === 'done' ? 0 : reposPerSec > 0 ? Math.round(pending / reposPerSec) : null,
    }
  }

  private async logProgress(): Promise<void> {
    if (!this.running) return
    this.opts.log.info(this.progress(), 'backfill progress')
  }

  async status(): Promise<BackfillStatus> {
    if (!this.running) await this.refreshCounts()
    const sources = await this.db.selectFrom('backfill_source').selectAll().execute()
    const p = this.progress()
    if (!this.running && sources.length > 0 && sources.every((s) => s.finishedAt !== null)) p.state = 'done'
    return { ...p, sources: sources.map((s) => ({ source: s.source, listed: s.listed === 1, finishedAt: s.finishedAt })) }
  }

  /** Synchronous figures for /metrics. */
  metrics(): { total: number; done: number; failed: number; recordsPerSec: number; etaSeconds: number | null; running: boolean } {
    const p = this.progress()
    return { total: p.reposTotal, done: p.reposDone, failed: p.reposFailed, recordsPerSec: p.recordsPerSec, etaSeconds: p.etaSeconds, running: this.running !== null }
  }
}
