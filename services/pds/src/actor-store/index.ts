import { createHash } from 'node:crypto'
import { secureDir, secureFile } from '../util/secure-fs.js'
import fs from 'node:fs'
import path from 'node:path'
import { WalCheckpointer } from '@stratos/core/stream'
import type { DiskBlobStore } from '../blobstore.js'
import { AsyncLock } from '../util/lock.js'
import { ActorRepo } from './actor-repo.js'
import { openActorDb } from './db.js'
import type { CommitWorkers } from './write-pool.js'

export { ActorRepo } from './actor-repo.js'
export type { CommitOp, CommitOutcome, RecordRow, BlobRow } from './actor-repo.js'
export * from './prepare.js'
export { CommitWorkers, workerCanCommit } from './write-pool.js'

const EVICTED_CLOSE_DELAY_MS = 60_000

/**
 * The per-account stores: `<directory>/<2 hex of sha256(did)>/<did>/store.sqlite`. Open handles are kept
 * in an LRU of `cacheSize`; a handle pushed out of it (never one with a write in flight) is not closed at
 * once, as a request may still be using it (a streamed export): it waits in an `evicted` pool and is
 * closed after a minute, or earlier when the pool is full (oldest first). Asked for again meanwhile, it is
 * taken back from the pool instead of opening the file again, so accounts written round-robin beyond the
 * cache size reuse their handles rather than each write opening (and leaking) one. At most
 * `2 × cacheSize` handles are open (4 file descriptors each once written to: the database, its WAL and
 * shared-memory index, and the WAL's sync descriptor).
 */
export class ActorStore {
  private readonly open = new Map<string, ActorRepo>()
  private readonly evicted = new Map<string, { repo: ActorRepo; timer: NodeJS.Timeout }>()
  private readonly locks = new Map<string, AsyncLock>()
  /** checkpoints every store's WAL in a worker thread (SQLite's automatic checkpoints would fsync on the event loop) */
  private readonly checkpointer: WalCheckpointer
  private readonly ownsCheckpointer: boolean
  /** the threads commits are made in (PDS_WRITE_WORKERS), when any; closed by {@link close} */
  commitWorkers: CommitWorkers | null = null

  constructor(
    readonly directory: string,
    readonly blobstore: DiskBlobStore,
    private readonly cacheSize = 500,
    /** shared with other databases of the process; one of its own when not given (closed by {@link close}) */
    checkpointer?: WalCheckpointer,
  ) {
    this.ownsCheckpointer = !checkpointer
    this.checkpointer = checkpointer ?? new WalCheckpointer({ name: 'actor-wal-ckpt' })
  }

  dirFor(did: string): string {
    const shard = createHash('sha256').update(did).digest('hex').slice(0, 2)
    return path.join(this.directory, shard, encodeURIComponent(did))
  }

  fileFor(did: string): string {
    return path.join(this.dirFor(did), 'store.sqlite')
  }

  exists(did: string): boolean {
    return fs.existsSync(this.fileFor(did))
  }

  /** Creates the store of a new account (refuses an existing one). */
  create(did: string): ActorRepo {
    if (this.exists(did)) throw new Error(`actor store for ${did} already exists`)
    secureDir(path.dirname(this.dirFor(did)))
    secureDir(this.dirFor(did))
    secureFile(this.fileFor(did))
    return this.remember(did, new ActorRepo(did, openActorDb(this.fileFor(did)), this.blobstore, this.lockFor(did), this.checkpointer))
  }

  /** The store of an existing account, or null. */
  get(did: string): ActorRepo | null {
    const cached = this.open.get(did)
    if (cached) {
      this.open.delete(did)
      this.open.set(did, cached)
      cached.reused = true
      return cached
    }
    const parked = this.evicted.get(did)
    if (parked) {
      clearTimeout(parked.timer)
      this.evicted.delete(did)
      parked.repo.reused = true
      return this.remember(did, parked.repo)
    }
    if (!this.exists(did)) return null
    return this.remember(did, new ActorRepo(did, openActorDb(this.fileFor(did)), this.blobstore, this.lockFor(did), this.checkpointer))
  }

  private lockFor(did: string): AsyncLock {
    let lock = this.locks.get(did)
    if (!lock) {
      lock = new AsyncLock()
      this.locks.set(did, lock)
    }
    return lock
  }

  private remember(did: string, repo: ActorRepo): ActorRepo {
    this.open.set(did, repo)
    if (this.open.size > this.cacheSize) {
      for (const [d, r] of this.open) {
        if (this.open.size <= this.cacheSize) break
        if (d === did || r.lock.busy) continue
        this.open.delete(d)
        this.park(d, r)
      }
    }
    return repo
  }

  /** A request may still hold an evicted handle for a moment: it is closed a little later. */
  private park(did: string, repo: ActorRepo): void {
    const timer = setTimeout(() => {
      this.evicted.delete(did)
      this.retire(repo)
    }, EVICTED_CLOSE_DELAY_MS)
    timer.unref()
    this.evicted.set(did, { repo, timer })
    for (const [d, e] of this.evicted) {
      if (this.evicted.size <= this.cacheSize) break
      if (e.repo.lock.busy) continue
      clearTimeout(e.timer)
      this.evicted.delete(d)
      this.retire(e.repo)
    }
  }

  /** Closes a handle no longer cached, its fsyncs off the event loop (writes wait for it on the lock). */
  private retire(repo: ActorRepo): void {
    void repo.lock.run(() => repo.closeQuietly()).catch(() => repo.close())
  }

  /** Removes an account's store and blobs. */
  async destroy(did: string): Promise<void> {
    const parked = this.evicted.get(did)
    if (parked) {
      clearTimeout(parked.timer)
      this.evicted.delete(did)
      parked.repo.close()
    }
    const repo = this.open.get(did)
    if (repo) {
      await repo.lock.run(async () => undefined)
      repo.close()
      this.open.delete(did)
    }
    this.locks.delete(did)
    await this.commitWorkers?.forget(did)
    await fs.promises.rm(this.dirFor(did), { recursive: true, force: true })
    await this.blobstore.deleteAllForDid(did)
  }

  /** Every DID with a store (for background jobs). */
  *listDids(): Generator<string> {
    if (!fs.existsSync(this.directory)) return
    for (const shard of fs.readdirSync(this.directory)) {
      const shardDir = path.join(this.directory, shard)
      if (!fs.statSync(shardDir).isDirectory()) continue
      for (const name of fs.readdirSync(shardDir)) yield decodeURIComponent(name)
    }
  }

  /** Closes every handle; resolves once the checkpoint worker (when this store's own) has stopped. */
  close(): Promise<void> {
    for (const repo of this.open.values()) repo.close()
    this.open.clear()
    for (const { repo, timer } of this.evicted.values()) {
      clearTimeout(timer)
      repo.close()
    }
    this.evicted.clear()
    const workers = this.commitWorkers
    this.commitWorkers = null
    if (workers) return workers.close().then(() => (this.ownsCheckpointer ? this.checkpointer.close() : undefined))
    return this.ownsCheckpointer ? this.checkpointer.close() : Promise.resolve()
  }
}
