/**
 * Worker of {@link WalCheckpointer}: checkpoints one SQLite database (WAL mode) per task on a connection of
 * its own, opened for the task and closed after it. SQLite's own locking keeps this safe alongside the
 * writer's connection in the main thread, and its syncs (the WAL before copying, the database file after)
 * run here, off the main thread.
 */
import SqliteDatabase from 'better-sqlite3'
import { serveTasks } from '../workers/pool.js'
import type { WalCheckpointResult } from './wal-checkpoint.js'

serveTasks((file: string): WalCheckpointResult => {
  const db = new SqliteDatabase(file, { fileMustExist: true })
  try {
    db.pragma('synchronous = NORMAL')
    const [row] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[]
    return { busy: row!.busy !== 0, log: row!.log, checkpointed: row!.checkpointed }
  } finally {
    db.close()
  }
})
