/**
 * The hand-written `#commit` frame encoder against core's generic one (encodeMessageFrame), field for field as
 * the sequencer used to build the body: creates, updates and deletes, with and without prevData and since,
 * short and long strings, small and large CAR slices and op lists.
 */
import { describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { cidForCbor, cborDecodeMulti } from '@stratos/core/data'
import { encodeMessageFrame } from '@stratos/core/stream'
import { encodeCommitFrame, type CommitFrameBody } from '../src/sequencer/commit-frame.js'

function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

/** the body as the sequencer built it for encodeMessageFrame */
function genericBody(b: CommitFrameBody): Record<string, unknown> {
  const body: Record<string, unknown> = {
    seq: b.seq,
    rebase: false,
    tooBig: false,
    repo: b.repo,
    commit: b.commit,
    rev: b.rev,
    since: b.since,
    blocks: b.blocks,
    ops: b.ops.map((op) => {
      const o: Record<string, unknown> = { action: op.action, path: op.path, cid: op.cid }
      if (op.prev) o.prev = op.prev
      return o
    }),
    blobs: [],
    time: b.time,
  }
  if (b.prevData) body.prevData = b.prevData
  return body
}

describe('encodeCommitFrame', () => {
  it('writes the bytes encodeMessageFrame writes', () => {
    const rand = rng(42)
    const cid = (i: number): CID => cidForCbor({ i })
    for (let n = 0; n < 120; n++) {
      const nOps = [0, 1, 2, 23, 24, 200][n % 6]!
      const body: CommitFrameBody = {
        seq: [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32, 2 ** 40 + 7][n % 10]!,
        repo: n % 7 === 0 ? `did:web:${'é'.repeat(40)}.example` : 'did:plc:ewvi7nxzyoun6zhxrhs64oiz',
        commit: cid(n),
        rev: '3lbc2yqkbrc2a',
        since: n % 4 === 0 ? null : '3lbc2yqk5zc2a',
        blocks: Uint8Array.from({ length: [0, 10, 300, 70_000][n % 4]! }, () => Math.floor(rand() * 256)),
        ops: Array.from({ length: nOps }, (_, i) => {
          const kind = Math.floor(rand() * 3)
          const path = `app.bsky.feed.post/${'3lbc2yqk'.repeat(1 + (i % 4))}`
          if (kind === 0) return { action: 'create' as const, path, cid: cid(1000 + i) }
          if (kind === 1) return { action: 'update' as const, path, cid: cid(2000 + i), prev: cid(3000 + i) }
          return { action: 'delete' as const, path, cid: null, prev: cid(4000 + i) }
        }),
        time: new Date(1_700_000_000_000 + n).toISOString(),
        prevData: n % 3 === 0 ? undefined : cid(5000 + n),
      }
      const mine = encodeCommitFrame(body)
      const generic = encodeMessageFrame('#commit', genericBody(body))
      expect(Buffer.from(mine).equals(Buffer.from(generic))).toBe(true)
    }
  })

  it('decodes to the header and body a consumer expects', () => {
    const body: CommitFrameBody = {
      seq: 7,
      repo: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz',
      commit: cidForCbor({ c: 1 }),
      rev: '3lbc2yqkbrc2a',
      since: '3lbc2yqk5zc2a',
      blocks: Uint8Array.of(1, 2, 3),
      ops: [{ action: 'create', path: 'app.bsky.feed.post/3lbc2yqkbrc2a', cid: cidForCbor({ r: 1 }) }],
      time: '2026-12-07T00:00:00.000Z',
      prevData: cidForCbor({ d: 1 }),
    }
    const [header, decoded] = cborDecodeMulti(encodeCommitFrame(body)) as [unknown, Record<string, unknown>]
    expect(header).toEqual({ op: 1, t: '#commit' })
    expect(decoded).toMatchObject({ seq: 7, repo: body.repo, rev: body.rev, since: body.since, rebase: false, tooBig: false, blobs: [] })
    expect(String(decoded.commit)).toBe(String(body.commit))
    expect(String(decoded.prevData)).toBe(String(body.prevData))
  })
})
