/**
 * A fetched repo (com.atproto.sync.getRepo CAR) checked and turned into what the indexer takes, off the
 * main thread: core's `verifyRepoCar` (signature, complete and ordered MST), then for every record of an
 * indexed collection its JSON form (as a string, what the record table stores) and its lexicon verdict.
 * The same function runs in a worker (repo-worker.ts, through core's KeyedWorkerPool) or in this thread
 * (`workers: 0`), so both paths give the same result.
 */
import { validateRecord } from '@stratos/core/lexicon'
import { lexToJson } from '@stratos/core/data'
import { RepoVerifyError, verifyRepoCar } from '@stratos/core/repo'
import { KeyedWorkerPool } from '@stratos/core/workers'
import { INDEXED_COLLECTIONS } from '../indexer/records.js'
import { surelyValid } from './fast-valid.js'

export interface RepoTask {
  car: Uint8Array
  did: string
  signingKey: string
  /** lexicon-validate the records (the indexer's setting) */
  validate: boolean
}

/** A record of an indexed collection, in JSON form. */
export interface RepoRecord {
  uri: string
  cid: string
  collection: string
  rkey: string
  /** JSON.stringify of the record's JSON form */
  json: string
  /** passed lexicon validation (true when validation is off) */
  valid: boolean
}

export type RepoTaskResult =
  | { ok: true; rev: string; data: string; commitCid: string; records: RepoRecord[] }
  | { ok: false; reason: string; message: string }

/** One repo: verify, convert, validate. Never throws for a bad repo (the verdict says why). */
export async function runRepoTask(task: RepoTask): Promise<RepoTaskResult> {
  let verified
  try {
    verified = await verifyRepoCar(task.car, task.did, task.signingKey)
  } catch (err) {
    if (err instanceof RepoVerifyError) return { ok: false, reason: err.reason, message: err.message }
    return { ok: false, reason: 'malformed', message: (err as Error).message }
  }
  const records: RepoRecord[] = []
  for (const rec of verified.records) {
    if (!INDEXED_COLLECTIONS.has(rec.collection)) continue
    let record: Record<string, unknown>
    try {
      record = lexToJson(rec.value as Parameters<typeof lexToJson>[0]) as Record<string, unknown>
    } catch {
      continue
    }
    // (likes, reposts and follows of the usual shape: decided without the library's validators)
    const valid = !task.validate || (record.$type === rec.collection && (surelyValid(rec.collection, record) || validateRecord(rec.collection, record).valid === true))
    records.push({ uri: `at://${task.did}/${rec.collection}/${rec.rkey}`, cid: rec.cid.toString(), collection: rec.collection, rkey: rec.rkey, json: JSON.stringify(record), valid })
  }
  return { ok: true, rev: verified.commit.rev, data: verified.commit.data.toString(), commitCid: verified.commitCid.toString(), records }
}

/** Repo checks in `workers` worker threads (0: in the calling thread). */
export class RepoVerifier {
  private pool: KeyedWorkerPool<RepoTask, RepoTaskResult> | null = null
  private closed = false

  constructor(private readonly opts: { workers: number; onWorkerError?: (err: unknown, index: number) => void }) {}

  get workers(): number {
    return this.opts.workers
  }

  private get workerPool(): KeyedWorkerPool<RepoTask, RepoTaskResult> {
    this.pool ??= new KeyedWorkerPool<RepoTask, RepoTaskResult>({
      size: this.opts.workers,
      workerUrl: new URL(`./repo-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
      name: 'repo-verify',
      onWorkerError: this.opts.onWorkerError,
    })
    return this.pool
  }

  /** Starts the workers (if any) and resolves once they answer. */
  async ready(): Promise<void> {
    if (this.opts.workers > 0) await this.workerPool.ready()
  }

  async verify(task: RepoTask): Promise<RepoTaskResult> {
    if (this.opts.workers <= 0) return runRepoTask(task)
    if (this.closed) return { ok: false, reason: 'worker', message: 'the repo verifier is closed' }
    const pool = this.workerPool
    // the CAR moves to the worker when it owns its whole buffer (a fetched body does); a view is copied
    const car = task.car.byteOffset === 0 && task.car.byteLength === task.car.buffer.byteLength ? task.car : task.car.slice()
    // a worker that died or a pool closed meanwhile (shutting down): the repo is not verified
    return pool.run(task.did, { ...task, car }, [car.buffer as ArrayBuffer]).catch((err: unknown) => ({ ok: false as const, reason: 'worker', message: (err as Error).message }))
  }

  async close(): Promise<void> {
    this.closed = true
    const pool = this.pool
    this.pool = null
    await pool?.close()
  }
}
