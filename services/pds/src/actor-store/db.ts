import SqliteDatabase from 'better-sqlite3'
import { SqliteRepoStorage } from '@stratos/core/repo'

export type ActorSqlite = SqliteDatabase.Database

/**
 * Per-account SQLite file. The repo block store (repo_block, repo_root) belongs to core's
 * SqliteRepoStorage; this module adds the index tables the PDS keeps next to it:
 *   record(uri, cid, collection, rkey, repoRev, indexedAt, takedownRef)
 *   blob(cid, mimeType, size, tempKey, createdAt, takedownRef)   tempKey set ⇔ not yet referenced
 *   record_blob(blobCid, recordUri)
 *   backlink(uri, path, linkTo)
 *   account_pref(id, name, valueJson)
 */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE record (
    uri TEXT PRIMARY KEY,
    cid TEXT NOT NULL,
    collection TEXT NOT NULL,
    rkey TEXT NOT NULL,
    repoRev TEXT NOT NULL,
    indexedAt TEXT NOT NULL,
    takedownRef TEXT
  );
  CREATE UNIQUE INDEX record_collection_rkey_idx ON record (collection, rkey);
  CREATE INDEX record_rev_idx ON record (repoRev);
  CREATE TABLE blob (
    cid TEXT PRIMARY KEY,
    mimeType TEXT NOT NULL,
    size INTEGER NOT NULL,
    tempKey TEXT,
    createdAt TEXT NOT NULL,
    takedownRef TEXT
  );
  CREATE INDEX blob_temp_idx ON blob (tempKey) WHERE tempKey IS NOT NULL;
  CREATE TABLE record_blob (
    blobCid TEXT NOT NULL,
    recordUri TEXT NOT NULL,
    PRIMARY KEY (blobCid, recordUri)
  );
  CREATE INDEX record_blob_uri_idx ON record_blob (recordUri);
  CREATE TABLE backlink (
    uri TEXT NOT NULL,
    path TEXT NOT NULL,
    linkTo TEXT NOT NULL,
    PRIMARY KEY (uri, path)
  );
  CREATE INDEX backlink_link_idx ON backlink (path, linkTo);
  CREATE TABLE account_pref (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    valueJson TEXT NOT NULL
  );
  `,
]

export function openActorDb(file: string): ActorSqlite {
  const db = new SqliteDatabase(file)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('busy_timeout = 5000')
  SqliteRepoStorage.migrate(db)
  const version = db.pragma('user_version', { simple: true }) as number
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!)
      db.pragma(`user_version = ${v + 1}`)
    })()
  }
  return db
}
