/**
 * Commit workers: the building, signing and storing of repo commits moved off the main thread
 * (PDS_WRITE_WORKERS worker threads, 1 by default; 0 keeps every commit on the main thread). The main thread keeps HTTP,
 * auth, validation and preparation of the writes, the account's lock, the event log and the head in the
 * service database, and the fsync of the store's WAL (an fdatasync of the file through its own descriptor
 * covers what any connection wrote to it); a worker takes a prepared write and answers the commit outcome
 * (with the #commit CAR built). Writes that reference blobs stay on the main thread (their files move before
 * the commit), and so do the commits of an account with writes queued behind them (see RepoWriter); blobs a
 * worker's commit dereferenced are deleted by the main thread.
 */
import { CID } from 'multiformats/cid'
import { writeCar } from '@stratos/core/repo'
import { KeyedWorkerPool } from '@stratos/core/workers'
import type { Curve } from '@stratos/core/crypto'
import { InvalidRequestError, XRPCError } from '../errors.js'
import type { CommitOp, CommitOutcome } from './actor-repo.js'
import type { RepoCommit } from './commit.js'
import type { PreparedWrite } from './prepare.js'

/** A prepared write as it crosses to a worker: CIDs as bytes (the record value itself is not needed). */
export type PortableWrite =
  | {
      action: 'create' | 'update'
      did: string
      collection: string
      rkey: string
      uri: string
      cid: Uint8Array
      bytes: Uint8Array
      swapCid?: Uint8Array | null
      validationStatus: 'valid' | 'unknown' | undefined
      backlinks: { path: string; linkTo: string }[]
    }
  | { action: 'delete'; did: string; collection: string; rkey: string; uri: string; swapCid?: Uint8Array | null }

export interface CommitTask {
  did: string
  /** the account's store file */
  file: string
  curve: Curve
  /** the account's signing key (32 bytes) */
  priv: Uint8Array
  writes: PortableWrite[]
  swapCommit?: Uint8Array
  /** forget (close) the worker's handle on the account's file */
  close?: true
}

export interface PortableOutcome {
  cid: Uint8Array
  rev: string
  since: string | null
  prev: Uint8Array | null
  prevData: Uint8Array | null
  ops: { action: CommitOp['action']; path: string; cid: Uint8Array | null; prev?: Uint8Array }[]
  /** the #commit's CAR (the commit's slice blocks) */
  car: Uint8Array
}

export type CommitTaskResult =
  | { ok: true; outcome?: PortableOutcome; deletedBlobs?: string[] }
  | { ok: false; status?: number; error?: string; message: string }

const swapOf = (c: CID | null | undefined) => (c === undefined ? undefined : c === null ? null : c.bytes)
const cidOf = (b: Uint8Array) => CID.decode(b)

export function toPortableWrite(w: PreparedWrite): PortableWrite {
  if (w.action === 'delete') return { action: w.action, did: w.did, collection: w.collection, rkey: w.rkey, uri: w.uri, swapCid: swapOf(w.swapCid) }
  return {
    action: w.action,
    did: w.did,
    collection: w.collection,
    rkey: w.rkey,
    uri: w.uri,
    cid: w.cid.bytes,
    bytes: w.bytes,
    swapCid: swapOf(w.swapCid),
    validationStatus: w.validationStatus,
    backlinks: w.backlinks,
  }
}

export function fromPortableWrite(w: PortableWrite): PreparedWrite {
  const swapCid = w.swapCid === undefined ? undefined : w.swapCid === null ? null : cidOf(w.swapCid)
  if (w.action === 'delete') return { ...w, swapCid }
  return { ...w, cid: cidOf(w.cid), swapCid, record: {}, blobs: [] }
}

export function toPortableOutcome(o: CommitOutcome): PortableOutcome {
  const c = o.commit
  return {
    cid: c.cid.bytes,
    rev: c.rev,
    since: c.since,
    prev: c.prev?.bytes ?? null,
    prevData: o.prevData?.bytes ?? null,
    ops: o.ops.map((op) => ({ action: op.action, path: op.path, cid: op.cid?.bytes ?? null, ...(op.prev ? { prev: op.prev.bytes } : {}) })),
    car: writeCar(c.cid, c.sliceBlocks),
  }
}

export function fromPortableOutcome(did: string, o: PortableOutcome): CommitOutcome {
  const commit: RepoCommit = {
    cid: cidOf(o.cid),
    rev: o.rev,
    since: o.since,
    prev: o.prev ? cidOf(o.prev) : null,
    // stored by the worker; the #commit's blocks come as its CAR
    newBlocks: [],
    removedCids: [],
    sliceBlocks: [],
  }
  return {
    did,
    commit,
    prevData: o.prevData ? cidOf(o.prevData) : null,
    ops: o.ops.map((op) => ({ action: op.action, path: op.path, cid: op.cid ? cidOf(op.cid) : null, ...(op.prev ? { prev: cidOf(op.prev) } : {}) })),
    car: o.car,
  }
}

/** The worker's error as the XRPC error the main thread would have thrown. */
function errorOf(r: Extract<CommitTaskResult, { ok: false }>): Error {
  if (r.status === undefined) return new Error(r.message)
  if (r.status === 400) return new InvalidRequestError(r.message, r.error)
  return new XRPCError(r.status, r.error, r.message)
}

/** Whether a batch of writes can be committed by a worker (see the module comment). */
export function workerCanCommit(writes: PreparedWrite[]): boolean {
  for (const w of writes) if (w.action !== 'delete' && w.blobs.length > 0) return false
  return true
}

export class CommitWorkers {
  /** commits made by the workers (for tests and metrics) */
  commits = 0
  private readonly pool: KeyedWorkerPool<CommitTask, CommitTaskResult>

  constructor(size: number, onWorkerError?: (err: unknown) => void) {
    this.pool = new KeyedWorkerPool<CommitTask, CommitTaskResult>({
      size,
      name: 'pds-commit',
      workerUrl: new URL(`./write-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
      onWorkerError,
    })
  }

  /** Commits `writes` in a worker (the caller holds the account's lock). */
  async commit(
    did: string,
    file: string,
    key: { curve: Curve; priv: Uint8Array },
    writes: PreparedWrite[],
    swapCommit?: CID,
  ): Promise<{ outcome: CommitOutcome; deletedBlobs: string[] }> {
    const res = await this.pool.run(did, {
      did,
      file,
      curve: key.curve,
      priv: key.priv,
      writes: writes.map(toPortableWrite),
      ...(swapCommit ? { swapCommit: swapCommit.bytes } : {}),
    })
    if (!res.ok) throw errorOf(res)
    this.commits++
    return { outcome: fromPortableOutcome(did, res.outcome!), deletedBlobs: res.deletedBlobs ?? [] }
  }

  /** Closes the worker's handle on an account's file (before the file is removed or replaced). */
  async forget(did: string): Promise<void> {
    await this.pool.run(did, { did, file: '', curve: 'k256', priv: new Uint8Array(0), writes: [], close: true })
  }

  ready(): Promise<void> {
    return this.pool.ready()
  }

  close(): Promise<void> {
    return this.pool.close()
  }
}
