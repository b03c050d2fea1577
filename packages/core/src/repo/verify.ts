/**
 * Pure sync-1.1 checks of firehose events (no I/O: the caller supplies the signing key and the
 * last known state of the repo).
 *
 * ## Order of checks in `verifyCommitEvent`
 * Cheap, structural checks come before the signature, the signature before the MST work, and the
 * chain check last, so each reason means "everything before it passed":
 *  1. `malformed`           event shape: repo/commit/rev/since/blocks/ops/prevData types, op
 *                           actions/paths/CIDs, duplicate paths, rev and since are TIDs
 *  2. `too-many-ops`        more than 200 ops
 *  3. `blocks-too-big`      `blocks` over 2,000,000 bytes
 *  4. `malformed` / `record-too-big`   `blocks` is not a valid CAR (any CID mismatch, truncation, bad
 *                           varint...), or one of its blocks is over 1,000,000 bytes
 *  5. `car-root-mismatch`   CAR roots[0] is not `commit`
 *  6. `missing-block` / `malformed` / `bad-version`   the commit block is absent or not a v3 commit
 *  7. `did-mismatch`, `rev-mismatch`   commit.did vs `repo`, commit.rev vs `rev`
 *  8. `rev-not-newer`, `rev-in-future`   rev ≤ ctx.prev.rev; rev more than 5 minutes after ctx.now
 *  9. `bad-signature`       the commit signature with ctx.signingKey (caller may refresh the key, retry)
 * 10. `missing-block` / `malformed`   record block of a create/update absent (unless
 *                           ctx.allowMissingRecords) or not a DAG-CBOR map
 * 11. `missing-block` / `inversion-mismatch`   MST inversion of the ops on the partial tree at
 *                           commit.data must give `prevData`
 * 12. `chain-break`         with ctx.prev: `since` must be ctx.prev.rev and `prevData` ctx.prev.data.
 *                           The event is otherwise valid (the failure carries `commit` and `newData`):
 *                           the consumer marks the repo desynchronized and resyncs.
 *
 * `prevData` absent: allowed only for a first commit (`since` null), where no inversion is done
 * (`inverted: false` in the result); otherwise `malformed`, unless ctx.requirePrevData is false.
 */
import { BlockMap, MST, ReadableBlockstore, mstUtil } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { cborDecode, scanCborItemStrict } from '../data/index.js'
import { isCidPayload } from '../data/cbor-fixed.js'
import { CarBlocks, CarError, readCarSlice, readCarSync, type CarLimits } from './car.js'
import { CommitDecodeError, checkCommitSignature, decodeCommit, isTid, tidTimestampMs, type SignedCommit } from './commit.js'
import { invertMstOps } from './mst-invert.js'
import { MstWalkError, walkMst } from './mst-walk.js'

export type CommitCheckReason =
  | 'malformed'
  | 'car-root-mismatch'
  | 'did-mismatch'
  | 'rev-mismatch'
  | 'bad-version'
  | 'bad-signature'
  | 'too-many-ops'
  | 'blocks-too-big'
  | 'record-too-big'
  | 'missing-block'
  | 'inversion-mismatch'
  | 'rev-not-newer'
  | 'rev-in-future'
  | 'chain-break'

export interface CommitEventOp {
  action: 'create' | 'update' | 'delete' | (string & {})
  path: string
  cid: CID | null
  prev?: CID | null
}

/** The decoded body of a `#commit` frame (extra fields such as seq/time/blobs are ignored). */
export interface CommitEvent {
  repo: string
  commit: CID
  rev: string
  since: string | null
  blocks: Uint8Array
  ops: CommitEventOp[]
  prevData?: CID | null
  [field: string]: unknown
}

/** The decoded body of a `#sync` frame. */
export interface SyncEvent {
  did: string
  blocks: Uint8Array
  rev: string
  [field: string]: unknown
}

export interface CommitCheckLimits {
  maxOps: number
  maxBlocksBytes: number
  maxRecordBytes: number
  /** how far a rev may be ahead of `now` */
  maxFutureMs: number
  /** `#sync` blocks */
  maxSyncBytes: number
}

