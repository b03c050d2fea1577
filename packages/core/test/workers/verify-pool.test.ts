/**
 * CommitVerifier: the worker-thread path gives the same verdicts as the in-thread path (reasons and
 * messages, CIDs), events of one key go to one worker, and a task that throws rejects without killing the pool.
 */
import { MemoryBlockstore, Repo } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Keypair } from '@atproto/crypto'
import type { CommitEvent } from '../../src/repo/index.js'
import { CommitVerifier, KeyedWorkerPool, fromPortable, toPortable, type VerifySummary } from '../../src/workers/index.js'
import { commitEvent, createOp, newKeypair, post, rewriteCommit, toCid } from '../repo/helpers.js'

const DID = 'did:plc:workerpooltest00000000000'
const rk = (i: number) => `3kw${String(i).padStart(10, 'a')}`

let keypair: Keypair
let other: Keypair
let cases: { name: string; evt: CommitEvent; prev: { rev: string; data: CID } | null; key: string }[]
const inline = new CommitVerifier({ workers: 0 })
const pooled = new CommitVerifier({ workers: 2 })

beforeAll(async () => {
  keypair = await newKeypair()
  other = await newKeypair()
  let repo = await Repo.create(new MemoryBlockstore(), DID, keypair, [createOp(rk(0), post('seed'))])
  cases = []
  for (let i = 1; i <= 3; i++) {
    const prev = { rev: repo.commit.rev, data: toCid(repo.commit.data) }
    const { evt, next } = await commitEvent(repo, [createOp(rk(i), post(`p${i}`))], keypair)
    cases.push({ name: `valid ${i}`, evt, prev, key: keypair.did() })
    repo = next
  }
  const prev = { rev: repo.commit.rev, data: toCid(repo.commit.data) }
  const { evt } = await commitEvent(repo, [createOp(rk(9), post('x'))], keypair)
  cases.push({ name: 'wrong key', evt, prev, key: other.did() })
  cases.push({ name: 'chain break', evt, prev: { rev: cases[0]!.evt.rev, data: prev.data }, key: keypair.did() })
  cases.push({ name: 'ops cut', evt: { ...evt, ops: [] }, prev, key: keypair.did() })
  cases.push({ name: 'op cid is a string', evt: { ...evt, ops: evt.ops.map((o) => ({ ...o, cid: String(o.cid) as never })) }, prev, key: keypair.did() })
  cases.push({ name: 'prevData missing', evt: { ...evt, prevData: undefined }, prev, key: keypair.did() })
  cases.push({ name: 'truncated blocks', evt: { ...evt, blocks: evt.blocks.subarray(0, 100) }, prev, key: keypair.did() })
  const resigned = await rewriteCommit(evt, { keypair, edit: (c) => { c.did = 'did:plc:someoneelse000000000000' } })
  cases.push({ name: 'did mismatch', evt: resigned, prev, key: keypair.did() })
})

afterAll(async () => {
  await pooled.close()
  await inline.close()
})

function plain(s: VerifySummary) {
  return s.ok ? { ...s, commitCid: s.commitCid.toString(), newData: s.newData.toString() } : s
}

