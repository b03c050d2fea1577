/**
 * The relay's SQLite file (`relay.sqlite`): hosts, accounts and the outbound event log live in one file so
 * that an account's new state and the event that carries it are written in one transaction.
 * One writer (this process). Migrations are numbered and tracked with `PRAGMA user_version`.
 */
import SqliteDatabase from 'better-sqlite3'

export type Db = SqliteDatabase.Database

const MIGRATIONS: string[] = [
  // 1: hosts and accounts
  `
  CREATE TABLE host (
    id INTEGER PRIMARY KEY,
    hostname TEXT NOT NULL UNIQUE,
    ssl INTEGER NOT NULL,
    status TEXT NOT NULL,
    trusted INTEGER NOT NULL DEFAULT 0,
    limits TEXT,
    cursor INTEGER NOT NULL DEFAULT 0,
    added_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_event_at INTEGER
  );
  CREATE INDEX host_created_idx ON host(created_at);
  CREATE TABLE account (
    did TEXT PRIMARY KEY,
    host_id INTEGER REFERENCES host(id),
    upstream_active INTEGER NOT NULL DEFAULT 1,
    upstream_status TEXT,
    takedown INTEGER NOT NULL DEFAULT 0,
    sync_status TEXT NOT NULL DEFAULT 'synchronized',
    rev TEXT,
    commit_cid TEXT,
    data_cid TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX account_host_idx ON account(host_id);
  `,
  // 2: the Jetstream clock of each outbound event (time_us of its first Jetstream event; one µs per op)
  `
  CREATE TABLE relay_event_time (
    seq INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL
  );
  CREATE INDEX relay_event_time_us_idx ON relay_event_time(time_us);
  `,
  // 3: listReposByCollection: records per (collection, did), exact from the rev in repo_collection_state
  `
  CREATE TABLE repo_collection (
    collection TEXT NOT NULL,
    did TEXT NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (collection, did)
  ) WITHOUT ROWID;
  CREATE INDEX repo_collection_did_idx ON repo_collection(did);
  CREATE TABLE repo_collection_state (
    did TEXT PRIMARY KEY,
    rev TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
]

/** Opens (creating) the relay database and brings its schema up to date. */
export function openRelayDb(path: string): Db {
  const db = new SqliteDatabase(path)
  if (path !== ':memory:') db.pragma('journal_mode = WAL')
  // NORMAL: a COMMIT writes the WAL without an fsync (which would block the event loop); the outbox makes a
  // batch of events durable with an fdatasync of the WAL on the thread pool before publishing it (outbox.ts).
  // Checkpoints keep that: in WAL mode with NORMAL, SQLite syncs the WAL before a checkpoint and the database
  // file after it, before the WAL is reused, so a checkpoint never undoes a synced transaction. Never OFF.
  // Writes outside the outbox (host cursors, the collection index...) are made durable by the next WAL sync.
  db.pragma(path === ':memory:' ? 'synchronous = FULL' : 'synchronous = NORMAL')
  db.pragma('busy_timeout = 5000')
  db.pragma('foreign_keys = ON')
  const current = db.pragma('user_version', { simple: true }) as number
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!)
      db.pragma(`user_version = ${v + 1}`)
    })()
  }
  return db
}