export const DEFAULT_COMMIT_LIMITS: CommitCheckLimits = {
  maxOps: 200,
  maxBlocksBytes: 2_000_000,
  maxRecordBytes: 1_000_000,
  maxFutureMs: 5 * 60 * 1000,
  maxSyncBytes: 10_000,
}

export interface RepoState {
  rev: string
  data: CID
}

export interface CommitCheckContext {
  /** did:key of the account's current #atproto key */
  signingKey: string
  /** last processed state of this repo, if any */
  prev?: RepoState | null
  /** ms since epoch (default Date.now()) */
  now?: number
  limits?: Partial<CommitCheckLimits>
  /** accept create/update ops whose record block is not in the slice (default false) */
  allowMissingRecords?: boolean
  /** reject a non-first commit without prevData (default true) */
  requirePrevData?: boolean
  /** MST inversion implementation (default 'fast'; 'oracle' = @atproto/repo's MST, for tests) */
  mstInversion?: MstInversionImpl
  /**
   * 'generic': read the CAR, the commit and the records with the generic decoders only, never the fixed-shape
   * readers (the tests' oracle; the verdict is the same either way)
   */
  readers?: 'fixed' | 'generic'
}

/**
 * 'fast': `invertMstOps` (mst-invert.ts), synchronous, on the decoded slice nodes;
 * 'oracle': @atproto/repo's MST (load, delete/update/add, getPointer).
 */
export type MstInversionImpl = 'fast' | 'oracle'

export interface CommitCheckOk {
  ok: true
  commit: SignedCommit
  commitCid: CID
  /** commit.data: the new MST root, to store as the repo's `data` */
  newData: CID
  /** record bytes of create/update ops, by path */
  records: Map<string, Uint8Array>
  /** every block of the slice (built on first read) */
  blocks: BlockMap
  /** false when the inversion was skipped (first commit without prevData) */
  inverted: boolean
}

export interface CommitCheckFailure {
  ok: false
  reason: CommitCheckReason
  message: string
  /** present when the signature was verified (e.g. on 'chain-break') */
  commit?: SignedCommit
  newData?: CID
}

export type CommitCheckResult = CommitCheckOk | CommitCheckFailure

const fail = (reason: CommitCheckReason, message: string, extra: Partial<CommitCheckFailure> = {}): CommitCheckFailure => ({
  ok: false,
  reason,
  message,
  ...extra,
})

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array
}

function cidOrNull(v: unknown): CID | null | undefined {
  if (v === null || v === undefined) return null
  return CID.asCID(v) ?? undefined
}

interface CheckedOp {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: CID | null
  prev: CID | null
}

function checkShape(evt: CommitEvent): string | { ops: CheckedOp[]; commit: CID; prevData: CID | null } {
  if (typeof evt !== 'object' || evt === null) return 'event is not an object'
  if (typeof evt.repo !== 'string' || !evt.repo.startsWith('did:')) return 'repo is not a DID'
  const commit = CID.asCID(evt.commit)
  if (!commit) return 'commit is not a CID'
  if (!isTid(evt.rev)) return 'rev is not a TID'
  if (evt.since !== null && evt.since !== undefined && !isTid(evt.since)) return 'since is not a TID or null'
  if (!isBytes(evt.blocks)) return 'blocks is not bytes'
  if (!Array.isArray(evt.ops)) return 'ops is not an array'
  const prevData = cidOrNull(evt.prevData)
  if (prevData === undefined) return 'prevData is not a CID'
  const seen = new Set<string>()
  const ops: CheckedOp[] = []
  for (const [i, op] of evt.ops.entries()) {
    if (typeof op !== 'object' || op === null) return `op ${i} is not an object`
    const action: string = op.action
    const path: unknown = op.path
    if (action !== 'create' && action !== 'update' && action !== 'delete') return `op ${i} has unknown action`
    if (typeof path !== 'string' || !mstUtil.isValidMstKey(path)) return `op ${i} has an invalid path`
    if (seen.has(path)) return `op ${i}: path ${path} appears twice`
    seen.add(path)
    const cid = cidOrNull(op.cid)
    const prev = cidOrNull(op.prev)
    if (cid === undefined || prev === undefined) return `op ${i} (${path}): cid/prev is not a CID`
    if (action === 'delete' && cid !== null) return `op ${i} (${path}): delete with a cid`
    if (action !== 'delete' && cid === null) return `op ${i} (${path}): ${action} without a cid`
    ops.push({ action, path, cid, prev: action === 'create' ? null : prev })
  }
  return { ops, commit, prevData }
}