describe('CommitVerifier', () => {
  it('gives the same verdicts in worker threads as in-thread', async () => {
    await pooled.ready()
    expect(pooled.workers).toBe(2)
    expect(pooled.threadIds()).toHaveLength(2)
    const reasons: string[] = []
    for (const c of cases) {
      const ctx = { signingKey: c.key, prev: c.prev, now: Date.now() }
      const a = await inline.verifyCommit(DID, c.evt, ctx)
      const b = await pooled.verifyCommit(DID, c.evt, ctx)
      expect(plain(b), c.name).toEqual(plain(a))
      if (b.ok) expect(b.commitCid.equals(c.evt.commit)).toBe(true)
      reasons.push(a.ok ? 'ok' : a.reason)
    }
    expect(reasons).toEqual(['ok', 'ok', 'ok', 'bad-signature', 'chain-break', 'inversion-mismatch', 'malformed', 'malformed', 'malformed', 'did-mismatch'])
  })

  it('verifyCommitBytes (the body as DAG-CBOR bytes) gives the verdict of verifyCommit on the decoded body, in-thread and in workers', async () => {
    const { cborEncode } = await import('../../src/data/index.js')
    await pooled.ready()
    for (const c of cases) {
      const ctx = { signingKey: c.key, prev: c.prev, now: Date.now() }
      const expected = plain(await inline.verifyCommit(DID, c.evt, ctx))
      // the body as a frame carries it (undefined fields left out), inside a larger buffer
      const bytes = cborEncode(Object.fromEntries(Object.entries(c.evt).filter(([, v]) => v !== undefined)))
      const framed = Buffer.concat([Buffer.from([1, 2, 3]), bytes, Buffer.from([4, 5])]).subarray(3, 3 + bytes.length)
      expect(plain(await inline.verifyCommitBytes(DID, framed, ctx)), c.name).toEqual(expected)
      expect(plain(await pooled.verifyCommitBytes(DID, framed, ctx)), c.name).toEqual(expected)
      // the caller's bytes are left as they were (copied, not transferred away)
      expect(framed.byteLength).toBe(bytes.length)
    }
    // many bodies at once (one batch per worker, their bytes in one buffer), and `checked` (the frame reader
    // scanned them: not scanned again): the same verdicts; the answers' CIDs are copies, not views into the batch
    const { checkFrameBody } = await import('../../src/stream/index.js')
    const bodies = cases.map((c) => cborEncode(Object.fromEntries(Object.entries(c.evt).filter(([, v]) => v !== undefined))))
    const expected = await Promise.all(cases.map(async (c) => plain(await inline.verifyCommit(DID, c.evt, { signingKey: c.key, prev: c.prev, now: Date.now() }))))
    for (const checked of [false, true]) {
      const got = await Promise.all(
        cases.map((c, i) => {
          if (checked) checkFrameBody(bodies[i]!, 0) // (what the caller promises with `checked`)
          return pooled.verifyCommitBytes(DID, bodies[i]!, { signingKey: c.key, prev: c.prev, now: Date.now(), checked })
        }),
      )
      got.forEach((g, i) => {
        expect(plain(g), `${cases[i]!.name} checked=${checked}`).toEqual(expected[i])
        if (g.ok) {
          expect(g.commitCid.bytes.buffer.byteLength).toBe(g.commitCid.bytes.byteLength)
          expect(g.newData.bytes.buffer.byteLength).toBe(g.newData.bytes.byteLength)
        }
      })
      for (const [i, c] of cases.entries()) {
        expect(plain(await inline.verifyCommitBytes(DID, bodies[i]!, { signingKey: c.key, prev: c.prev, now: Date.now(), checked })), c.name).toEqual(expected[i])
      }
    }
    // records from a body that came in a batch's buffer: copies of their own
    const withRecords = await Promise.all(cases.slice(0, 3).map((c, i) => pooled.verifyCommitBytes(DID, bodies[i]!, { signingKey: c.key, prev: c.prev, now: Date.now(), withRecords: true })))
    for (const r of withRecords) {
      if (!r.ok) throw new Error('did not verify')
      expect(r.records!.size).toBe(1)
      for (const b of r.records!.values()) expect(b.buffer.byteLength).toBe(b.byteLength)
    }
    // bytes that are not a DAG-CBOR map: malformed, from both paths
    for (const bad of [new Uint8Array([0x82, 0x01, 0x02]), new Uint8Array([0xa1, 0x61]), new Uint8Array([0xfb, 0, 0, 0, 0, 0, 0, 0, 0])]) {
      const ctx = { signingKey: keypair.did(), prev: null, now: Date.now() }
      const a = await inline.verifyCommitBytes(DID, bad, ctx)
      const b = await pooled.verifyCommitBytes(DID, bad, ctx)
      expect(a.ok ? 'ok' : a.reason).toBe('malformed')
      expect(b).toEqual(a)
    }
  })

  it("prev 'claimed': judged against the state the commit claims to follow (since, prevData), named in prevUsed; the verdict for a state equal to the claim", async () => {
    const { cborEncode } = await import('../../src/data/index.js')
    await pooled.ready()
    const used = (s: VerifySummary) => (s.prevUsed ? { rev: s.prevUsed.rev, data: s.prevUsed.data.toString() } : s.prevUsed)
    const verdict = (s: VerifySummary) => {
      const { prevUsed: _, ...rest } = s
      return plain(rest as VerifySummary)
    }
    const outcomes: string[] = []
    for (const c of cases) {
      const claim = typeof c.evt.since === 'string' && c.evt.prevData ? { rev: c.evt.since, data: c.evt.prevData } : null
      const bytes = cborEncode(Object.fromEntries(Object.entries(c.evt).filter(([, v]) => v !== undefined)))
      const expected = plain(await inline.verifyCommit(DID, c.evt, { signingKey: c.key, prev: claim, now: Date.now() }))
      for (const v of [inline, pooled]) {
        const got = await v.verifyCommitBytes(DID, bytes, { signingKey: c.key, prev: 'claimed', now: Date.now() })
        expect(used(got), c.name).toEqual(claim && { rev: claim.rev, data: claim.data.toString() })
        expect(verdict(got), c.name).toEqual(expected)
        // (and the decoded event)
        expect(verdict(await v.verifyCommit(DID, c.evt, { signingKey: c.key, prev: 'claimed', now: Date.now() })), c.name).toEqual(expected)
      }
      outcomes.push(expected.ok ? 'ok' : expected.reason)
    }
    // the chain break is a claim that is not the state the caller holds: the caller judges again against it
    expect(outcomes).toEqual(['ok', 'ok', 'ok', 'bad-signature', 'ok', 'inversion-mismatch', 'malformed', 'malformed', 'malformed', 'did-mismatch'])
    // without an explicit 'claimed' nothing is named
    const plainRes = await pooled.verifyCommitBytes(DID, cborEncode(cases[0]!.evt as never), { signingKey: cases[0]!.key, prev: cases[0]!.prev, now: Date.now() })
    expect('prevUsed' in plainRes).toBe(false)
  })

  it('withRecords: the ops\' record blocks come back, the same from a worker as in-thread and as verifyCommitEvent gives them', async () => {
    const { verifyCommitEvent } = await import('../../src/repo/index.js')
    for (const c of cases.slice(0, 3)) {
      const ctx = { signingKey: c.key, prev: c.prev, now: Date.now(), withRecords: true }
      const a = await inline.verifyCommit(DID, c.evt, ctx)
      const b = await pooled.verifyCommit(DID, c.evt, ctx)
      const direct = await verifyCommitEvent(c.evt, { signingKey: c.key, prev: c.prev })
      if (!a.ok || !b.ok || !direct.ok) throw new Error(`${c.name} did not verify`)
      expect(b.records!.size).toBe(1)
      expect([...b.records!]).toEqual([...direct.records])
      expect([...a.records!]).toEqual([...direct.records])
    }
    // without the flag, none
    const plainRes = await pooled.verifyCommit(DID, cases[0]!.evt, { signingKey: cases[0]!.key, prev: cases[0]!.prev, now: Date.now() })
    expect(plainRes.ok && plainRes.records).toBeFalsy()
  })

  it("withRecords 'json': the records in JSON form with their lexicon verdict, the same from a worker as in-thread and as lexToJson + validateRecord give them", async () => {
    const { verifyCommitEvent } = await import('../../src/repo/index.js')
    const { cborDecode, cborEncode, lexToJson } = await import('../../src/data/index.js')
    const { validateRecord } = await import('../../src/lexicon/index.js')
    // a valid post, a post whose text is a number (fails validation), a record whose $type is not its collection, a like with a CID
    let repo = await Repo.create(new MemoryBlockstore(), DID, keypair, [createOp(rk(50), post('seed'))])
    const records = [
      createOp(rk(51), post('hello', { langs: ['en'] })),
      createOp(rk(52), { ...post('x'), text: 5 }),
      createOp(rk(53), post('wrong type'), 'app.bsky.feed.repost'),
      createOp(rk(54), { $type: 'app.bsky.feed.like', subject: { uri: `at://${DID}/app.bsky.feed.post/${rk(50)}`, cid: String(cases[0]!.evt.commit) }, createdAt: '2024-01-01T00:00:00.000Z' }, 'app.bsky.feed.like'),
    ]
    for (const op of records) {
      const prev = { rev: repo.commit.rev, data: toCid(repo.commit.data) }
      const { evt, next } = await commitEvent(repo, [op], keypair)
      repo = next
      const direct = await verifyCommitEvent(evt, { signingKey: keypair.did(), prev })
      if (!direct.ok) throw new Error('did not verify')
      const expected = [...direct.records].map(([path, bytes]) => {
        const json = lexToJson(cborDecode(bytes) as never) as Record<string, unknown>
        const collection = path.split('/')[0]!
        return [path, { json: JSON.stringify(json), valid: json.$type === collection && validateRecord(collection, json).valid === true }]
      })
      expect(expected).toHaveLength(1)
      const bytes = cborEncode(Object.fromEntries(Object.entries(evt).filter(([, v]) => v !== undefined)))
      for (const [name, v] of [['inline', inline], ['pooled', pooled]] as const) {
        const ctx = { signingKey: keypair.did(), prev, now: Date.now(), withRecords: 'json' as const }
        const a = await v.verifyCommit(DID, evt, ctx)
        const b = await v.verifyCommitBytes(DID, bytes, ctx)
        if (!a.ok || !b.ok) throw new Error(`${name}: did not verify`)
        expect(a.records, name).toBeUndefined()
        expect([...a.recordsJson!], name).toEqual(expected)
        expect([...b.recordsJson!], name).toEqual(expected)
        // validation off: only the $type is checked
        const off = await v.verifyCommitBytes(DID, bytes, { ...ctx, validateRecords: false })
        if (!off.ok) throw new Error(`${name}: did not verify`)
        expect([...off.recordsJson!].map(([p, r]) => [p, r!.valid]), name).toEqual(expected.map(([p, r]) => [p, !String(p).startsWith('app.bsky.feed.repost')]))
      }
    }
  })

  it('keeps CIDs apart from look-alike values when crossing to a worker', () => {
    const cid = cases[0]!.evt.commit
    const lookalike = { '/': cid.toString(), cid: new Uint8Array(cid.bytes) }
    const back = fromPortable(structuredClone(toPortable({ cid, lookalike, list: [cid, 'x', null] }))) as Record<string, unknown>
    expect((back.cid as CID).equals(cid)).toBe(true)
    expect(back.cid).toBeInstanceOf(CID)
    expect(CID.asCID(back.lookalike)).toBeNull()
    expect(back.lookalike).toEqual(lookalike)
    expect((back.list as unknown[])[0]).toBeInstanceOf(CID)
  })
})

