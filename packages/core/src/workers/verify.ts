/**
 * Firehose event verification (core's `verifyCommitEvent` / `verifySyncEvent`) either in the calling thread
 * or in a pool of worker threads, with the same results: `CommitVerifier` is what a consumer (the relay,
 * later the AppView) calls; `workers: 0` runs the checks in-thread.
 *
 * Events of one DID are checked in order: while some are in flight the next ones go to the same worker; a DID
 * with nothing in flight goes to the least loaded worker (see KeyedWorkerPool). An event crosses to the worker as it was decoded, CIDs included (a CID travels as a Map, which a
 * DAG-CBOR decode never produces, so nothing the upstream sent can pass for one), and the result comes back
 * as a summary: ok with the commit's rev, CID and data root, or the failure's reason and message.
 */
import { availableParallelism } from 'node:os'
import { CID } from 'multiformats/cid'
import { cborDecode, lexToJson } from '../data/index.js'
import { latin1 } from '../data/cbor-fixed.js'
import {
  verifyCommitEvent,
  verifySyncEvent,
  type CommitCheckContext,
  type CommitCheckReason,
  type CommitEvent,
  type RepoState,
  type SyncEvent,
} from '../repo/index.js'
import { checkFrameBody, indexCommitFrame } from '../stream/commit-frame.js'
import { KeyedWorkerPool } from './pool.js'

/** The verdict on an event, the same from both paths. */
export type VerifySummary =
  | {
      ok: true
      /** the commit's rev */
      rev: string
      commitCid: CID
      /** the commit's MST root */
      newData: CID
      /** #sync only: false when the event states what the relay holds already */
      changed: boolean
      /** #commit only: false when the inversion was skipped (first commit without prevData) */
      inverted: boolean
      /** #commit with `withRecords`: the verified record blocks of the ops, by path */
      records?: Map<string, Uint8Array>
      /** #commit with `withRecords: 'json'`: those records in JSON form instead (see RecordJson), by path */
      recordsJson?: Map<string, RecordJson>
      /** with `prev: 'claimed'`: the state the commit was judged against (see VerifyTaskContext.prev) */
      prevUsed?: RepoState | null
    }
  | { ok: false; reason: CommitCheckReason; message: string; prevUsed?: RepoState | null }

export interface VerifyTaskContext {
  signingKey: string
  /**
   * The state the account is at (null: none). `'claimed'` (a #commit given as bytes): the state the commit
   * says it follows, its `since` and `prevData` (null when either is absent or of another type); the verdict then
   * names it in `prevUsed`, and it is the verdict for a known state only if that state is `prevUsed` (same rev,
   * same CID). A caller that does not know the state yet (an earlier commit of the account is still being
   * verified) verifies against the claim at once and judges again if the claim turns out not to be the state.
   * Not for `#sync` nor with `withRecords`.
   */
  prev: RepoState | null | 'claimed'
  now: number
  /**
   * also hand back the ops' records (a consumer that indexes them: the AppView): their blocks (true), or
   * 'json': decoded in the worker to their JSON form with their lexicon verdict (RecordJson)
   */
  withRecords?: boolean | 'json'
  /** with `withRecords: 'json'`: lexicon-validate the records (default true) */
  validateRecords?: boolean
  /**
   * verifyCommitBytes: the body was checked already, exactly as `checkFrameBody` checks it (a frame reader
   * did: core's SubscriptionClient checks every frame before handing it out), so it is not scanned again
   * before it is read in place. Only for bytes that passed that check: the in-place reader trusts them.
   */
  checked?: boolean
}

/**
 * A record of a verified #commit in JSON form (`lexToJson` of its DAG-CBOR), as a JSON text, with its
 * verdict: `valid` when its `$type` is its collection and it passes lexicon validation (or validation is
 * off). null: the block does not decode to a record.
 */
export type RecordJson = { json: string; valid: boolean } | null