/** A ReadableBlockstore over a BlockMap that remembers the first block asked for and not found. */
class SliceBlockstore extends ReadableBlockstore {
  missing: CID | null = null
  constructor(private readonly blocks: BlockMap) {
    super()
  }
  async getBytes(cid: Parameters<BlockMap['get']>[0]): Promise<Uint8Array | null> {
    const bytes = this.blocks.get(cid)
    if (!bytes) this.missing ??= CID.decode(cid.bytes)
    return bytes ?? null
  }
  async has(cid: Parameters<BlockMap['get']>[0]): Promise<boolean> {
    return this.blocks.has(cid)
  }
  async getBlocks(cids: Parameters<BlockMap['get']>[0][]) {
    const res = this.blocks.getMany(cids)
    if (res.missing.length > 0) this.missing ??= CID.decode(res.missing[0]!.bytes)
    return res
  }
}

export type InversionResult =
  | { ok: true; root: CID }
  | { ok: false; reason: 'missing-block' | 'inversion-mismatch' | 'malformed'; message: string }

/**
 * Inverts `ops` on the partial MST rooted at `data` (built only from `blocks`) and returns the
 * resulting root: create → the key must hold `cid`, remove it; update → the key must hold `cid`, set
 * it back to `prev`; delete → the key must be absent, insert `prev`. Any node that is needed but not
 * in `blocks` gives 'missing-block'. `impl` picks the implementation (default 'fast', see
 * MstInversionImpl).
 */
export async function invertCommitOps(
  blocks: BlockMap | CarBlocks,
  data: CID,
  ops: { action: string; path: string; cid: CID | null; prev?: CID | null }[],
  opts: { impl?: MstInversionImpl } = {},
): Promise<InversionResult> {
  if ((opts.impl ?? 'fast') === 'fast') {
    // a CarBlocks is read by CID bytes (no CID objects); a BlockMap needs CIDs
    if (blocks instanceof CarBlocks) return invertMstOps(blocks, data, ops)
    return invertMstOps((cid) => blocks.get(cid), data, ops)
  }
  return invertWithAtprotoMst(blocks instanceof CarBlocks ? blocks.toBlockMap() : blocks, data, ops)
}

/** The reference inversion, through @atproto/repo's MST (kept as the oracle of the tests). */
async function invertWithAtprotoMst(
  blocks: BlockMap,
  data: CID,
  ops: { action: string; path: string; cid: CID | null; prev?: CID | null }[],
): Promise<InversionResult> {
  const store = new SliceBlockstore(blocks)
  let tree = MST.load(store, data)
  try {
    for (const op of ops) {
      const current = await tree.get(op.path)
      if (op.action === 'create' || op.action === 'update') {
        if (!current || !op.cid || !current.equals(op.cid)) {
          return {
            ok: false,
            reason: 'inversion-mismatch',
            message: `${op.action} ${op.path}: tree holds ${current ?? 'nothing'}, op says ${op.cid}`,
          }
        }
        if (op.action === 'create') tree = await tree.delete(op.path)
        else {
          if (!op.prev) return { ok: false, reason: 'malformed', message: `update ${op.path} without prev` }
          tree = await tree.update(op.path, op.prev)
        }
      } else if (op.action === 'delete') {
        if (current) {
          return { ok: false, reason: 'inversion-mismatch', message: `delete ${op.path}: key still present in the tree` }
        }
        if (!op.prev) return { ok: false, reason: 'malformed', message: `delete ${op.path} without prev` }
        tree = await tree.add(op.path, op.prev)
      } else {
        return { ok: false, reason: 'malformed', message: `unknown action ${op.action}` }
      }
    }
    const root = await tree.getPointer()
    return { ok: true, root: CID.decode(root.bytes) }
  } catch (err) {
    if (store.missing) {
      return { ok: false, reason: 'missing-block', message: `MST node ${store.missing} needed for inversion is not in the slice` }
    }
    return { ok: false, reason: 'malformed', message: `MST inversion failed: ${(err as Error).message}` }
  }
}

