import { BlockMap, CidSet, Repo, getRecords, type CommitData } from '@atproto/repo'
import { closeSync, fdatasyncSync, openSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import { open } from 'node:fs/promises'
import { CID } from 'multiformats/cid'
import type { SigningKeypair } from '@stratos/core/crypto'
import { cborDecode } from '@stratos/core/data'
import { MultiRowStatement, lazyStatements } from '@stratos/core/db'
import { WalCheckpointSchedule, WalGroupSync, type WalCheckpointer } from '@stratos/core/stream'
import { SqliteRepoStorage, repoCarStream, walkMst, writeCar, type VerifiedRepoCar } from '@stratos/core/repo'
import { isValidNsid, isValidRecordKey, nextTid } from '@stratos/core/syntax'
import { ChangeCheckedCache } from '../util/change-checked-cache.js'
import type { DiskBlobStore } from '../blobstore.js'
import { InvalidRequestError } from '../errors.js'
import { cborEncode, cidForBlock, findBlobRefs } from '../util/ipld.js'
import { AsyncLock } from '../util/lock.js'
import type { ActorSqlite } from './db.js'
import { buildCommit, type RepoCommit, type RepoHead } from './commit.js'
import { RepoMst } from './mst.js'
import { atUri, backlinksFor, type Backlink, type PreparedWrite } from './prepare.js'
import { recordJsonCache } from './record-json.js'

export interface RecordRow {
  uri: string
  cid: string
  collection: string
  rkey: string
  repoRev: string
  indexedAt: string
  takedownRef: string | null
}

export interface BlobRow {
  cid: string
  mimeType: string
  size: number
  tempKey: string | null
  createdAt: string
  takedownRef: string | null
}

/** One op of a #commit, as the firehose carries it. */
export interface CommitOp {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: CID | null
  prev?: CID
}

export interface CommitOutcome {
  did: string
  commit: RepoCommit
  /** the data (MST root) CID of the commit before this one */
  prevData: CID | null
  ops: CommitOp[]
  /** the #commit's CAR when already built (a commit worker's) */
  car?: Uint8Array
}

const MAX_WRITES = 200
/** record rows a handle keeps for getRecord between writes (see ActorRepo#readRows; emptied when full) */
const MAX_CACHED_READS = 256
/**
 * Commits between two checkpoints of a store's WAL (done in a worker thread when the store has a
 * checkpointer). A commit writes about 20-30 WAL pages: this is close to SQLite's automatic 1,000 pages.
 */
const CHECKPOINT_EVERY_COMMITS = 32
/** thrown inside a commit's transaction (rolling it back) when another connection moved the stored head */
const STALE_HEAD = new Error('stale head')
/** commits made again from a head another connection moved meanwhile before the write fails */
const MAX_STALE_RETRIES = 5

/** What an import changed (com.atproto.repo.importRepo). */
export interface ImportOutcome {
  did: string
  /** the new commit: the imported tree, signed with this PDS's key for the account */
  commit: CommitData
  /** the signed commit block (for a #sync) */
  commitBytes: Uint8Array
  records: number
  created: number
  updated: number
  deleted: number
  /** distinct blobs the records reference that this PDS does not hold yet */
  missingBlobs: number
}

/**
 * One account's repository and its indexes, on the account's own SQLite file. Writes are serialised by
 * a per-account lock; the blocks of a commit and the index rows that follow from it go into one SQLite
 * transaction, so a crash never leaves records pointing at blocks that are not there (or the reverse).
 */
export class ActorRepo {
  readonly storage: SqliteRepoStorage
  /** handed out again from the store's cache (ActorStore.get) since it was opened: a hot account */
  reused = false
  private readonly walSync: WalGroupSync | null
  /** checkpoints of the WAL in a worker thread instead of SQLite's automatic ones in the COMMIT (fsyncs on the event loop) */
  private readonly checkpoints: WalCheckpointSchedule | null
  /** prepared on first use: a handle reopened for one write prepares only the statements a write needs */
  private readonly s
  /** the repo as of the last commit written through this handle, with the MST nodes it has loaded */
  private head: RepoHead | null = null
  /**
   * `PRAGMA data_version` when {@link head} was read or last checked against the file (it changes when another
   * connection commits; -1: check it before the next commit starts from the kept head)
   */
  private headVersion = -1
  /** whether this handle's first commit has been made (until then the WAL may not exist yet) */
  private committed = false
  /** the sync of the directory that holds the WAL this handle created (see applyWritesLocked), until done */
  private dirSynced: Promise<void> | null = null
  /**
   * What {@link getRecordJson} found by `collection/rkey` (null: no visible record): the account's file is
   * written through this connection only (one handle per account; the checkpoint worker's connection copies
   * pages, it changes no row), so a commit, an import or a takedown empties it first.
   */
  private readonly readRows: ChangeCheckedCache<{ uri: string; cid: string } | null>

  constructor(
    readonly did: string,
    readonly db: ActorSqlite,
    private readonly blobstore: DiskBlobStore,
    /** shared by every handle on this account's file, so writes stay serialised across handles */
    readonly lock: AsyncLock = new AsyncLock(),
    checkpointer?: WalCheckpointer,
  ) {
    // openActorDb created the tables
    this.storage = new SqliteRepoStorage(db, { migrate: false })
    this.readRows = new ChangeCheckedCache(db, MAX_CACHED_READS)
    // the store's commits are written to its WAL without an fsync (synchronous = NORMAL); durable() syncs it.
    // The WAL stays the same file while this connection is open (SQLite removes it when the last connection
    // closes, after close() / closeQuietly() have closed the sync's descriptor), so the descriptor is kept
    // between syncs: one fdatasync per group commit, no open and close around it.
    this.walSync = db.memory ? null : new WalGroupSync(`${db.name}-wal`, { keepOpen: true })
    this.checkpoints =
      checkpointer && !db.memory
        ? new WalCheckpointSchedule(db, checkpointer, {
            everyWrites: CHECKPOINT_EVERY_COMMITS,
            // the end of each checkpoint under the account's lock: no commit in between, so the next one
            // restarts the WAL instead of growing it
            exclusive: (fn) => this.lock.run(fn),
          })
        : null
    this.s = lazyStatements({
      record: () => db.prepare<[string], RecordRow>('SELECT * FROM record WHERE uri = ?'),
      dataVersion: () => db.prepare<[], number>('PRAGMA data_version').pluck(),
      upsertRecord: () => db.prepare<[string, string, string, string, string, string]>(
        `INSERT INTO record (uri, cid, collection, rkey, repoRev, indexedAt) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (uri) DO UPDATE SET cid = excluded.cid, repoRev = excluded.repoRev, indexedAt = excluded.indexedAt`,
      ),
      deleteRecord: () => db.prepare<[string]>('DELETE FROM record WHERE uri = ?'),
      deleteBlock: () => db.prepare<[Buffer]>('DELETE FROM repo_block WHERE cid = ?'),
      putBlocks: () => new MultiRowStatement(db, 'INSERT INTO repo_block (cid, repo_rev, size, content)', 4, 'ON CONFLICT (cid) DO NOTHING', 64),
      // made once: better-sqlite3's transaction() builds a wrapper and its variants on each call
      inTransaction: () => db.transaction((fn: () => void) => fn()),
      listDesc: () => db.prepare<[string, string, number], RecordRow>(
        'SELECT * FROM record WHERE collection = ? AND rkey < ? AND takedownRef IS NULL ORDER BY rkey DESC LIMIT ?',
      ),
      listAsc: () => db.prepare<[string, string, number], RecordRow>(
        'SELECT * FROM record WHERE collection = ? AND rkey > ? AND takedownRef IS NULL ORDER BY rkey ASC LIMIT ?',
      ),
      collections: () => db.prepare<[], { collection: string }>('SELECT DISTINCT collection FROM record ORDER BY collection'),
      recordCount: () => db.prepare<[], { n: number }>('SELECT count(*) AS n FROM record'),
      blob: () => db.prepare<[string], BlobRow>('SELECT * FROM blob WHERE cid = ?'),
      insertBlob: () => db.prepare<[string, string, number, string, string]>(
        `INSERT INTO blob (cid, mimeType, size, tempKey, createdAt) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (cid) DO UPDATE SET tempKey = CASE WHEN blob.tempKey IS NULL THEN NULL ELSE excluded.tempKey END`,
      ),
      blobMakePermanent: () => db.prepare<[string]>('UPDATE blob SET tempKey = NULL WHERE cid = ?'),
      deleteBlob: () => db.prepare<[string]>('DELETE FROM blob WHERE cid = ?'),
      blobRefsOf: () => db.prepare<[string], { blobCid: string }>('SELECT blobCid FROM record_blob WHERE recordUri = ?'),
      blobRefCount: () => db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM record_blob WHERE blobCid = ?'),
      insertRecordBlob: () => db.prepare<[string, string]>(
        'INSERT INTO record_blob (blobCid, recordUri) VALUES (?, ?) ON CONFLICT DO NOTHING',
      ),
      deleteRecordBlobs: () => db.prepare<[string]>('DELETE FROM record_blob WHERE recordUri = ?'),
      insertBacklink: () => db.prepare<[string, string, string]>(
        'INSERT INTO backlink (uri, path, linkTo) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      ),
      deleteBacklinks: () => db.prepare<[string]>('DELETE FROM backlink WHERE uri = ?'),
      backlinkConflicts: () => db.prepare<[string, string, string], { uri: string }>(
        `SELECT backlink.uri FROM backlink JOIN record ON record.uri = backlink.uri
         WHERE backlink.path = ? AND backlink.linkTo = ? AND record.collection = ?`,
      ),
      listBlobs: () => db.prepare<[string, string, number], { blobCid: string }>(
        `SELECT DISTINCT record_blob.blobCid FROM record_blob JOIN record ON record.uri = record_blob.recordUri
         WHERE record.repoRev > ? AND record_blob.blobCid > ? ORDER BY record_blob.blobCid LIMIT ?`,
      ),
      tempBlobUsage: () => db.prepare<[], { n: number; bytes: number | null }>(
        'SELECT count(*) AS n, sum(size) AS bytes FROM blob WHERE tempKey IS NOT NULL',
      ),
      staleTempBlobs: () => db.prepare<[string], { cid: string; tempKey: string }>(
        'SELECT cid, tempKey FROM blob WHERE tempKey IS NOT NULL AND createdAt < ?',
      ),
    })
  }

  // reading
  // -------

  /** Current head: commit CID, rev and MST root. Null only before the first commit. */
  getHead(): { cid: CID; rev: string; data: CID } | null {
    const root = this.storage.getRootSync()
    if (!root) return null
    const bytes = this.storage.getBytesSync(root.cid)
    if (!bytes) throw new Error(`repo of ${this.did} is missing its commit block ${root.cid}`)
    const commit = cborDecode<{ data: CID }>(bytes)
    return { cid: root.cid, rev: root.rev, data: commit.data }
  }

  getRecordRow(collection: string, rkey: string): RecordRow | null {
    return this.s.record.get(atUri(this.did, collection, rkey)) ?? null
  }

  /** A record's value (IPLD form). Taken-down records are hidden unless asked for. */
  getRecord(
    collection: string,
    rkey: string,
    opts: { cid?: string; includeTakendown?: boolean } = {},
  ): { uri: string; cid: string; value: Record<string, unknown>; takedownRef: string | null } | null {
    const row = this.getRecordRow(collection, rkey)
    if (!row) return null
    if (row.takedownRef && !opts.includeTakendown) return null
    if (opts.cid && row.cid !== opts.cid) return null
    const bytes = this.storage.getBytesSync(CID.parse(row.cid))
    if (!bytes) return null
    return { uri: row.uri, cid: row.cid, value: cborDecode(bytes), takedownRef: row.takedownRef }
  }

  /**
   * {@link getRecord} for the read endpoints: the value as JSON text (from the process-wide cache of record
   * JSON by CID, else read, decoded and converted once). Taken-down records are hidden.
   */
  getRecordJson(collection: string, rkey: string, opts: { cid?: string } = {}): { uri: string; cid: string; json: string } | null {
    const row = this.visibleRecord(collection, rkey)
    if (!row) return null
    if (opts.cid && row.cid !== opts.cid) return null
    const json = recordJsonCache.get(row.cid, () => this.storage.getBytesSync(CID.parse(row.cid)))
    return json === null ? null : { uri: row.uri, cid: row.cid, json }
  }

  /** uri and CID of a record that is not taken down, through {@link readRows} */
  private visibleRecord(collection: string, rkey: string): { uri: string; cid: string } | null {
    return this.readRows.get(`${collection}/${rkey}`, () => {
      const row = this.getRecordRow(collection, rkey)
      return row && !row.takedownRef ? { uri: row.uri, cid: row.cid } : null
    })
  }

  /** {@link listRecords} with each value as JSON text (see {@link getRecordJson}); null when its block is missing. */
  listRecordsJson(opts: { collection: string; limit: number; cursor?: string; reverse?: boolean }) {
    const rows = opts.reverse
      ? this.s.listAsc.all(opts.collection, opts.cursor ?? '', opts.limit)
      : this.s.listDesc.all(opts.collection, opts.cursor ?? '\u{10FFFF}', opts.limit)
    return rows.map((row) => ({
      uri: row.uri,
      cid: row.cid,
      rkey: row.rkey,
      json: recordJsonCache.get(row.cid, () => this.storage.getBytesSync(CID.parse(row.cid))),
    }))
  }

  listRecords(opts: { collection: string; limit: number; cursor?: string; reverse?: boolean }) {
    const rows = opts.reverse
      ? this.s.listAsc.all(opts.collection, opts.cursor ?? '', opts.limit)
      : this.s.listDesc.all(opts.collection, opts.cursor ?? '\u{10FFFF}', opts.limit)
    return rows.map((row) => {
      const bytes = this.storage.getBytesSync(CID.parse(row.cid))
      return { uri: row.uri, cid: row.cid, rkey: row.rkey, value: bytes ? cborDecode<Record<string, unknown>>(bytes) : null }
    })
  }

  listCollections(): string[] {
    return this.s.collections.all().map((r) => r.collection)
  }

  recordCount(): number {
    return this.s.recordCount.get()!.n
  }

  /** Distinct blobs records reference (checkAccountStatus). */
  expectedBlobCount(): number {
    return (this.db.prepare('SELECT count(DISTINCT blobCid) AS n FROM record_blob').get() as { n: number }).n
  }

  /** Referenced blobs actually held (checkAccountStatus; differs after an import). */
  importedBlobCount(): number {
    return (
      this.db
        .prepare(
          `SELECT count(DISTINCT record_blob.blobCid) AS n FROM record_blob
           JOIN blob ON blob.cid = record_blob.blobCid WHERE blob.tempKey IS NULL`,
        )
        .get() as { n: number }
    ).n
  }

  /**
   * Blobs records reference that this PDS does not hold (after an import, until they are uploaded), by
   * CID ascending after `cursor`, each with one record that uses it (com.atproto.repo.listMissingBlobs).
   */
  listMissingBlobs(opts: { limit: number; cursor?: string }): { cid: string; recordUri: string }[] {
    return this.db
      .prepare(
        `SELECT record_blob.blobCid AS cid, min(record_blob.recordUri) AS recordUri FROM record_blob
         LEFT JOIN blob ON blob.cid = record_blob.blobCid
         WHERE (blob.cid IS NULL OR blob.tempKey IS NOT NULL) AND record_blob.blobCid > ?
         GROUP BY record_blob.blobCid ORDER BY record_blob.blobCid ASC LIMIT ?`,
      )
      .all(opts.cursor ?? '', opts.limit) as { cid: string; recordUri: string }[]
  }

  /** Blocks of this repo by CID (com.atproto.sync.getBlocks): the found ones, and the CIDs not held. */
  getBlocks(cids: CID[]): { blocks: { cid: CID; bytes: Uint8Array }[]; missing: CID[] } {
    const blocks: { cid: CID; bytes: Uint8Array }[] = []
    const missing: CID[] = []
    for (const cid of cids) {
      const bytes = this.storage.getBytesSync(cid)
      if (bytes) blocks.push({ cid, bytes })
      else missing.push(cid)
    }
    return { blocks, missing }
  }

  getBlob(cid: string): BlobRow | null {
    return this.s.blob.get(cid) ?? null
  }

  /** CIDs of blobs referenced by records written after `since` (all when absent), ascending. */
  listBlobs(opts: { since?: string; cursor?: string; limit: number }): string[] {
    return this.s.listBlobs.all(opts.since ?? '', opts.cursor ?? '', opts.limit).map((r) => r.blobCid)
  }

  /** Full repo export as CAR bytes (commit, then MST nodes and records in walk order). */
  exportRepo(): AsyncIterable<Uint8Array> {
    const head = this.getHead()
    if (!head) throw new Error(`repo of ${this.did} has no commit`)
    return repoCarStream((cid) => this.storage.getBytesSync(cid), head.cid)
  }

  /** CAR of the blocks written by commits after `since` (getRepo?since=), rooted at the current commit. */
  exportSince(since: string): Uint8Array {
    const head = this.getHead()
    if (!head) throw new Error(`repo of ${this.did} has no commit`)
    return writeCar(head.cid, this.storage.blocksSinceRev(since))
  }

  /** CAR with the commit and the MST path (proof) to one record, present or absent. */
  recordProof(collection: string, rkey: string): AsyncIterable<Uint8Array> {
    const head = this.getHead()
    if (!head) throw new Error(`repo of ${this.did} has no commit`)
    return getRecords(this.storage, head.cid, [{ collection, rkey }])
  }

  // writing
  // -------

  /** The first commit of a new account: an empty repo. */
  async createEmptyRepo(signingKey: SigningKeypair): Promise<CommitData> {
    return this.lock.run(async () => {
      if (this.storage.getRootSync()) throw new Error(`repo of ${this.did} already exists`)
      const commit = await Repo.formatInitCommit(this.storage, this.did, signingKey as never)
      this.storage.applyCommitSync(commit)
      this.head = null
      this.checkpoints?.wrote()
      return commit
    })
  }

  /** Uploads not yet referenced by a record: how many, and their bytes. */
  tempBlobUsage(): { count: number; bytes: number } {
    const row = this.s.tempBlobUsage.get()!
    return { count: row.n, bytes: row.bytes ?? 0 }
  }

  /**
   * Stores an upload as a temporary blob until a record references it. When a record already references
   * it (an imported repo whose blobs arrive afterwards), it becomes permanent at once.
   */
  async trackUploadedBlob(key: string, cid: CID, size: number, mimeType: string): Promise<void> {
    this.s.insertBlob.run(cid.toString(), mimeType, size, key, new Date().toISOString())
    const row = this.s.blob.get(cid.toString())
    if (row && row.tempKey !== key) {
      await this.blobstore.deleteTemp(key) // already stored (permanently, or as another pending upload)
      if (row.tempKey === null) return
    }
    if (this.s.blobRefCount.get(cid.toString())!.n === 0) return
    await this.lock.run(async () => {
      const current = this.s.blob.get(cid.toString())
      if (!current?.tempKey) return
      await this.blobstore.makePermanent(this.did, current.tempKey, current.cid)
      this.s.blobMakePermanent.run(current.cid)
    })
  }

  /**
   * Replaces the repository with an imported one (com.atproto.repo.importRepo; `car` verified by the
   * caller). The records and the tree are kept as they are; the commit is new: the same tree (data CID),
   * a fresh rev later than both the current one and the imported one, `prev` null, signed with
   * `signingKey` (the key this PDS holds for the account; the imported commit was signed with the
   * account's key on its previous host). Records, blob references (blobs not held here count as
   * missing until uploaded) and backlinks are indexed in the same SQLite transaction as the blocks.
   */
  async importRepo(car: VerifiedRepoCar, signingKey: SigningKeypair): Promise<ImportOutcome> {
    return this.lock.run(() => this.importRepoLocked(car, signingKey))
  }

  /** {@link importRepo} for a caller that already holds {@link lock} (and sequences under it). */
  async importRepoLocked(car: VerifiedRepoCar, signingKey: SigningKeypair): Promise<ImportOutcome> {
    if (car.commit.did !== this.did) throw new InvalidRequestError(`The repo belongs to ${car.commit.did}, not ${this.did}`)
    const head = this.getHead()

    // the new repo's blocks: every MST node and record reachable from the imported tree
    const newBlocks = new BlockMap()
    for (const item of walkMst((cid) => car.blocks.get(cid), car.commit.data)) {
      if (item.type === 'node') newBlocks.set(item.cid, item.bytes)
    }
    const incoming = new Map<string, { collection: string; rkey: string; cid: CID; blobs: ReturnType<typeof findBlobRefs>; backlinks: Backlink[] }>()
    for (const rec of car.records) {
      const path = `${rec.collection}/${rec.rkey}`
      if (!isValidNsid(rec.collection) || !isValidRecordKey(rec.rkey)) {
        throw new InvalidRequestError(`Invalid record path in the repo: ${path}`)
      }
      const value = rec.value
      if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array || CID.asCID(value)) {
        throw new InvalidRequestError(`Could not parse record at '${path}'`)
      }
      newBlocks.set(rec.cid, rec.bytes)
      incoming.set(atUri(this.did, rec.collection, rec.rkey), {
        collection: rec.collection,
        rkey: rec.rkey,
        cid: rec.cid,
        blobs: findBlobRefs(value),
        backlinks: backlinksFor(rec.collection, value as Record<string, unknown>),
      })
    }

    // the commit, re-signed by this PDS: a rev after what we had and after what the old host published
    let rev = nextTid(head?.rev)
    if (rev <= car.commit.rev) rev = nextTid(car.commit.rev)
    const unsigned = { did: this.did, version: 3, data: car.commit.data, rev, prev: null }
    const sig = await signingKey.sign(cborEncode(unsigned))
    const commitBytes = cborEncode({ ...unsigned, sig })
    const commitCid = cidForBlock(commitBytes, 0x71)
    newBlocks.set(commitCid, commitBytes)

    const removedCids = new CidSet()
    for (const { cid } of this.storage.allBlocks()) if (!newBlocks.has(cid)) removedCids.add(cid)
    const commit: CommitData = {
      cid: commitCid,
      rev,
      since: head?.rev ?? null,
      prev: head?.cid ?? null,
      newBlocks,
      relevantBlocks: newBlocks,
      removedCids,
    } as CommitData

    // blobs referenced by the imported records that were uploaded before the import: made permanent
    const referenced = new Set<string>()
    for (const r of incoming.values()) for (const b of r.blobs) referenced.add(b.cid.toString())
    const pending = [...referenced].map((cid) => this.s.blob.get(cid)).filter((b): b is BlobRow => !!b && !!b.tempKey)
    for (const blob of pending) await this.blobstore.makePermanent(this.did, blob.tempKey!, blob.cid)

    const now = new Date().toISOString()
    const existing = this.db.prepare('SELECT uri, cid FROM record').all() as { uri: string; cid: string }[]
    let created = 0
    let updated = 0
    let deleted = 0
    const dereferenced: string[] = []
    this.db.transaction(() => {
      this.storage.applyCommitSync(commit)
      const previousBlobs = new Set<string>()
      const existingCids = new Map(existing.map((r) => [r.uri, r.cid]))
      for (const [uri] of existingCids) {
        if (incoming.has(uri)) continue
        for (const r of this.s.blobRefsOf.all(uri)) previousBlobs.add(r.blobCid)
        this.s.deleteRecordBlobs.run(uri)
        this.s.deleteBacklinks.run(uri)
        this.s.deleteRecord.run(uri)
        deleted++
      }
      for (const [uri, r] of incoming) {
        const before = existingCids.get(uri)
        if (before === r.cid.toString()) continue
        if (before === undefined) created++
        else updated++
        for (const b of this.s.blobRefsOf.all(uri)) previousBlobs.add(b.blobCid)
        this.s.deleteRecordBlobs.run(uri)
        this.s.deleteBacklinks.run(uri)
        this.s.upsertRecord.run(uri, r.cid.toString(), r.collection, r.rkey, rev, now)
        for (const b of r.blobs) this.s.insertRecordBlob.run(b.cid.toString(), uri)
        for (const link of r.backlinks) this.s.insertBacklink.run(uri, link.path, link.linkTo)
      }
      for (const cid of previousBlobs) {
        if (this.s.blobRefCount.get(cid)!.n === 0) {
          this.s.deleteBlob.run(cid)
          dereferenced.push(cid)
        }
      }
      for (const blob of pending) this.s.blobMakePermanent.run(blob.cid)
    })()
    this.head = null
    // a whole repo written at once: checkpoint it now
    this.checkpoints?.wrote(CHECKPOINT_EVERY_COMMITS)
    for (const cid of dereferenced) await this.blobstore.deletePermanent(this.did, cid)

    const missingBlobs = [...referenced].filter((cid) => {
      const b = this.s.blob.get(cid)
      return !b || b.tempKey !== null
    }).length
    return { did: this.did, commit, commitBytes, records: incoming.size, created, updated, deleted, missingBlobs }
  }

  /** Temp blobs uploaded before `before` (ISO) and never referenced: forgotten, their files removed. */
  async removeStaleTempBlobs(before: string): Promise<number> {
    const stale = this.s.staleTempBlobs.all(before)
    for (const b of stale) {
      this.s.deleteBlob.run(b.cid)
      await this.blobstore.deleteTemp(b.tempKey)
    }
    return stale.length
  }

  /**
   * Applies a batch of prepared writes as one signed commit. Swaps are checked against the state inside
   * the lock: `swapCommit` against the current commit, each write's `swapCid` against the current record.
   */
  async applyWrites(writes: PreparedWrite[], signingKey: SigningKeypair, swapCommit?: CID): Promise<CommitOutcome> {
    return this.lock.run(() => this.applyWritesLocked(writes, signingKey, swapCommit))
  }

  /** {@link applyWrites} for a caller that already holds {@link lock} (and sequences the commit under it). */
  async applyWritesLocked(writes: PreparedWrite[], signingKey: SigningKeypair, swapCommit?: CID): Promise<CommitOutcome> {
    if (writes.length > MAX_WRITES) throw new InvalidRequestError(`Too many writes. Max: ${MAX_WRITES}`)
    // The kept head is checked against the file inside the commit's transaction (a data_version read of its
    // own costs a read transaction, with its file-lock syscalls, per commit). Another connection's commit
    // since then (rare: one handle per account in this process) rolls the commit back, and the write is
    // made again from the stored head; so is a write refused on the kept head, in case that head was stale.
    for (let attempt = 1; ; attempt++) {
      const kept = this.head !== null && this.headVersion >= 0
      try {
        return await this.applyWritesOnce(writes, signingKey, swapCommit)
      } catch (err) {
        const stale = err === STALE_HEAD || (kept && this.s.dataVersion.get() !== this.headVersion)
        if (!stale || attempt >= MAX_STALE_RETRIES) throw err === STALE_HEAD ? new Error(`repo of ${this.did} kept changing under its commit`) : err
        this.headVersion = -1
      }
    }
  }

  private async applyWritesOnce(writes: PreparedWrite[], signingKey: SigningKeypair, swapCommit?: CID): Promise<CommitOutcome> {
    const head = this.currentHead()
    if (swapCommit && !head.cid.equals(swapCommit)) {
      throw new InvalidRequestError(`Commit was at ${head.cid.toString()}`, 'InvalidSwap')
    }
    const seen = new Set<string>()
    const commitOps: CommitOp[] = []
    const newlyReferenced = new Map<string, BlobRow>()
    for (const w of writes) {
      const path = `${w.collection}/${w.rkey}`
      if (seen.has(path)) throw new InvalidRequestError(`Duplicate write to ${path} in one commit`)
      seen.add(path)
      // the tree is the authority on what the repo holds (the record table indexes it)
      const currentCid = head.tree.get(path)
      if (w.swapCid !== undefined) {
        const ok = w.swapCid === null ? currentCid === null : currentCid !== null && currentCid.equals(w.swapCid)
        if (!ok) throw new InvalidRequestError(`Record was at ${currentCid?.toString() ?? 'null'}`, 'InvalidSwap')
      }
      if (w.action === 'create') {
        if (currentCid) throw new InvalidRequestError(`Record already exists at ${w.uri}`)
        commitOps.push({ action: 'create', path, cid: w.cid })
      } else if (w.action === 'update') {
        if (!currentCid) throw new InvalidRequestError(`Could not find record to update: ${w.uri}`)
        commitOps.push({ action: 'update', path, cid: w.cid, prev: currentCid })
      } else {
        if (!currentCid) throw new InvalidRequestError(`Could not find record to delete: ${w.uri}`)
        commitOps.push({ action: 'delete', path, cid: null, prev: currentCid })
      }
      if (w.action !== 'delete') {
        for (const ref of w.blobs) {
          const blob = this.s.blob.get(ref.cid.toString())
          if (!blob) throw new InvalidRequestError(`Could not find blob: ${ref.cid.toString()}`, 'BlobNotFound')
          if (blob.mimeType !== ref.mimeType) {
            throw new InvalidRequestError(`Referenced mimeType does not match stored blob: ${ref.cid.toString()}`)
          }
          if (blob.size !== ref.size) {
            throw new InvalidRequestError(`Referenced size does not match stored blob: ${ref.cid.toString()}`)
          }
          if (blob.tempKey) newlyReferenced.set(blob.cid, blob)
        }
      }
    }

    const { commit, next, prevData } = await buildCommit(head, writes, signingKey)

    // blob files move before the index says they are permanent (makePermanent is idempotent)
    for (const blob of newlyReferenced.values()) {
      await this.blobstore.makePermanent(this.did, blob.tempKey!, blob.cid)
    }

    const now = new Date().toISOString()
    const dereferenced: string[] = []
    // A handle opened on a store whose WAL was removed (by the last close) starts a new one with its first
    // commit (opening the database created it empty), and SQLite then fsyncs the new WAL's header and its
    // directory on the event loop. For that commit only,
    // SQLite's syncs are off: durable() fdatasyncs the WAL (header and frames together) and fsyncs the
    // directory on the thread pool before the write is acknowledged. (Checkpoints, which need SQLite's own
    // syncs, cannot run on a WAL this small; synchronous is NORMAL again right after.)
    // The same holds for the first commit after a checkpoint of the whole WAL, which restarts the WAL from its
    // beginning with a new header (see WalCheckpointSchedule.restartPending).
    const createsWal = !this.committed && this.walSync !== null && walIsEmpty(`${this.db.name}-wal`)
    const syncsOff = createsWal || (this.checkpoints?.restartPending ?? false)
    if (syncsOff) this.db.pragma('synchronous = OFF')
    try {
      this.commitTransaction(commit, writes, now, newlyReferenced, dereferenced)
    } finally {
      if (syncsOff) this.db.pragma('synchronous = NORMAL')
    }
    this.committed = true
    this.checkpoints?.wrote()
    if (createsWal) this.dirSynced ??= syncDirectory(dirname(this.db.name))
    // the stored head is now `next`: the next commit starts from its tree
    this.head = next
    for (const cid of dereferenced) await this.blobstore.deletePermanent(this.did, cid)

    return { did: this.did, commit, prevData, ops: commitOps }
  }

  private commitTransaction(
    commit: RepoCommit,
    writes: PreparedWrite[],
    now: string,
    newlyReferenced: Map<string, BlobRow>,
    dereferenced: string[],
  ): void {
    this.s.inTransaction(() => {
      // the transaction's first read: the head this commit was built on is still the stored one
      if (this.s.dataVersion.get() !== this.headVersion) throw STALE_HEAD
      // removed blocks first, then new ones (a CID in both stays), then the root
      for (const cid of commit.removedCids) this.s.deleteBlock.run(asBuffer(cid.bytes))
      // the new blocks in one statement (the rows core's SqliteRepoStorage#putBlockSync writes)
      const rows: unknown[] = []
      for (const b of commit.newBlocks) rows.push(asBuffer(b.cid.bytes), commit.rev, b.bytes.byteLength, asBuffer(b.bytes))
      this.s.putBlocks.run(rows)
      this.storage.updateRootSync(commit.cid, commit.rev)
      const previousBlobs = new Set<string>()
      for (const w of writes) {
        // a create is of a record that did not exist (checked above): it has no blob refs or backlinks yet
        if (w.action !== 'create') {
          for (const r of this.s.blobRefsOf.all(w.uri)) previousBlobs.add(r.blobCid)
          this.s.deleteRecordBlobs.run(w.uri)
          this.s.deleteBacklinks.run(w.uri)
        }
        if (w.action === 'delete') {
          this.s.deleteRecord.run(w.uri)
        } else {
          this.s.upsertRecord.run(w.uri, w.cid.toString(), w.collection, w.rkey, commit.rev, now)
          for (const ref of w.blobs) this.s.insertRecordBlob.run(ref.cid.toString(), w.uri)
          for (const link of w.backlinks) this.s.insertBacklink.run(w.uri, link.path, link.linkTo)
        }
      }
      for (const cid of previousBlobs) {
        if (this.s.blobRefCount.get(cid)!.n === 0) {
          this.s.deleteBlob.run(cid)
          dereferenced.push(cid)
        }
      }
      for (const cid of newlyReferenced.keys()) this.s.blobMakePermanent.run(cid)
    })
  }

  /**
   * The repo at the stored head: the head kept from this handle's last commit while nothing else has written
   * to the file since (SQLite's `data_version` moves when another connection commits; this connection's
   * other writers, createEmptyRepo and importRepo, drop the kept head), else read from storage (the tree's
   * nodes are then loaded as commits reach them).
   */
  private currentHead(): RepoHead {
    // checked by the commit's transaction
    if (this.head && this.headVersion >= 0) return this.head
    const version = this.s.dataVersion.get()!
    // this connection's own commits leave data_version as it is: the value read now stays valid for the
    // head this commit makes (all writers to the file hold the account's lock)
    this.headVersion = version
    const root = this.storage.getRootSync()
    if (!root) throw new Error(`repo of ${this.did} has no commit`)
    if (this.head && root.cid.equals(this.head.cid)) return this.head
    this.head = null
    const bytes = this.storage.getBytesSync(root.cid)
    if (!bytes) throw new Error(`repo of ${this.did} is missing its commit block ${root.cid}`)
    const data = cborDecode<{ data: CID }>(bytes).data
    const tree = RepoMst.load((cid) => this.storage.getBytesSync(cid), CID.asCID(data)!)
    return { did: this.did, cid: root.cid, rev: root.rev, tree }
  }

  /** Existing records in `collection` linking to the same subject (a second like/follow replaces the first). */
  backlinkConflicts(collection: string, backlinks: { path: string; linkTo: string }[]): string[] {
    const out = new Set<string>()
    for (const link of backlinks) {
      for (const row of this.s.backlinkConflicts.all(link.path, link.linkTo, collection)) out.add(row.uri)
    }
    return [...out]
  }

  /**
   * Resolves once everything committed to this store before the call is on disk: an fdatasync of the
   * store's WAL on the thread pool, shared by every caller meanwhile (concurrent writes of this account
   * share one; other accounts' stores sync in parallel). Call it while the handle is open (under the lock,
   * right after the commit); the sync may finish after the lock is released: closing the handle waits for
   * it ({@link closeQuietly}), and a plain {@link close} checkpoints with fsyncs (synchronous = NORMAL), so
   * what the WAL held is durable in the database file either way.
   */
  durable(): Promise<void> {
    if (!this.walSync || !this.db.open) return Promise.resolve()
    // closed meanwhile (the WAL may be gone): the close synced the checkpointed database file
    const wal = this.walSync.sync().catch((err) => {
      if (this.db.open) throw err
    })
    const dir = this.dirSynced
    if (!dir) return wal
    // a WAL this handle created: its directory entry too (every write until that sync is done waits for it)
    const both = Promise.all([wal, dir]).then(() => {
      if (this.dirSynced === dir) this.dirSynced = null
    })
    dir.catch(() => {
      if (this.dirSynced === dir) this.dirSynced = syncDirectory(dirname(this.db.name))
    })
    return both
  }

  /** whether {@link durable} still has to sync the directory of a WAL this handle created */
  get syncsDirectory(): boolean {
    return this.dirSynced !== null
  }

  /**
   * Another connection (a commit worker's, under this account's lock) committed to the file: the rows kept
   * for reads are dropped (this connection's change counter did not move), the head kept here too (the next
   * commit through this handle reads the stored one), and the commit counts towards the next checkpoint.
   */
  committedElsewhere(): void {
    this.readRows.clear()
    this.head = null
    this.headVersion = -1
    this.checkpoints?.wrote()
  }

  /** fdatasyncs of this store's WAL done by {@link durable} (for tests and benchmarks). */
  get syncCount(): number {
    return this.walSync?.syncs ?? 0
  }

  close(): void {
    if (this.db.open) this.db.close()
    void this.walSync?.close()
  }

  /**
   * Closes the handle without SQLite's checkpoint-on-close fsyncs blocking the event loop: the WAL is
   * fdatasynced on the thread pool, its frames are copied into the database file with syncs off (the WAL
   * they come from is already durable, so a crash meanwhile recovers from it), the database file is
   * fdatasynced on the thread pool, and only then is the handle closed, with nothing left to checkpoint.
   * Call under the account's lock. Any failure falls back to a plain close.
   */
  async closeQuietly(): Promise<void> {
    if (!this.db.open) return
    const file = this.db.name
    // a durable() still in flight (its write acknowledged after it) completes before the file is touched,
    // and a checkpoint in the worker before this connection checkpoints and closes (else this close could
    // find the worker's connection gone and be the last one, checkpointing with fsyncs on the event loop)
    await this.walSync?.close()
    await this.checkpoints?.settled()
    if (!this.db.open) return
    let checkpointed = false
    try {
      await datasyncFile(`${file}-wal`)
      if (!this.db.open) return
      // Syncs off for this checkpoint only: its fsyncs would block the event loop. Safe because the WAL
      // it copies from was just fdatasynced and is not reset or deleted before the database file is
      // fdatasynced below (a crash meanwhile recovers from the WAL); no write can come in between (the
      // caller holds the account's lock).
      this.db.pragma('synchronous = OFF')
      try {
        this.db.pragma('wal_checkpoint(PASSIVE)')
        checkpointed = true
      } finally {
        this.db.pragma('synchronous = NORMAL')
      }
      await datasyncFile(file)
    } catch {
      // The close below deletes the WAL once nothing is left to copy, so frames copied with syncs off
      // must reach the disk first: sync the database file here (event loop, only on this error path).
      // If that fails too, the handle stays open (the WAL stays, SQLite recovers from it) rather than
      // risk an acknowledged write.
      if (checkpointed) {
        try {
          const fd = openSync(file, 'r')
          try {
            fdatasyncSync(fd)
          } finally {
            closeSync(fd)
          }
        } catch {
          return
        }
      }
    }
    this.close()
  }
}

/** The same bytes as a Buffer (what better-sqlite3 binds as a BLOB), without a copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** A WAL file that is missing or holds nothing yet (not even its header). */
function walIsEmpty(file: string): boolean {
  try {
    return statSync(file).size === 0
  } catch {
    return true
  }
}

/** fsync of a directory (a file created in it stays there after a crash), on the thread pool. */
async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

async function datasyncFile(file: string): Promise<void> {
  const fh = await open(file, 'r')
  try {
    await fh.datasync()
  } finally {
    await fh.close()
  }
}