/** What is posted to a worker. */
export interface VerifyTask {
  kind: 'commit' | 'sync'
  /** the decoded event (made portable), or undefined when `body` is set */
  evt: unknown
  /**
   * the event's body as DAG-CBOR bytes (decoded in the worker), instead of `evt`; undefined when it comes as
   * the task's bytes (KeyedWorkerPool.runBytes)
   */
  body?: Uint8Array
  /** the body passed checkFrameBody already (VerifyTaskContext.checked) */
  checked?: boolean
  signingKey: string
  prev: PortableState | null | 'claimed'
  now: number
  withRecords?: boolean | 'json'
  validateRecords?: boolean
}

/**
 * What a worker answers. CIDs travel as their bytes in a one-byte string (`cidToWire`): a string is copied
 * into the message and read back without an allocation of its own, where a Uint8Array costs an ArrayBuffer
 * (a native allocation, freed by the GC) on each side, three per answer.
 */
export type PortableSummary =
  | {
      ok: true
      rev: string
      commitCid: string
      newData: string
      changed: boolean
      inverted: boolean
      records?: [string, Uint8Array][]
      recordsJson?: [string, RecordJson][]
      prevUsed?: PortableState | null
    }
  | { ok: false; reason: CommitCheckReason; message: string; prevUsed?: PortableState | null }

/** A repo state as posted (the CID as `cidToWire` gives it). */
export type PortableState = { rev: string; data: string }

/** A CID's bytes as a string of one-byte characters (character i is byte i), to post it (see PortableSummary). */
export function cidToWire(cid: CID): string {
  const b = cid.bytes
  return latin1(b, 0, b.length)
}

/** The inverse of `cidToWire` (the bytes in a Uint8Array of their own: a CID's fit in the JS heap, no ArrayBuffer allocated). */
export function cidFromWire(s: string): CID {
  const bytes = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i)
  return CID.decode(bytes)
}

const stateToWire = (state: RepoState | null): PortableState | null => state && { rev: state.rev, data: cidToWire(state.data) }
const stateFromWire = (state: PortableState | null): RepoState | null => state && { rev: state.rev, data: cidFromWire(state.data) }

const CID_MARK = 'cid'

/** A decoded value made safe for postMessage: CIDs become `Map { 'cid' => bytes }`. */
export function toPortable(v: unknown, depth = 0): unknown {
  if (v === null || typeof v !== 'object' || depth > 64) return v
  // a view into a larger buffer (decoded bytes point into the frame, the frame into the socket's read
  // buffer) would be cloned with its whole ArrayBuffer: copy just the bytes
  if (v instanceof Uint8Array) return v.byteLength === v.buffer.byteLength ? v : new Uint8Array(v) // (a Buffer's slice() is a view)
  const cid = CID.asCID(v)
  if (cid) return new Map([[CID_MARK, cid.bytes]])
  if (Array.isArray(v)) return v.map((x) => toPortable(x, depth + 1))
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(v)) out[k] = toPortable((v as Record<string, unknown>)[k], depth + 1)
  return out
}

/** The inverse of `toPortable` (in the worker). */
export function fromPortable(v: unknown, depth = 0): unknown {
  if (v === null || typeof v !== 'object' || depth > 64) return v
  if (v instanceof Uint8Array) return v
  if (v instanceof Map) return CID.decode(v.get(CID_MARK) as Uint8Array)
  if (Array.isArray(v)) return v.map((x) => fromPortable(x, depth + 1))
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(v)) out[k] = fromPortable((v as Record<string, unknown>)[k], depth + 1)
  return out
}

/** lexicon validation, loaded on first use (a relay's workers never need it) */
let lexicon: Promise<typeof import('../lexicon/index.js').validateRecord> | null = null

/** Loads the lexicons (`withRecords: 'json'` validates with them). */
export function preloadLexicons(): Promise<typeof import('../lexicon/index.js').validateRecord> {
  lexicon ??= import('../lexicon/index.js').then((m) => m.validateRecord)
  return lexicon
}