function carFailure(err: unknown, limits: CommitCheckLimits): CommitCheckFailure {
  if (err instanceof CarError) {
    if (err.code === 'block-too-big') return fail('record-too-big', `${err.message} (limit ${limits.maxRecordBytes})`)
    if (err.code === 'too-big') return fail('blocks-too-big', err.message)
    return fail('malformed', err.message)
  }
  return fail('malformed', `blocks: ${(err as Error).message}`)
}

function loadCommit(
  blocks: { get(cid: CID): Uint8Array | undefined },
  cid: CID,
  fixedShape = true,
): { commit: SignedCommit; unsignedBytes: Uint8Array } | CommitCheckFailure {
  const bytes = blocks.get(cid)
  if (!bytes) return fail('missing-block', `commit block ${cid} is not in blocks`)
  try {
    return decodeCommit(bytes, { fixedShape })
  } catch (err) {
    if (err instanceof CommitDecodeError) return fail(err.reason, err.message)
    throw err
  }
}

function revChecks(rev: string, ctx: CommitCheckContext, limits: CommitCheckLimits, allowEqual: boolean) {
  const prevRev = ctx.prev?.rev
  if (prevRev !== undefined && (rev < prevRev || (!allowEqual && rev === prevRev))) {
    return fail('rev-not-newer', `rev ${rev} is not newer than the last processed rev ${prevRev}`)
  }
  const now = ctx.now ?? Date.now()
  const ts = tidTimestampMs(rev)
  if (ts > now + limits.maxFutureMs) {
    return fail('rev-in-future', `rev ${rev} is ${Math.round((ts - now) / 1000)}s in the future`)
  }
  return null
}

/**
 * Why a record block is not a DAG-CBOR map (null when it is). A strict scan (which builds nothing and accepts
 * only what `cborDecode` decodes) settles the common case; anything it refuses is decoded for the message.
 */
export function recordProblem(bytes: Uint8Array, scanFirst = true): string | null {
  try {
    if (scanFirst && scanCborItemStrict(bytes, 0, isCidPayload) === bytes.length && bytes[0]! >> 5 === 5) return null
  } catch {
    // refused: the decoder says why
  }
  let value: unknown
  try {
    value = cborDecode(bytes)
  } catch (err) {
    return `is not DAG-CBOR: ${(err as Error).message}`
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array || CID.asCID(value)) {
    return 'is not a map'
  }
  return null
}