describe('KeyedWorkerPool', () => {
  it('keeps a key on one worker while its tasks are in flight, in order; spreads keys over the least loaded workers; survives a task that throws', async () => {
    const url = new URL('./echo-worker.ts', import.meta.url)
    const pool = new KeyedWorkerPool<{ n: number; fail?: boolean }, { n: number; thread: number; seq: number }>({ size: 2, workerUrl: url })
    try {
      // four keys that a hash of the key (FNV-1a, the former placement) would all send to one worker
      const keys = ['key-1', 'key-3', 'key-5', 'key-7']
      const results = await Promise.all(Array.from({ length: 40 }, (_, n) => pool.run(keys[n % 4]!, { n })))
      for (let k = 0; k < 4; k++) {
        const mine = results.filter((r) => r.n % 4 === k)
        // one worker, which started them in the order they were submitted
        expect(new Set(mine.map((r) => r.thread)).size).toBe(1)
        const seqs = mine.map((r) => r.seq)
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
      }
      // both workers got two keys
      const perThread = new Map<number, number>()
      for (const r of results) perThread.set(r.thread, (perThread.get(r.thread) ?? 0) + 1)
      expect([...perThread.values()]).toEqual([20, 20])
      // a key with nothing in flight goes to the least loaded worker: away from one kept busy
      expect(pool.pending).toBe(0)
      const first = await pool.run('solo', { n: 0 })
      const busyIndex = pool.indexOf('busy')
      const busy = Array.from({ length: 6 }, (_, i) => pool.run('busy', { n: 100 + i }))
      expect(pool.indexOf('busy')).toBe(busyIndex)
      const moved = pool.run('solo', { n: 1 })
      expect((await moved).thread).not.toBe(pool.threadIds()[busyIndex])
      expect(new Set((await Promise.all(busy)).map((r) => r.thread))).toEqual(new Set([pool.threadIds()[busyIndex]]))
      expect(first.thread).toBe(pool.threadIds()[busyIndex]) // (both idle: the first worker)
      await expect(pool.run('key-0', { n: 1, fail: true })).rejects.toThrow('task 1 failed')
      expect((await pool.run('key-0', { n: 2 })).n).toBe(2)
      expect(pool.pending).toBe(0)
    } finally {
      await pool.close()
    }
  })

  it('runBytes: each task gets exactly its bytes (the batch\'s bytes travel in one buffer), mixed with plain tasks, the caller\'s buffers untouched', async () => {
    const url = new URL('./echo-worker.ts', import.meta.url)
    const pool = new KeyedWorkerPool<{ n: number; fail?: boolean }, { n: number; thread: number; bytes?: number[]; viewOffset?: number }>({ size: 2, workerUrl: url })
    try {
      // views into one larger buffer (as frames in a socket's read), of various lengths (0 included)
      const big = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31) % 256))
      const before = Buffer.from(big)
      const slices = Array.from({ length: 60 }, (_, n) => big.subarray(n * 50, n * 50 + ((n * 13) % 70)))
      // submitted in one turn: one batch per worker
      const results = await Promise.all(
        slices.map((b, n) => (n % 5 === 4 ? pool.run(`key-${n % 6}`, { n }) : pool.runBytes(`key-${n % 6}`, { n }, b))),
      )
      results.forEach((r, n) => {
        expect(r.n).toBe(n)
        if (n % 5 === 4) expect(r.bytes).toBeUndefined()
        else expect(r.bytes, `task ${n}`).toEqual([...slices[n]!])
      })
      // several tasks' bytes shared one buffer in the worker (offsets past 0)
      expect(results.some((r) => (r.viewOffset ?? 0) > 0)).toBe(true)
      expect(big.equals(before)).toBe(true)
      // one key's tasks stay in order on one worker
      for (let k = 0; k < 6; k++) expect(new Set(results.filter((r) => r.n % 6 === k).map((r) => r.thread)).size).toBe(1)
      await expect(pool.runBytes('key-0', { n: 7, fail: true }, big.subarray(0, 10))).rejects.toThrow('task 7 failed')
      expect(pool.pending).toBe(0)
    } finally {
      await pool.close()
    }
  })
})