/** The records of a verified commit in JSON form with their lexicon verdict (see RecordJson). */
export async function recordsToJson(records: Map<string, Uint8Array>, validate = true): Promise<Map<string, RecordJson>> {
  const validateRecord = await preloadLexicons()
  const out = new Map<string, RecordJson>()
  for (const [path, bytes] of records) {
    const collection = path.slice(0, path.indexOf('/'))
    let record: Record<string, unknown>
    try {
      record = lexToJson(cborDecode(bytes) as Parameters<typeof lexToJson>[0]) as Record<string, unknown>
    } catch {
      out.set(path, null)
      continue
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      out.set(path, null)
      continue
    }
    const valid = record.$type === collection && (!validate || validateRecord(collection, record).valid === true)
    out.set(path, { json: JSON.stringify(record), valid })
  }
  return out
}

async function check(kind: 'commit' | 'sync', evt: unknown, ctx: CommitCheckContext, withRecords: boolean | 'json' = false, validateRecords = true): Promise<VerifySummary> {
  if (kind === 'commit') {
    const res = await verifyCommitEvent(evt as CommitEvent, ctx)
    if (!res.ok) return { ok: false, reason: res.reason, message: res.message }
    const out: VerifySummary = { ok: true, rev: res.commit.rev, commitCid: res.commitCid, newData: res.newData, changed: true, inverted: res.inverted }
    if (withRecords === 'json') out.recordsJson = await recordsToJson(res.records, validateRecords)
    else if (withRecords) out.records = res.records
    return out
  }
  const res = await verifySyncEvent(evt as SyncEvent, ctx)
  if (!res.ok) return { ok: false, reason: res.reason, message: res.message }
  return { ok: true, rev: res.commit.rev, commitCid: res.commitCid, newData: res.newData, changed: res.changed, inverted: false }
}

/**
 * An event body given as bytes: decoded as a frame reader would (strict DAG-CBOR), or a `malformed` verdict. A
 * `#commit` body that passes the strict scan is read by the frame indexer (`CommitFrame.commitEvent`: the fields
 * the verification reads, nothing else built); anything it does not build is decoded.
 */
function decodeBody(kind: 'commit' | 'sync', body: Uint8Array, checked = false): { evt: unknown } | { fail: VerifySummary & { ok: false } } {
  if (kind === 'commit') {
    let evt: CommitEvent | null = null
    try {
      if (!checked) checkFrameBody(body, 0)
      evt = indexCommitFrame(body, 0).commitEvent()
    } catch {
      // refused by the scan: the decoder below says why
    }
    if (evt) return { evt }
  }
  let evt: unknown
  try {
    evt = cborDecode(body)
  } catch (err) {
    return { fail: { ok: false, reason: 'malformed', message: `#${kind} body is not DAG-CBOR: ${(err as Error).message}` } }
  }
  if (typeof evt !== 'object' || evt === null || Array.isArray(evt) || evt instanceof Uint8Array || CID.asCID(evt)) {
    return { fail: { ok: false, reason: 'malformed', message: `#${kind} body is not a map` } }
  }
  return { evt }
}

/** The state a #commit says it follows: its `since` and `prevData`, or null when either is absent or of another type. */
function claimedPrev(evt: unknown): RepoState | null {
  const { since, prevData } = evt as { since?: unknown; prevData?: unknown }
  if (typeof since !== 'string') return null
  const data = CID.asCID(prevData)
  return data ? { rev: since, data } : null
}

/**
 * The checks of one event, in a worker or in-thread: against `prev`, or (`'claimed'`, a #commit) against the state
 * the commit claims to follow, named in the verdict (`prevUsed`); a #sync given `'claimed'` is checked against none.
 */
