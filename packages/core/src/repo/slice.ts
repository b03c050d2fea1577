/**
 * Producer side: what a host puts in a `#commit` (the CAR slice and the op list) and full repo
 * exports in the spec's preferred block order.
 */
import { BlockMap, DataDiff, MST, type CommitData } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { carStream, writeCar, type CarBlockInput } from './car.js'
import { decodeCommit } from './commit.js'
import { walkMst, type BlockGetter } from './mst-walk.js'
import type { CommitEventOp } from './verify.js'

/**
 * The blocks a `#commit` carries for a commit made with @atproto/repo's `formatCommit`: the new
 * MST nodes, the new record blocks and the commit (`newBlocks`), plus the covering proofs of every
 * written key (`relevantBlocks`) that a consumer needs to invert the ops.
 */
export function commitSliceBlocks(commit: CommitData): BlockMap {
  const blocks = new BlockMap()
  blocks.addMap(commit.newBlocks)
  blocks.addMap(commit.relevantBlocks)
  return blocks
}

/** `commitSliceBlocks` as CAR bytes with the commit as root (the `blocks` field of `#commit`). */
export function commitSliceCar(commit: CommitData, extra?: BlockMap): Uint8Array {
  const blocks = commitSliceBlocks(commit)
  if (extra) blocks.addMap(extra)
  return writeCar(CID.decode(commit.cid.bytes), blocks)
}

/**
 * The MST part of a commit slice between two trees: nodes of `after` that are not in `before`,
 * plus the covering proof (the key's path and its left/right neighbours' paths) in `after` of
 * every changed key. This is the node set a consumer needs to invert the change.
 */
export async function buildProofBlocks(after: MST, before: MST | null, keys: string[]): Promise<BlockMap> {
  const diff = await DataDiff.of(after, before)
  const blocks = new BlockMap()
  blocks.addMap(diff.newMstBlocks)
  for (const key of keys) blocks.addMap(await after.getCoveringProof(key))
  return blocks
}

/** The `#commit` op list (with sync 1.1 `prev`) for the difference between two trees. */
export function commitOpsFromDiff(diff: DataDiff): CommitEventOp[] {
  const ops: CommitEventOp[] = []
  for (const a of diff.addList()) ops.push({ action: 'create', path: a.key, cid: CID.decode(a.cid.bytes) })
  for (const u of diff.updateList()) {
    ops.push({ action: 'update', path: u.key, cid: CID.decode(u.cid.bytes), prev: CID.decode(u.prev.bytes) })
  }
  for (const d of diff.deleteList()) ops.push({ action: 'delete', path: d.key, cid: null, prev: CID.decode(d.cid.bytes) })
  return ops.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0))
}

/**
 * Blocks of a full repo in the preferred streaming order: the commit, then a pre-order walk of the
 * MST in which each node is followed by its subtrees and records in listed order. `get` reads one
 * block synchronously (e.g. `SqliteRepoStorage#getBytesSync`). Throws if a node or record is missing.
 */
export function* repoBlocks(get: BlockGetter, commitCid: CID): Generator<{ cid: CID; bytes: Uint8Array }> {
  const commitBytes = get(commitCid)
  if (!commitBytes) throw new Error(`repo export: missing commit block ${commitCid}`)
  const { commit } = decodeCommit(commitBytes)
  yield { cid: commitCid, bytes: commitBytes }
  for (const item of walkMst(get, commit.data)) {
    if (item.type === 'node') {
      yield { cid: item.cid, bytes: item.bytes }
    } else {
      const bytes = get(item.cid)
      if (!bytes) throw new Error(`repo export: missing record block ${item.cid} (${item.key})`)
      yield { cid: item.cid, bytes }
    }
  }
}

/** Streams a full repo CAR (`com.atproto.sync.getRepo`) as chunks. */
export function repoCarStream(get: BlockGetter, commitCid: CID, opts?: { chunkSize?: number }): AsyncIterable<Uint8Array> {
  return carStream(commitCid, repoBlocks(get, commitCid) as Iterable<CarBlockInput>, opts)
}
