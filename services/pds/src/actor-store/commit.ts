import type { CommitData } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import type { SigningKeypair } from '@stratos/core/crypto'
import { commitSliceBlocks } from '@stratos/core/repo'
import { nextTid } from '@stratos/core/syntax'
import { cborEncode, cidForBlock } from '../util/ipld.js'
import { RepoMst, type Block, type MstOp } from './mst.js'
import type { PreparedWrite } from './prepare.js'

export type { Block } from './mst.js'

/** A repo's head as the write path keeps it between commits: the signed commit and its tree. */
export interface RepoHead {
  did: string
  cid: CID
  rev: string
  tree: RepoMst
}

/** A signed commit and what storing and announcing it takes. */
export interface RepoCommit {
  cid: CID
  rev: string
  /** rev of the commit before (null for a first commit) */
  since: string | null
  prev: CID | null
  /** blocks to store: new MST nodes, new record blocks, the commit */
  newBlocks: Block[]
  /** blocks no longer referenced: MST nodes and records gone from the tree, the previous commit */
  removedCids: CID[]
  /** the `#commit` CAR's blocks: the new blocks plus the covering proof of every written key */
  sliceBlocks: Block[]
}

/** A {@link RepoCommit} from an @atproto/repo commit (the first, empty commit of a new account). */
export function repoCommitFromData(commit: CommitData): RepoCommit {
  const toBlocks = (m: CommitData['newBlocks']) => {
    const out: Block[] = []
    for (const [cid, bytes] of m) out.push({ cid: CID.decode(cid.bytes), bytes })
    return out
  }
  return {
    cid: CID.decode(commit.cid.bytes),
    rev: commit.rev,
    since: commit.since,
    prev: commit.prev ? CID.decode(commit.prev.bytes) : null,
    newBlocks: toBlocks(commit.newBlocks),
    removedCids: commit.removedCids.toList().map((c) => CID.decode(c.bytes)),
    sliceBlocks: toBlocks(commitSliceBlocks(commit)),
  }
}

const has = (list: CID[], cid: CID) => list.some((c) => c.equals(cid))
const without = (list: CID[], cid: CID) => {
  const i = list.findIndex((c) => c.equals(cid))
  if (i >= 0) list.splice(i, 1)
}

/**
 * The signed commit of `writes` on top of `head`: the tree edited in memory (see {@link RepoMst}), record
 * blocks as encoded (and hashed) once when the write was prepared. The blocks it stores, removes and
 * announces are the ones @atproto/repo's `Repo#formatCommit` gives (its DataDiff rules for record blocks
 * included); test/commit.test.ts checks that against the library. `next` is the head after the commit,
 * valid once `commit` is stored.
 */
export async function buildCommit(
  head: RepoHead,
  writes: PreparedWrite[],
  signingKey: SigningKeypair,
): Promise<{ commit: RepoCommit; next: RepoHead; prevData: CID }> {
  const ops: MstOp[] = []
  // record blocks, as @atproto/repo's DataDiff counts them (in key order)
  const newLeaves: CID[] = []
  const removedLeaves: CID[] = []
  const byKey = writes.map((w) => ({ w, key: `${w.collection}/${w.rkey}` })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  for (const { w, key } of byKey) {
    if (w.action === 'delete') {
      ops.push({ key, cid: null })
      const prev = head.tree.get(key)
      if (!prev) continue
      if (has(newLeaves, prev)) without(newLeaves, prev)
      else if (!has(removedLeaves, prev)) removedLeaves.push(prev)
    } else {
      ops.push({ key, cid: w.cid })
      const prev = w.action === 'update' ? head.tree.get(key) : null
      if (prev) {
        if (prev.equals(w.cid)) continue
        if (!has(removedLeaves, prev)) removedLeaves.push(prev)
        if (!has(newLeaves, w.cid)) newLeaves.push(w.cid)
      } else if (has(removedLeaves, w.cid)) {
        without(removedLeaves, w.cid)
      } else if (!has(newLeaves, w.cid)) {
        newLeaves.push(w.cid)
      }
    }
  }
  const update = head.tree.apply(ops)
  const leafBlocks: Block[] = newLeaves.map((cid) => {
    const w = writes.find((x) => x.action !== 'delete' && x.cid.equals(cid)) as Extract<PreparedWrite, { bytes: Uint8Array }>
    return { cid, bytes: w.bytes }
  })

  const rev = nextTid(head.rev)
  const unsigned = { did: head.did, version: 3 as const, rev, prev: null, data: update.root }
  const signed = { ...unsigned, sig: await signingKey.sign(cborEncode(unsigned)) }
  const commitBytes = cborEncode(signed)
  const commitCid = cidForBlock(commitBytes, 0x71)
  const commitBlock = { cid: commitCid, bytes: commitBytes }
  const commit: RepoCommit = {
    cid: commitCid,
    rev,
    since: head.rev,
    prev: head.cid,
    newBlocks: [...update.newNodes, ...leafBlocks, commitBlock],
    removedCids: [...update.removedNodes, ...removedLeaves, head.cid],
    sliceBlocks: [...update.sliceNodes, ...leafBlocks, commitBlock],
  }
  return { commit, next: { did: head.did, cid: commitCid, rev, tree: update.tree }, prevData: head.tree.rootCid }
}