async function checkEvent(
  kind: 'commit' | 'sync',
  evt: unknown,
  prev: RepoState | null | 'claimed',
  ctx: Omit<CommitCheckContext, 'prev'>,
  withRecords: boolean | 'json',
  validateRecords: boolean,
): Promise<VerifySummary> {
  if (prev !== 'claimed' || kind === 'sync') return check(kind, evt, { ...ctx, prev: prev === 'claimed' ? null : prev }, withRecords, validateRecords)
  const claimed = claimedPrev(evt)
  const res = await check('commit', evt, { ...ctx, prev: claimed }, withRecords, validateRecords)
  res.prevUsed = claimed
  return res
}

/**
 * The worker side: one task (`bytes`: the body, when it came as the task's bytes: a view into the batch's
 * buffer, so nothing of it goes back in the answer without a copy).
 */
export async function runVerifyTask(task: VerifyTask, bytes?: Uint8Array): Promise<PortableSummary> {
  const prev = task.prev === 'claimed' ? 'claimed' : stateFromWire(task.prev)
  const ctx: Omit<CommitCheckContext, 'prev'> = { signingKey: task.signingKey, now: task.now }
  let evt: unknown
  const body = task.body ?? bytes
  if (body !== undefined) {
    const d = decodeBody(task.kind, body, task.checked === true)
    if ('fail' in d) return { ok: false, reason: d.fail.reason, message: d.fail.message }
    evt = d.evt
  } else {
    evt = fromPortable(task.evt)
  }
  const res = await checkEvent(task.kind, evt, prev, ctx, task.withRecords ?? false, task.validateRecords ?? true)
  // (CIDs go as strings, record blocks copied: a view into the body would take its whole buffer along)
  let out: PortableSummary
  if (!res.ok) out = { ok: false, reason: res.reason, message: res.message }
  else {
    out = { ok: true, rev: res.rev, commitCid: cidToWire(res.commitCid), newData: cidToWire(res.newData), changed: res.changed, inverted: res.inverted }
    if (res.records) out.records = [...res.records].map(([path, b]): [string, Uint8Array] => [path, new Uint8Array(b)])
    if (res.recordsJson) out.recordsJson = [...res.recordsJson]
  }
  if (res.prevUsed !== undefined) out.prevUsed = stateToWire(res.prevUsed)
  return out
}

/** A worker's answer as the caller sees it (CIDs and maps rebuilt). */
function fromPortableSummary(res: PortableSummary): VerifySummary {
  let out: VerifySummary
  if (!res.ok) out = { ok: false, reason: res.reason, message: res.message }
  else {
    out = { ok: true, rev: res.rev, commitCid: cidFromWire(res.commitCid), newData: cidFromWire(res.newData), changed: res.changed, inverted: res.inverted }
    if (res.records) out.records = new Map(res.records)
    if (res.recordsJson) out.recordsJson = new Map(res.recordsJson)
  }
  if (res.prevUsed !== undefined) out.prevUsed = stateFromWire(res.prevUsed)
  return out
}

/** The in-thread path (no workers): the checks a worker would run on the task. */
function checkInThread(kind: 'commit' | 'sync', evt: unknown, ctx: VerifyTaskContext): Promise<VerifySummary> {
  return checkEvent(kind, evt, ctx.prev, ctx, ctx.withRecords ?? false, ctx.validateRecords ?? true)
}

function portablePrev(prev: VerifyTaskContext['prev']): VerifyTask['prev'] {
  return prev === 'claimed' ? 'claimed' : stateToWire(prev)
}

export interface CommitVerifierOptions {
  /** worker threads; 0 = verify in the calling thread */
  workers: number
  /** called when a worker dies (it is restarted; its tasks in flight fail) */
  onWorkerError?: (err: unknown, index: number) => void
  /** the workers load the lexicons when they start (a caller of `withRecords: 'json'`), not at the first such task */
  preloadLexicons?: boolean
}

/** The default number of verification workers: one per core the process may use. */
export function defaultVerifyWorkers(): number {
  return availableParallelism()
}