/** The sync 1.1 check of a `#commit` event. Pure: no I/O, no clock unless ctx.now is omitted. */
export async function verifyCommitEvent(evt: CommitEvent, ctx: CommitCheckContext): Promise<CommitCheckResult> {
  const limits = { ...DEFAULT_COMMIT_LIMITS, ...ctx.limits }
  const generic = ctx.readers === 'generic'

  // 1-3: shape and size limits
  const shape = checkShape(evt)
  if (typeof shape === 'string') return fail('malformed', shape)
  if (shape.ops.length > limits.maxOps) return fail('too-many-ops', `${shape.ops.length} ops (limit ${limits.maxOps})`)
  if (evt.blocks.byteLength > limits.maxBlocksBytes) {
    return fail('blocks-too-big', `blocks is ${evt.blocks.byteLength} bytes (limit ${limits.maxBlocksBytes})`)
  }

  // 4-5: the CAR slice
  let roots: CID[]
  let blocks: CarBlocks
  try {
    ;({ roots, blocks } = readCarSlice(
      evt.blocks,
      { maxBytes: limits.maxBlocksBytes, maxBlockBytes: limits.maxRecordBytes },
      { fixedShape: !generic },
    ))
  } catch (err) {
    return carFailure(err, limits)
  }
  if (!roots[0] || !roots[0].equals(shape.commit)) {
    return fail('car-root-mismatch', `CAR root ${roots[0] ?? '(none)'} is not the commit ${shape.commit}`)
  }

  // 6-7: the commit object
  const loaded = loadCommit(blocks, shape.commit, !generic)
  if ('ok' in loaded) return loaded
  const { commit, unsignedBytes } = loaded
  if (commit.did !== evt.repo) return fail('did-mismatch', `commit did ${commit.did} is not the event repo ${evt.repo}`)
  if (commit.rev !== evt.rev) return fail('rev-mismatch', `commit rev ${commit.rev} is not the event rev ${evt.rev}`)

  // 8: rev ordering and clock
  const revFail = revChecks(evt.rev, ctx, limits, false)
  if (revFail) return revFail

  // 9: signature
  if (!checkCommitSignature(ctx.signingKey, unsignedBytes, commit.sig)) {
    return fail('bad-signature', `commit signature does not verify with ${ctx.signingKey}`)
  }

  // 10: record blocks
  const records = new Map<string, Uint8Array>()
  for (const op of shape.ops) {
    if (op.action === 'delete') continue
    const bytes = blocks.get(op.cid!)
    if (!bytes) {
      if (ctx.allowMissingRecords) continue
      return fail('missing-block', `record block ${op.cid} for ${op.path} is not in blocks`)
    }
    const bad = recordProblem(bytes, !generic)
    if (bad !== null) return fail('malformed', `record ${op.path} ${bad}`)
    records.set(op.path, bytes)
  }

  // 11: MST inversion
  const since = evt.since ?? null
  let inverted = false
  if (shape.prevData) {
    for (const op of shape.ops) {
      if (op.action !== 'create' && !op.prev) return fail('malformed', `${op.action} ${op.path} has no prev CID`)
    }
    const inv = await invertCommitOps(blocks, commit.data, shape.ops, { impl: ctx.mstInversion ?? 'fast' })
    if (!inv.ok) return fail(inv.reason, inv.message)
    if (!inv.root.equals(shape.prevData)) {
      return fail('inversion-mismatch', `inverting the ops gives ${inv.root}, but prevData is ${shape.prevData}`)
    }
    inverted = true
  } else if (since !== null && ctx.requirePrevData !== false) {
    return fail('malformed', 'prevData is missing (required for sync 1.1 unless this is the first commit)')
  }

  // 12: chain
  if (ctx.prev) {
    if (since !== ctx.prev.rev) {
      return fail('chain-break', `since ${since} is not the last processed rev ${ctx.prev.rev}`, { commit, newData: commit.data })
    }
    if (!shape.prevData || !shape.prevData.equals(ctx.prev.data)) {
      return fail('chain-break', `prevData ${shape.prevData} is not the last known data ${ctx.prev.data}`, {
        commit,
        newData: commit.data,
      })
    }
  }

  // the slice as a BlockMap (CID objects, base32 keys) only for a caller that asks for it
  let blockMap: BlockMap | undefined
  return {
    ok: true,
    commit,
    commitCid: shape.commit,
    newData: commit.data,
    records,
    get blocks() {
      return (blockMap ??= blocks.toBlockMap())
    },
    inverted,
  }
}

export interface SyncCheckOk {
  ok: true
  commit: SignedCommit
  commitCid: CID
  newData: CID
  /** false when the event describes the state already held (same rev and data as ctx.prev) */
  changed: boolean
}

export type SyncCheckResult = SyncCheckOk | CommitCheckFailure

/**
 * Checks a `#sync` event: blocks ≤ 10,000 bytes, a CAR whose root is a v3 commit for `did` with the
 * event's rev, signed by ctx.signingKey; rev not in the future and not older than ctx.prev.rev (an
 * equal rev is accepted and reported as `changed: false` when the data matches too). Extra blocks
 * besides the commit are tolerated (the byte limit bounds them); nothing is inverted or chained.
 */
