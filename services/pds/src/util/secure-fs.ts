/**
 * Secrets at rest: the PDS's data directories are created 0700 and its database files 0600 (SQLite gives
 * its -wal / -shm files the mode of the database file), whatever the process umask.
 */
import fs from 'node:fs'

/** Creates `dir` (and missing parents) and makes it 0700. */
export function secureDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  fs.chmodSync(dir, 0o700)
}

/** Creates `file` empty if missing, and makes it 0600 (call before SQLite opens it). */
export function secureFile(file: string): void {
  if (file === ':memory:' || file === '') return
  fs.closeSync(fs.openSync(file, 'a', 0o600))
  fs.chmodSync(file, 0o600)
}
