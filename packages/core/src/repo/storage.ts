/**
 * SqliteRepoStorage: @atproto/repo's `RepoStorage` on one better-sqlite3 database (the PDS keeps one
 * SQLite file per account). All statements are synchronous and prepared once; the async methods of
 * the interface just wrap them. CIDs are stored as their binary form (no base32 round trips).
 *
 * Tables (created on open):
 *   repo_block(cid BLOB PRIMARY KEY, repo_rev TEXT, size INTEGER, content BLOB)
 *   repo_root(id = 1, cid BLOB, rev TEXT, updated_at TEXT)
 */
import SqliteDatabase from 'better-sqlite3'
import { BlockMap, ReadableBlockstore, type CommitData, type RepoStorage } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { lazyStatements } from '../db/lazy-statements.js'

type Sqlite = SqliteDatabase.Database
/** @atproto/repo's CID interface (multiformats CIDs satisfy it) */
type CidLike = Parameters<RepoStorage['getBytes']>[0]

export interface RepoRoot {
  cid: CID
  rev: string
}

export interface SqliteRepoStorageOptions {
  /** when given a path: WAL mode (default true) */
  wal?: boolean
  /**
   * false: the caller has run {@link SqliteRepoStorage.migrate} on this database already (default true:
   * the constructor runs it)
   */
  migrate?: boolean
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function toBytes(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
}

export class SqliteRepoStorage extends ReadableBlockstore implements RepoStorage {
  readonly db: Sqlite
  private readonly ownsDb: boolean
  private readonly stmts: ReturnType<SqliteRepoStorage['prepare']>

  /** `db` is an open better-sqlite3 Database, or a file path (':memory:' works) to open. */
  constructor(db: Sqlite | string, opts: SqliteRepoStorageOptions = {}) {
    super()
    if (typeof db === 'string') {
      this.db = new SqliteDatabase(db)
      this.ownsDb = true
      if (db !== ':memory:' && opts.wal !== false) this.db.pragma('journal_mode = WAL')
      this.db.pragma('synchronous = NORMAL')
      this.db.pragma('busy_timeout = 5000')
    } else {
      this.db = db
      this.ownsDb = false
    }
    if (opts.migrate !== false) SqliteRepoStorage.migrate(this.db)
    this.stmts = this.prepare()
  }

  /** Creates the tables if missing (idempotent). */
  static migrate(db: Sqlite): void {
    db.exec(`
      CREATE TABLE IF NOT EXISTS repo_block (
        cid BLOB PRIMARY KEY,
        repo_rev TEXT NOT NULL,
        size INTEGER NOT NULL,
        content BLOB NOT NULL
      );
      CREATE INDEX IF NOT EXISTS repo_block_rev_idx ON repo_block (repo_rev, cid);
      CREATE TABLE IF NOT EXISTS repo_root (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cid BLOB NOT NULL,
        rev TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
    `)
  }

  /** prepared on first use: a handle opened for a few requests prepares only the statements they run */
  private prepare() {
    const db = this.db
    return lazyStatements({
      getRoot: () => db.prepare<[], { cid: Buffer; rev: string }>('SELECT cid, rev FROM repo_root WHERE id = 1'),
      setRoot: () => db.prepare<[Buffer, string, string]>(
        `INSERT INTO repo_root (id, cid, rev, updated_at) VALUES (1, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET cid = excluded.cid, rev = excluded.rev, updated_at = excluded.updated_at`,
      ),
      get: () => db.prepare<[Buffer], { content: Buffer }>('SELECT content FROM repo_block WHERE cid = ?'),
      has: () => db.prepare<[Buffer], { one: number }>('SELECT 1 AS one FROM repo_block WHERE cid = ?'),
      put: () => db.prepare<[Buffer, string, number, Buffer]>(
        'INSERT INTO repo_block (cid, repo_rev, size, content) VALUES (?, ?, ?, ?) ON CONFLICT (cid) DO NOTHING',
      ),
      del: () => db.prepare<[Buffer]>('DELETE FROM repo_block WHERE cid = ?'),
      count: () => db.prepare<[], { n: number; bytes: number | null }>(
        'SELECT count(*) AS n, sum(size) AS bytes FROM repo_block',
      ),
      sinceRev: () => db.prepare<[string], { cid: Buffer; content: Buffer }>(
        'SELECT cid, content FROM repo_block WHERE repo_rev > ? ORDER BY repo_rev, cid',
      ),
      all: () => db.prepare<[], { cid: Buffer; content: Buffer }>('SELECT cid, content FROM repo_block'),
    })
  }

