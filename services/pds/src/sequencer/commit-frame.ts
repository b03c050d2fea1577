import type { CID } from 'multiformats/cid'
import { cborCidLength, cborHeadLength, writeCborCid, writeCborHead } from '@stratos/core/data'
import { messageHeaderBytes } from '@stratos/core/stream'

/** The body of a `#commit` frame as the PDS makes it (every field the sync spec asks for; prevData when known). */
export interface CommitFrameBody {
  seq: number
  repo: string
  commit: CID
  rev: string
  since: string | null
  /** the CAR slice */
  blocks: Uint8Array
  ops: { action: 'create' | 'update' | 'delete'; path: string; cid: CID | null; prev?: CID }[]
  time: string
  prevData?: CID
}

const utf8 = new TextEncoder()
const key = (s: string) => {
  const b = utf8.encode(s)
  const out = new Uint8Array(cborHeadLength(b.length) + b.length)
  out.set(b, writeCborHead(out, 0, 3, b.length))
  return out
}
// body keys in DAG-CBOR's canonical order (shorter first, then bytewise)
const K_OPS = key('ops')
const K_REV = key('rev')
const K_SEQ = key('seq')
const K_REPO = key('repo')
const K_TIME = key('time')
const K_BLOBS_EMPTY = Uint8Array.of(...key('blobs'), 0x80)
const K_SINCE = key('since')
const K_BLOCKS = key('blocks')
const K_COMMIT = key('commit')
const K_REBASE_FALSE = Uint8Array.of(...key('rebase'), 0xf4)
const K_TOOBIG_FALSE = Uint8Array.of(...key('tooBig'), 0xf4)
const K_PREVDATA = key('prevData')
// op keys: cid, path, prev, action
const K_CID = key('cid')
const K_PATH = key('path')
const K_PREV = key('prev')
const K_ACTION = key('action')

/**
 * The `#commit` frame (header and body), written by hand: once per commit on the write path. The bytes are
 * those core's `encodeMessageFrame('#commit', body)` gives (rebase and tooBig false, blobs empty, prevData
 * left out when absent); test/commit-frame.test.ts checks it against it.
 */
export function encodeCommitFrame(body: CommitFrameBody): Uint8Array {
  const header = messageHeaderBytes('#commit')
  const repo = utf8.encode(body.repo)
  const rev = utf8.encode(body.rev)
  const since = body.since === null ? null : utf8.encode(body.since)
  const time = utf8.encode(body.time)
  const ops = body.ops.map((op) => ({ op, path: utf8.encode(op.path), action: utf8.encode(op.action) }))
  const text = (b: Uint8Array) => cborHeadLength(b.length) + b.length
  const cid = (c: CID) => cborCidLength(c.bytes.length)
  if (!Number.isSafeInteger(body.seq) || body.seq < 0) throw new TypeError(`#commit seq must be a non-negative integer: ${body.seq}`)

  let size = header.length + 1
  size += K_OPS.length + cborHeadLength(ops.length)
  for (const { op, path, action } of ops) {
    size += 1 + K_CID.length + (op.cid ? cid(op.cid) : 1) + K_PATH.length + text(path) + K_ACTION.length + text(action)
    if (op.prev) size += K_PREV.length + cid(op.prev)
  }
  size += K_REV.length + text(rev) + K_SEQ.length + cborHeadLength(body.seq)
  size += K_REPO.length + text(repo) + K_TIME.length + text(time)
  size += K_BLOBS_EMPTY.length + K_SINCE.length + (since ? text(since) : 1)
  size += K_BLOCKS.length + cborHeadLength(body.blocks.length) + body.blocks.length
  size += K_COMMIT.length + cid(body.commit) + K_REBASE_FALSE.length + K_TOOBIG_FALSE.length
  if (body.prevData) size += K_PREVDATA.length + cid(body.prevData)

  const out = Buffer.allocUnsafe(size)
  let p = 0
  const put = (b: Uint8Array) => {
    out.set(b, p)
    p += b.length
  }
  const putText = (b: Uint8Array) => {
    p = writeCborHead(out, p, 3, b.length)
    put(b)
  }
  const putCid = (c: CID) => {
    p = writeCborCid(out, p, c.bytes)
  }
  put(header)
  out[p++] = body.prevData ? 0xac : 0xab // map of 12 / 11
  put(K_OPS)
  p = writeCborHead(out, p, 4, ops.length)
  for (const { op, path, action } of ops) {
    out[p++] = op.prev ? 0xa4 : 0xa3
    put(K_CID)
    if (op.cid) putCid(op.cid)
    else out[p++] = 0xf6 // null
    put(K_PATH)
    putText(path)
    if (op.prev) {
      put(K_PREV)
      putCid(op.prev)
    }
    put(K_ACTION)
    putText(action)
  }
  put(K_REV)
  putText(rev)
  put(K_SEQ)
  p = writeCborHead(out, p, 0, body.seq)
  put(K_REPO)
  putText(repo)
  put(K_TIME)
  putText(time)
  put(K_BLOBS_EMPTY)
  put(K_SINCE)
  if (since) putText(since)
  else out[p++] = 0xf6
  put(K_BLOCKS)
  p = writeCborHead(out, p, 2, body.blocks.length)
  put(body.blocks)
  put(K_COMMIT)
  putCid(body.commit)
  put(K_REBASE_FALSE)
  put(K_TOOBIG_FALSE)
  if (body.prevData) {
    put(K_PREVDATA)
    putCid(body.prevData)
  }
  if (p !== size) throw new Error(`#commit frame encoding: wrote ${p} of ${size} bytes`)
  return out
}
