/**
 * A commit worker (see write-pool.ts): builds, signs and stores commits of the accounts the main thread sends
 * it, each on a connection of its own to the account's store file. The main thread holds the account's lock
 * around each task, so this connection and the main thread's never write to one file at the same time; the
 * kept head of either connection is checked against the file inside its commit (SQLite's data_version), so
 * a commit made by the other one is seen.
 */
import { CID } from 'multiformats/cid'
import { serveTasks } from '@stratos/core/workers'
import { importKeypair, type Curve, type SigningKeypair } from '@stratos/core/crypto'
import { XRPCError } from '../errors.js'
import { ActorRepo } from './actor-repo.js'
import { openActorDb } from './db.js'
import type { DiskBlobStore } from '../blobstore.js'
import { fromPortableWrite, toPortableOutcome, type CommitTask, type CommitTaskResult } from './write-pool.js'

/** handles kept open (LRU), per worker */
const MAX_OPEN = 256

const open = new Map<string, ActorRepo>()
const keys = new Map<string, { priv: string; key: SigningKeypair }>()

/**
 * The blob store as the worker's commits use it: writes that reference blobs are made on the main thread
 * (which moves their files first), so only the deletion of blobs a commit dereferenced can happen here; it is
 * reported back and done by the main thread.
 */
class DeferredBlobDeletes {
  deleted: string[] = []
  async makePermanent(): Promise<void> {
    throw new Error('a commit worker does not move blob files')
  }
  async deletePermanent(_did: string, cid: string): Promise<void> {
    this.deleted.push(cid)
  }
}

const blobs = new DeferredBlobDeletes()

function repoFor(did: string, file: string): ActorRepo {
  let repo = open.get(did)
  if (repo && repo.db.name === file && repo.db.open) {
    open.delete(did)
    open.set(did, repo)
    return repo
  }
  if (repo) repo.close()
  const db = openActorDb(file)
  // checkpoints are the main thread's (its schedule counts this connection's commits)
  db.pragma('wal_autocheckpoint = 0')
  repo = new ActorRepo(did, db, blobs as unknown as DiskBlobStore)
  open.set(did, repo)
  for (const [d, r] of open) {
    if (open.size <= MAX_OPEN) break
    open.delete(d)
    r.close()
  }
  return repo
}

async function keyFor(did: string, curve: Curve, priv: Uint8Array): Promise<SigningKeypair> {
  const hex = Buffer.from(priv).toString('hex')
  const kept = keys.get(did)
  if (kept && kept.priv === hex) return kept.key
  const key = await importKeypair(priv, curve)
  if (keys.size > 1000) keys.clear()
  keys.set(did, { priv: hex, key })
  return key
}

serveTasks<CommitTask, CommitTaskResult>(async (task) => {
  if (task.close) {
    const repo = open.get(task.did)
    open.delete(task.did)
    repo?.close()
    return { ok: true }
  }
  try {
    const repo = repoFor(task.did, task.file)
    const key = await keyFor(task.did, task.curve, task.priv)
    blobs.deleted = []
    const outcome = await repo.applyWritesLocked(task.writes.map(fromPortableWrite), key, task.swapCommit ? CID.decode(task.swapCommit) : undefined)
    const deletedBlobs = blobs.deleted
    // the first commit on a WAL this connection created: its directory is synced before the answer
    if (repo.syncsDirectory) await repo.durable()
    return { ok: true, outcome: toPortableOutcome(outcome), deletedBlobs }
  } catch (err) {
    if (err instanceof XRPCError) return { ok: false, status: err.status, error: err.error, message: err.message }
    return { ok: false, message: (err as Error)?.message ?? String(err) }
  }
})