  // ---- synchronous API (what the async interface wraps) ----

  getRootSync(): RepoRoot | null {
    const row = this.stmts.getRoot.get()
    return row ? { cid: CID.decode(toBytes(row.cid)), rev: row.rev } : null
  }

  getBytesSync(cid: CidLike): Uint8Array | null {
    const row = this.stmts.get.get(toBuffer(cid.bytes))
    return row ? toBytes(row.content) : null
  }

  hasSync(cid: CidLike): boolean {
    return this.stmts.has.get(toBuffer(cid.bytes)) !== undefined
  }

  putBlockSync(cid: CidLike, bytes: Uint8Array, rev: string): void {
    this.stmts.put.run(toBuffer(cid.bytes), rev, bytes.byteLength, toBuffer(bytes))
  }

  putManySync(blocks: BlockMap, rev: string): void {
    this.transaction(() => {
      for (const [cid, bytes] of blocks) this.putBlockSync(cid, bytes, rev)
    })
  }

  updateRootSync(cid: CidLike, rev: string): void {
    this.stmts.setRoot.run(toBuffer(cid.bytes), rev, new Date().toISOString())
  }

  /** Removed blocks go first, then new blocks (a CID in both stays), then the root; all in one transaction. */
  applyCommitSync(commit: CommitData): void {
    this.transaction(() => {
      for (const cid of commit.removedCids.toList()) this.stmts.del.run(toBuffer(cid.bytes))
      for (const [cid, bytes] of commit.newBlocks) this.putBlockSync(cid, bytes, commit.rev)
      this.updateRootSync(commit.cid, commit.rev)
    })
  }

  /** Runs `fn` in a SQLite transaction (nested calls become savepoints). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)()
  }

  /** Blocks written by commits after `rev` (for `getRepo?since=`), ordered by rev. */
  *blocksSinceRev(rev: string): Generator<{ cid: CID; bytes: Uint8Array }> {
    for (const row of this.stmts.sinceRev.iterate(rev)) {
      yield { cid: CID.decode(toBytes(row.cid)), bytes: toBytes(row.content) }
    }
  }

  /** Every stored block, in no particular order. */
  *allBlocks(): Generator<{ cid: CID; bytes: Uint8Array }> {
    for (const row of this.stmts.all.iterate()) {
      yield { cid: CID.decode(toBytes(row.cid)), bytes: toBytes(row.content) }
    }
  }

  stats(): { blocks: number; bytes: number } {
    const row = this.stmts.count.get()!
    return { blocks: row.n, bytes: row.bytes ?? 0 }
  }

  // ---- RepoStorage ----

  async getRoot(): Promise<CID | null> {
    return this.getRootSync()?.cid ?? null
  }

  async getRootDetailed(): Promise<RepoRoot | null> {
    return this.getRootSync()
  }

  async putBlock(cid: CidLike, block: Uint8Array, rev: string): Promise<void> {
    this.putBlockSync(cid, block, rev)
  }

  async putMany(blocks: BlockMap, rev: string): Promise<void> {
    this.putManySync(blocks, rev)
  }

  async updateRoot(cid: CidLike, rev: string): Promise<void> {
    this.updateRootSync(cid, rev)
  }

  async applyCommit(commit: CommitData): Promise<void> {
    this.applyCommitSync(commit)
  }

  async getBytes(cid: CidLike): Promise<Uint8Array | null> {
    return this.getBytesSync(cid)
  }

  async has(cid: CidLike): Promise<boolean> {
    return this.hasSync(cid)
  }

  async getBlocks(cids: CidLike[]): Promise<{ blocks: BlockMap; missing: CidLike[] }> {
    const blocks = new BlockMap()
    const missing: CidLike[] = []
    for (const cid of cids) {
      const bytes = this.getBytesSync(cid)
      if (bytes) blocks.set(cid, bytes)
      else missing.push(cid)
    }
    return { blocks, missing }
  }

  /** Deletes every block and the root (account deletion). */
  async destroy(): Promise<void> {
    this.transaction(() => {
      this.db.exec('DELETE FROM repo_block; DELETE FROM repo_root;')
    })
  }

  /** Closes the database if this object opened it. */
  close(): void {
    if (this.ownsDb && this.db.open) this.db.close()
  }
}
