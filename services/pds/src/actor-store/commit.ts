import { BlockMap, DataDiff, MST, Repo, type CommitData } from '@atproto/repo'
import type { CID } from 'multiformats/cid'
import type { SigningKeypair } from '@stratos/core/crypto'
import { nextTid } from '@stratos/core/syntax'
import { cborEncode, cidForBlock } from '../util/ipld.js'
import type { PreparedWrite } from './prepare.js'

/**
 * An MST node is immutable (its methods return new nodes), yet @atproto/repo serializes each new node of a
 * commit twice: once for its pointer (CID) and again when the diff collects the new blocks. The encoding
 * is remembered per node object, so the second time costs nothing (measured: MST encoding was a fifth of
 * a write's CPU). Failed serializations are not remembered.
 */
const serialized = new WeakMap<object, Promise<{ cid: unknown; bytes: Uint8Array }>>()
const serializeOnce = MST.prototype.serialize
MST.prototype.serialize = function (this: MST) {
  let memo = serialized.get(this)
  if (!memo) {
    memo = serializeOnce.call(this) as Promise<{ cid: unknown; bytes: Uint8Array }>
    serialized.set(this, memo)
    memo.catch(() => serialized.delete(this))
  }
  return memo as ReturnType<typeof serializeOnce>
}

/**
 * The signed commit of `writes` on top of `repo`, as @atproto/repo's `Repo#formatCommit` builds it (the same
 * MST operations, diff, covering proofs and commit object), with two differences on the write path:
 * - record blocks are the bytes encoded (and hashed) once when the write was prepared, not encoded again;
 * - the updated tree comes back as `next`, the repo after this commit, so the account's next commit starts
 *   from the MST nodes already in memory instead of reading and parsing them from SQLite again.
 * `next` is only valid once `commit` is stored (the caller keeps it after its transaction succeeds).
 */
export async function formatCommitKeepingTree(
  repo: Repo,
  writes: PreparedWrite[],
  signingKey: SigningKeypair,
): Promise<{ commit: CommitData; next: Repo }> {
  const leaves = new BlockMap()
  let data: MST = repo.data
  for (const w of writes) {
    const key = `${w.collection}/${w.rkey}`
    if (w.action === 'delete') {
      data = await data.delete(key)
    } else {
      leaves.set(w.cid as never, w.bytes)
      data = w.action === 'create' ? await data.add(key, w.cid as never) : await data.update(key, w.cid as never)
    }
  }
  const dataCid = await data.getPointer()
  const diff = await DataDiff.of(data, repo.data)
  const newBlocks = diff.newMstBlocks
  const removedCids = diff.removedCids
  const relevantBlocks = new BlockMap()
  for (const w of writes) relevantBlocks.addMap(await data.getCoveringProof(`${w.collection}/${w.rkey}`))
  const added = leaves.getMany(diff.newLeafCids.toList())
  if (added.missing.length > 0) throw new Error(`Missing leaf blocks: ${added.missing.map(String).join(', ')}`)
  newBlocks.addMap(added.blocks)
  relevantBlocks.addMap(added.blocks)

  const rev = nextTid(repo.commit.rev)
  const unsigned = { did: repo.did, version: 3 as const, rev, prev: null, data: dataCid }
  const signed = { ...unsigned, sig: await signingKey.sign(cborEncode(unsigned)) }
  const commitBytes = cborEncode(signed)
  const commitCid = cidForBlock(commitBytes, 0x71) as unknown as CID
  if (!commitCid.equals(repo.cid as never)) {
    newBlocks.set(commitCid as never, commitBytes)
    relevantBlocks.set(commitCid as never, commitBytes)
    removedCids.add(repo.cid)
  }
  const commit = { cid: commitCid, rev, since: repo.commit.rev, prev: repo.cid, newBlocks, relevantBlocks, removedCids } as unknown as CommitData
  const next = new Repo({ storage: repo.storage, data, commit: signed as never, cid: commitCid as never })
  return { commit, next }
}
