import type { CommitData } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import type { SigningKeypair } from '@stratos/core/crypto'
import { cborCidLength, cborHeadLength, writeCborCid, writeCborHead } from '@stratos/core/data'
import { commitSliceBlocks } from '@stratos/core/repo'
import { nextTid } from '@stratos/core/syntax'
import { cidForBlock } from '../util/ipld.js'
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

/** A v3 commit object: signed when `sig` is given. */
export interface CommitObject {
  did: string
  version: 3
  rev: string
  prev: CID | null
  data: CID
  sig?: Uint8Array
}

const utf8 = new TextEncoder()
// map keys with their text heads, in DAG-CBOR's canonical order (shorter first, then bytewise):
// did, rev, sig, data, prev, version
const KEY_DID = Uint8Array.of(0x63, 0x64, 0x69, 0x64)
const KEY_REV = Uint8Array.of(0x63, 0x72, 0x65, 0x76)
const KEY_SIG = Uint8Array.of(0x63, 0x73, 0x69, 0x67)
const KEY_DATA = Uint8Array.of(0x64, 0x64, 0x61, 0x74, 0x61)
const KEY_PREV = Uint8Array.of(0x64, 0x70, 0x72, 0x65, 0x76)
const KEY_VERSION_3 = Uint8Array.of(0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x03)

/**
 * DAG-CBOR bytes of a commit object, written by hand (twice per commit: the bytes signed, then the block):
 * the bytes `cborEncode(commit)` gives (test/commit.test.ts checks it against it).
 */
export function encodeCommitObject(commit: CommitObject): Uint8Array {
  if (commit.version !== 3) throw new Error(`commit version ${String(commit.version)} is not 3`)
  const did = utf8.encode(commit.did)
  const rev = utf8.encode(commit.rev)
  const sig = commit.sig
  const cidLen = (cid: CID) => cborCidLength(cid.bytes.length)
  const size =
    1 +
    KEY_DID.length + cborHeadLength(did.length) + did.length +
    KEY_REV.length + cborHeadLength(rev.length) + rev.length +
    (sig ? KEY_SIG.length + cborHeadLength(sig.length) + sig.length : 0) +
    KEY_DATA.length + cidLen(commit.data) +
    KEY_PREV.length + (commit.prev ? cidLen(commit.prev) : 1) +
    KEY_VERSION_3.length
  const out = new Uint8Array(size)
  let p = 0
  out[p++] = sig ? 0xa6 : 0xa5
  const put = (bytes: Uint8Array) => {
    out.set(bytes, p)
    p += bytes.length
  }
  const putCid = (cid: CID) => {
    p = writeCborCid(out, p, cid.bytes)
  }
  put(KEY_DID)
  p = writeCborHead(out, p, 3, did.length)
  put(did)
  put(KEY_REV)
  p = writeCborHead(out, p, 3, rev.length)
  put(rev)
  if (sig) {
    put(KEY_SIG)
    p = writeCborHead(out, p, 2, sig.length)
    put(sig)
  }
  put(KEY_DATA)
  putCid(commit.data)
  put(KEY_PREV)
  if (commit.prev) putCid(commit.prev)
  else out[p++] = 0xf6 // null
  put(KEY_VERSION_3)
  if (p !== size) throw new Error(`commit encoding: wrote ${p} of ${size} bytes`)
  return out
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
  const commitBytes = encodeCommitObject({ ...unsigned, sig: await signingKey.sign(encodeCommitObject(unsigned)) })
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