export class CommitVerifier {
  private readonly pool: KeyedWorkerPool<VerifyTask, PortableSummary> | null

  constructor(opts: CommitVerifierOptions) {
    this.pool =
      opts.workers > 0
        ? new KeyedWorkerPool<VerifyTask, PortableSummary>({
            size: opts.workers,
            workerUrl: new URL(`./verify-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
            name: 'verify',
            onWorkerError: opts.onWorkerError,
            ...(opts.preloadLexicons ? { workerData: { lexicons: true } } : {}),
          })
        : null
  }

  /** Worker threads (0: in-thread). */
  get workers(): number {
    return this.pool?.size ?? 0
  }

  /** Thread ids of the workers (for diagnostics and per-thread CPU accounting). */
  threadIds(): number[] {
    return this.pool?.threadIds() ?? []
  }

  /** Tasks handed to workers and not answered yet. */
  get pending(): number {
    return this.pool?.pending ?? 0
  }

  /** Checks a `#commit` of `did` (sync 1.1: shape, CAR, signature, records, inversion, chain). */
  verifyCommit(did: string, evt: CommitEvent, ctx: VerifyTaskContext): Promise<VerifySummary> {
    return this.run('commit', did, evt, ctx)
  }

  /**
   * Checks a `#commit` of `did` given as its body's DAG-CBOR bytes (the frame's body, as received): the bytes
   * go to the worker as they are (copied once, with the batch's other bodies, into one transferred buffer; they
   * must not change before the end of the event-loop turn), and are decoded there (`ctx.checked`: without
   * scanning them again). The verdict is the one
   * `verifyCommit` gives for the decoded body; bytes that do not decode to a map are `malformed`.
   */
  verifyCommitBytes(did: string, body: Uint8Array, ctx: VerifyTaskContext): Promise<VerifySummary> {
    return this.runBytes('commit', did, body, ctx)
  }

  /** Checks a `#sync` of `did`. */
  verifySync(did: string, evt: SyncEvent, ctx: VerifyTaskContext): Promise<VerifySummary> {
    return this.run('sync', did, evt, ctx)
  }

  private async run(kind: 'commit' | 'sync', did: string, evt: unknown, ctx: VerifyTaskContext): Promise<VerifySummary> {
    if (!this.pool) return checkInThread(kind, evt, ctx)
    const task: VerifyTask = {
      kind,
      evt: toPortable(evt),
      signingKey: ctx.signingKey,
      prev: portablePrev(ctx.prev),
      now: ctx.now,
      ...(ctx.withRecords ? { withRecords: ctx.withRecords } : {}),
      ...(ctx.validateRecords === false ? { validateRecords: false } : {}),
    }
    return fromPortableSummary(await this.pool.run(did, task))
  }

  private async runBytes(kind: 'commit' | 'sync', did: string, body: Uint8Array, ctx: VerifyTaskContext): Promise<VerifySummary> {
    if (!this.pool) {
      const d = decodeBody(kind, body, ctx.checked === true)
      if ('fail' in d) return d.fail
      return checkInThread(kind, d.evt, ctx)
    }
    // the body goes as the task's bytes: copied, with the other tasks' bodies of the batch, into one buffer
    // transferred to the worker (KeyedWorkerPool.runBytes)
    const task: VerifyTask = {
      kind,
      evt: undefined,
      signingKey: ctx.signingKey,
      prev: portablePrev(ctx.prev),
      now: ctx.now,
      ...(ctx.checked ? { checked: true } : {}),
      ...(ctx.withRecords ? { withRecords: ctx.withRecords } : {}),
      ...(ctx.validateRecords === false ? { validateRecords: false } : {}),
    }
    return fromPortableSummary(await this.pool.runBytes(did, task, body))
  }

  /** Resolves once every worker is up (at once with 0 workers). */
  async ready(): Promise<void> {
    await this.pool?.ready()
  }

  async close(): Promise<void> {
    await this.pool?.close()
  }
}
