import { Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import {
  BlockMap,
  Repo,
  WriteOpAction,
  signCommit,
  type CommitData,
  type RecordCreateOp,
  type RecordWriteOp,
} from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { cborDecode, cborEncode, cidForCbor } from '../../src/data/index.js'
import { commitSliceCar, readCarSync, writeCar, type CommitEvent, type CommitEventOp } from '../../src/repo/index.js'

export const COLL = 'app.bsky.feed.post'

export function post(text: string, extra: Record<string, unknown> = {}) {
  return { $type: COLL, text, createdAt: '2024-01-01T00:00:00.000Z', ...extra }
}

export function createOp(rkey: string, record: Record<string, unknown>, collection = COLL): RecordCreateOp {
  return { action: WriteOpAction.Create, collection, rkey, record } as RecordCreateOp
}
export function updateOp(rkey: string, record: Record<string, unknown>, collection = COLL): RecordWriteOp {
  return { action: WriteOpAction.Update, collection, rkey, record } as RecordWriteOp
}
export function deleteOp(rkey: string, collection = COLL): RecordWriteOp {
  return { action: WriteOpAction.Delete, collection, rkey } as RecordWriteOp
}

export function toCid(c: { bytes: Uint8Array }): CID {
  return CID.decode(c.bytes)
}

export async function newKeypair(): Promise<Keypair> {
  return Secp256k1Keypair.create({ exportable: true })
}

/**
 * Applies `writes` to `repo` and returns the `#commit` event body a sync-1.1 host would emit:
 * ops with prev CIDs (read from the tree before the commit), prevData = the old data root,
 * blocks = the commit's CAR slice.
 */
export async function commitEvent(
  repo: Repo,
  writes: RecordWriteOp[],
  keypair: Keypair,
): Promise<{ evt: CommitEvent; next: Repo; commitData: CommitData }> {
  const ops: CommitEventOp[] = []
  for (const w of writes) {
    const path = `${w.collection}/${w.rkey}`
    const prevCid = await repo.data.get(path)
    const prev = prevCid ? toCid(prevCid) : null
    if (w.action === WriteOpAction.Create) ops.push({ action: 'create', path, cid: cidForCbor(w.record) })
    else if (w.action === WriteOpAction.Update) ops.push({ action: 'update', path, cid: cidForCbor(w.record), prev })
    else ops.push({ action: 'delete', path, cid: null, prev })
  }
  const prevData = toCid(repo.commit.data)
  const commitData = await repo.formatCommit(writes, keypair)
  const blocks = commitSliceCar(commitData)
  const next = await repo.applyCommit(commitData)
  const evt: CommitEvent = {
    seq: 1,
    rebase: false,
    tooBig: false,
    repo: repo.did,
    commit: toCid(commitData.cid),
    rev: commitData.rev,
    since: commitData.since,
    blocks,
    ops,
    blobs: [],
    prevData,
    time: new Date().toISOString(),
  }
  return { evt, next, commitData }
}

/**
 * Rewrites the commit inside an event's CAR: `edit` changes the decoded (unsigned) commit, which is
 * then re-signed with `keypair` (or keeps the old signature bytes, edited by `editSig`). The CAR root
 * and evt.commit follow the new commit CID unless told otherwise.
 */
export async function rewriteCommit(
  evt: CommitEvent,
  opts: {
    keypair?: Keypair
    edit?: (c: Record<string, unknown>) => void
    editSig?: (sig: Uint8Array) => Uint8Array
    keepEventFields?: boolean
  },
): Promise<CommitEvent> {
  const car = readCarSync(evt.blocks)
  const old = cborDecode<Record<string, unknown>>(car.blocks.get(evt.commit)!)
  const { sig, ...unsigned } = old
  opts.edit?.(unsigned)
  let signed: Record<string, unknown>
  if (opts.keypair) {
    signed = (await signCommit(unsigned as never, opts.keypair)) as unknown as Record<string, unknown>
  } else {
    signed = { ...unsigned, sig: opts.editSig ? opts.editSig(sig as Uint8Array) : sig }
  }
  const bytes = cborEncode(signed)
  const cid = cidForCbor(signed)
  const blocks = new BlockMap()
  for (const [c, b] of car.blocks) if (!c.equals(evt.commit)) blocks.set(c, b)
  blocks.set(cid, bytes)
  const out: CommitEvent = { ...evt, blocks: writeCar(cid, blocks), commit: cid }
  if (!opts.keepEventFields && typeof signed.rev === 'string') out.rev = signed.rev
  return out
}

/** Rebuilds an event's CAR keeping only the blocks `keep` accepts (root unchanged), plus `add`. */
export function filterSlice(evt: CommitEvent, keep: (cid: CID) => boolean, add?: BlockMap): CommitEvent {
  const car = readCarSync(evt.blocks)
  const blocks = new BlockMap()
  for (const [c, b] of car.blocks) if (keep(toCid(c))) blocks.set(c, b)
  if (add) blocks.addMap(add)
  return { ...evt, blocks: writeCar(car.roots, blocks) }
}

/** a small deterministic PRNG (mulberry32) */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** CBOR-significant byte values (heads of small and 1-/2-byte items, null, tag 42, CID prefixes) */
const SPECIAL_BYTES = [0x00, 0x01, 0x03, 0x12, 0x18, 0x19, 0x20, 0x2a, 0x40, 0x41, 0x55, 0x58, 0x59, 0x60, 0x61, 0x63, 0x64, 0x71, 0x78, 0x80, 0xa1, 0xa2, 0xa4, 0xa5, 0xa6, 0xa7, 0xd8, 0xf6, 0xf7]

/** A corrupted copy of `base`: one or two bytes set to random or CBOR-significant values, sometimes truncated. */
export function corrupt(base: Uint8Array, rand: () => number): Uint8Array {
  const m = new Uint8Array(base)
  const edits = 1 + Math.floor(rand() * 2)
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(rand() * m.length)
    m[at] = rand() < 0.5 ? Math.floor(rand() * 256) : SPECIAL_BYTES[Math.floor(rand() * SPECIAL_BYTES.length)]!
  }
  return rand() < 0.08 ? m.subarray(0, Math.floor(rand() * m.length)) : m
}