export async function verifySyncEvent(evt: SyncEvent, ctx: CommitCheckContext): Promise<SyncCheckResult> {
  const limits = { ...DEFAULT_COMMIT_LIMITS, ...ctx.limits }
  if (typeof evt !== 'object' || evt === null) return fail('malformed', 'event is not an object')
  if (typeof evt.did !== 'string' || !evt.did.startsWith('did:')) return fail('malformed', 'did is not a DID')
  if (!isTid(evt.rev)) return fail('malformed', 'rev is not a TID')
  if (!isBytes(evt.blocks)) return fail('malformed', 'blocks is not bytes')
  if (evt.blocks.byteLength > limits.maxSyncBytes) {
    return fail('blocks-too-big', `blocks is ${evt.blocks.byteLength} bytes (limit ${limits.maxSyncBytes})`)
  }
  let roots: CID[]
  let blocks: BlockMap
  try {
    ;({ roots, blocks } = readCarSync(evt.blocks, { maxBytes: limits.maxSyncBytes }))
  } catch (err) {
    return carFailure(err, limits)
  }
  const root = roots[0]
  if (!root) return fail('car-root-mismatch', 'CAR has no root')
  const loaded = loadCommit(blocks, root)
  if ('ok' in loaded) return loaded
  const { commit, unsignedBytes } = loaded
  if (commit.did !== evt.did) return fail('did-mismatch', `commit did ${commit.did} is not the event did ${evt.did}`)
  if (commit.rev !== evt.rev) return fail('rev-mismatch', `commit rev ${commit.rev} is not the event rev ${evt.rev}`)
  const revFail = revChecks(evt.rev, ctx, limits, true)
  if (revFail) return revFail
  if (!checkCommitSignature(ctx.signingKey, unsignedBytes, commit.sig)) {
    return fail('bad-signature', `commit signature does not verify with ${ctx.signingKey}`)
  }
  const changed = !(ctx.prev && ctx.prev.rev === commit.rev && ctx.prev.data.equals(commit.data))
  return { ok: true, commit, commitCid: root, newData: commit.data, changed }
}

// ---------------------------------------------------------------------------------------------
// full repo CAR

export class RepoVerifyError extends Error {
  constructor(
    public reason: CommitCheckReason,
    message: string,
  ) {
    super(message)
    this.name = 'RepoVerifyError'
  }
}

export interface VerifiedRecord {
  collection: string
  rkey: string
  cid: CID
  value: unknown
  bytes: Uint8Array
}

export interface VerifiedRepoCar {
  commit: SignedCommit
  commitCid: CID
  records: VerifiedRecord[]
  blocks: BlockMap
}

/**
 * Verifies a full repo export (`com.atproto.sync.getRepo`): the CAR's first root is a v3 commit for
 * `did`, signed by `signingKey`, and the MST under it is valid and complete (every node and record
 * present, keys ordered and on their layers). Returns the records in key order. Throws
 * `RepoVerifyError` (with a `reason`) otherwise.
 */
export async function verifyRepoCar(
  carBytes: Uint8Array,
  did: string,
  signingKey: string,
  opts: { limits?: CarLimits } = {},
): Promise<VerifiedRepoCar> {
  let roots: CID[]
  let blocks: BlockMap
  try {
    ;({ roots, blocks } = readCarSync(carBytes, opts.limits))
  } catch (err) {
    throw new RepoVerifyError(err instanceof CarError && err.code === 'too-big' ? 'blocks-too-big' : 'malformed', (err as Error).message)
  }
  const root = roots[0]
  if (!root) throw new RepoVerifyError('car-root-mismatch', 'CAR has no root')
  const loaded = loadCommit(blocks, root)
  if ('ok' in loaded) throw new RepoVerifyError(loaded.reason, loaded.message)
  const { commit, unsignedBytes } = loaded
  if (commit.did !== did) throw new RepoVerifyError('did-mismatch', `commit did ${commit.did} is not ${did}`)
  if (!checkCommitSignature(signingKey, unsignedBytes, commit.sig)) {
    throw new RepoVerifyError('bad-signature', `commit signature does not verify with ${signingKey}`)
  }
  const records: VerifiedRecord[] = []
  try {
    for (const item of walkMst((cid) => blocks.get(cid), commit.data)) {
      if (item.type !== 'leaf') continue
      const bytes = blocks.get(item.cid)
      if (!bytes) throw new RepoVerifyError('missing-block', `record block ${item.cid} for ${item.key} is missing`)
      let value: unknown
      try {
        value = cborDecode(bytes)
      } catch (err) {
        throw new RepoVerifyError('malformed', `record ${item.key} is not DAG-CBOR: ${(err as Error).message}`)
      }
      const slash = item.key.indexOf('/')
      records.push({ collection: item.key.slice(0, slash), rkey: item.key.slice(slash + 1), cid: item.cid, value, bytes })
    }
  } catch (err) {
    if (err instanceof MstWalkError) throw new RepoVerifyError(err.reason, err.message)
    throw err
  }
  return { commit, commitCid: root, records, blocks }
}
