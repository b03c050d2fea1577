import { P256Keypair, type Keypair } from '@atproto/crypto'
import {
  BlockMap,
  DataDiff,
  MST,
  MemoryBlockstore,
  Repo,
  RepoVerificationError,
  blocksToCarFile,
  parseDataKey,
  signCommit,
  verifyProofs,
  verifyRepoCar as refVerifyRepoCar,
} from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { beforeAll, describe, expect, it } from 'vitest'
import { cborDecode, cborEncode, cidForCbor } from '../../src/data/index.js'
import {
  RepoVerifyError,
  commitOpsFromDiff,
  decodeCommit,
  readCarSync,
  verifyCommitEvent,
  verifyRepoCar,
  verifySyncEvent,
  writeCar,
  type CommitCheckContext,
  type CommitCheckResult,
  type CommitEvent,
} from '../../src/repo/index.js'
import { COLL, commitEvent, createOp, deleteOp, filterSlice, newKeypair, post, rewriteCommit, toCid, updateOp } from './helpers.js'

const DID = 'did:plc:verifytest00000000000000'
const rk = (i: number) => `3kv${String(i).padStart(10, 'a')}`

let keypair: Keypair
let otherKey: Keypair
let base: Repo
/** create ×3, then update + delete + create, then delete ×2 */
let events: { evt: CommitEvent; prev: { rev: string; data: CID } }[]

function reason(res: CommitCheckResult | { ok: boolean; reason?: string }): string {
  return res.ok ? 'ok' : (res as { reason: string }).reason
}

function ctxFor(i: number, extra: Partial<CommitCheckContext> = {}): CommitCheckContext {
  return { signingKey: keypair.did(), prev: events[i]!.prev, ...extra }
}

/** The reference verifier's view: every op's claim proven by the slice + signature. */
async function oracleAccepts(evt: CommitEvent, didKey: string): Promise<boolean> {
  const claims = evt.ops.map((op) => ({ ...parseDataKey(op.path), cid: op.action === 'delete' ? null : op.cid }))
  try {
    const res = await verifyProofs(evt.blocks, claims, evt.repo, didKey)
    return res.unverified.length === 0 && res.verified.length === claims.length
  } catch (err) {
    if (err instanceof RepoVerificationError) return false
    throw err
  }
}

beforeAll(async () => {
  keypair = await newKeypair()
  otherKey = await newKeypair()
  base = await Repo.create(
    new MemoryBlockstore(),
    DID,
    keypair,
    Array.from({ length: 30 }, (_, i) => createOp(rk(i), post(`seed ${i}`))),
  )
  events = []
  let repo = base
  const batches = [
    [createOp(rk(100), post('a')), createOp(rk(101), post('b')), createOp(rk(102), post('c'))],
    [updateOp(rk(3), post('edited')), deleteOp(rk(7)), createOp(rk(103), post('d'))],
    [deleteOp(rk(100)), deleteOp(rk(12))],
  ]
  for (const batch of batches) {
    const prev = { rev: repo.commit.rev, data: toCid(repo.commit.data) }
    const { evt, next } = await commitEvent(repo, batch, keypair)
    events.push({ evt, prev })
    repo = next
  }
})

describe('verifyCommitEvent: valid commits', () => {
  it('accepts creates, mixed update/delete/create and deletes, chained, like the reference verifier', async () => {
    for (const [i, { evt, prev }] of events.entries()) {
      const res = await verifyCommitEvent(evt, ctxFor(i))
      expect(reason(res), `event ${i}`).toBe('ok')
      if (!res.ok) continue
      expect(res.inverted).toBe(true)
      expect(res.commitCid.equals(evt.commit)).toBe(true)
      expect(res.commit.rev).toBe(evt.rev)
      expect(evt.since).toBe(prev.rev)
      const writes = evt.ops.filter((o) => o.action !== 'delete').map((o) => o.path)
      expect([...res.records.keys()].sort()).toEqual(writes.sort())
      expect(await oracleAccepts(evt, keypair.did())).toBe(true)
      // the chain: the next event's prev state is this one's result
      if (i + 1 < events.length) expect(events[i + 1]!.prev.data.equals(res.newData)).toBe(true)
    }
    // without any prior state the events verify as well (no chain check possible)
    expect(reason(await verifyCommitEvent(events[1]!.evt, { signingKey: keypair.did() }))).toBe('ok')
  })

  it('commitOpsFromDiff gives the same op list (with prev CIDs) as the writes', async () => {
    const store = new MemoryBlockstore()
    const repo = await Repo.create(store, DID, keypair, [createOp(rk(1), post('1')), createOp(rk(2), post('2'))])
    const writes = [updateOp(rk(1), post('1b')), deleteOp(rk(2)), createOp(rk(3), post('3'))]
    const commitData = await repo.formatCommit(writes, keypair)
    await store.putMany(commitData.newBlocks) // keep the old nodes too, so both trees stay readable
    const after = MST.load(store, (await Repo.load(store, commitData.cid)).commit.data)
    const ops = commitOpsFromDiff(await DataDiff.of(after, repo.data))
    const { evt } = await commitEvent(repo, writes, keypair)
    const norm = (list: typeof ops) =>
      list.map((o) => `${o.action} ${o.path} ${o.cid ?? '-'} ${o.prev ?? '-'}`).sort()
    expect(norm(ops)).toEqual(norm(evt.ops))
    expect(ops.map((o) => o.action).sort()).toEqual(['create', 'delete', 'update'])
  })

  it('accepts a P-256 signed repo', async () => {
    const p256 = await P256Keypair.create()
    const repo = await Repo.create(new MemoryBlockstore(), DID, p256, [createOp(rk(1), post('x'))])
    const { evt } = await commitEvent(repo, [createOp(rk(2), post('y'))], p256)
    expect(reason(await verifyCommitEvent(evt, { signingKey: p256.did() }))).toBe('ok')
    expect(reason(await verifyCommitEvent(evt, { signingKey: keypair.did() }))).toBe('bad-signature')
  })

  it('accepts exactly 200 ops; empty commits are legal', async () => {
    const writes = Array.from({ length: 200 }, (_, i) => createOp(rk(1000 + i), post(`bulk ${i}`)))
    const { evt } = await commitEvent(base, writes, keypair)
    expect(reason(await verifyCommitEvent(evt, { signingKey: keypair.did() }))).toBe('ok')

    const { evt: empty } = await commitEvent(base, [], keypair)
    expect(empty.ops).toHaveLength(0)
    expect(reason(await verifyCommitEvent(empty, { signingKey: keypair.did() }))).toBe('ok')
  })
})

describe('verifyCommitEvent: tampered events', () => {
  it('wrong signing key → bad-signature (the reference rejects too)', async () => {
    const { evt } = events[1]!
    expect(reason(await verifyCommitEvent(evt, ctxFor(1, { signingKey: otherKey.did() })))).toBe('bad-signature')
    expect(await oracleAccepts(evt, otherKey.did())).toBe(false)
    // an unparseable key is a failed check too, not an exception
    expect(reason(await verifyCommitEvent(evt, ctxFor(1, { signingKey: 'did:key:zNope' })))).toBe('bad-signature')
  })

  it('one flipped signature byte → bad-signature', async () => {
    for (const at of [0, 17, 63]) {
      const evt = await rewriteCommit(events[1]!.evt, {
        editSig: (sig) => {
          const s = new Uint8Array(sig)
          s[at]! ^= 0x01
          return s
        },
      })
      expect(reason(await verifyCommitEvent(evt, ctxFor(1))), `byte ${at}`).toBe('bad-signature')
      expect(await oracleAccepts(evt, keypair.did())).toBe(false)
    }
  })

  it('op list missing an op → inversion-mismatch (which the reference cannot see)', async () => {
    const { evt } = events[1]!
    for (let drop = 0; drop < evt.ops.length; drop++) {
      const fewer = { ...evt, ops: evt.ops.filter((_, i) => i !== drop) }
      expect(reason(await verifyCommitEvent(fewer, ctxFor(1))), `without op ${drop}`).toBe('inversion-mismatch')
      expect(await oracleAccepts(fewer, keypair.did())).toBe(true)
    }
  })

  it('wrong op CIDs → inversion-mismatch', async () => {
    const { evt } = events[1]!
    const bogus = cidForCbor({ bogus: true })
    const create = evt.ops.findIndex((o) => o.action === 'create')
    const update = evt.ops.findIndex((o) => o.action === 'update')
    const wrongCid = { ...evt, ops: evt.ops.map((o, i) => (i === create ? { ...o, cid: bogus } : o)) }
    expect(reason(await verifyCommitEvent(wrongCid, ctxFor(1, { allowMissingRecords: true })))).toBe('inversion-mismatch')
    const wrongPrev = { ...evt, ops: evt.ops.map((o, i) => (i === update ? { ...o, prev: bogus } : o)) }
    expect(reason(await verifyCommitEvent(wrongPrev, ctxFor(1)))).toBe('inversion-mismatch')
    // an op claiming a delete of a key that is still there
    const fakeDelete = {
      ...evt,
      ops: [...evt.ops, { action: 'delete', path: `${COLL}/${rk(4)}`, cid: null, prev: bogus }],
    }
    expect(reason(await verifyCommitEvent(fakeDelete, ctxFor(1)))).toBe('inversion-mismatch')
  })

  it('wrong prevData → inversion-mismatch', async () => {
    const { evt } = events[2]!
    const res = await verifyCommitEvent({ ...evt, prevData: events[0]!.prev.data }, ctxFor(2, { prev: null }))
    expect(reason(res)).toBe('inversion-mismatch')
  })

  it('replayed or old rev → rev-not-newer', async () => {
    const { evt } = events[1]!
    const after = { rev: evt.rev, data: events[2]!.prev.data }
    expect(reason(await verifyCommitEvent(evt, ctxFor(1, { prev: after })))).toBe('rev-not-newer')
    const later = { rev: events[2]!.evt.rev, data: events[2]!.prev.data }
    expect(reason(await verifyCommitEvent(evt, ctxFor(1, { prev: later })))).toBe('rev-not-newer')
  })

  it('rev too far in the future → rev-in-future', async () => {
    const { evt } = events[1]!
    const hourAgo = Date.now() - 60 * 60 * 1000
    expect(reason(await verifyCommitEvent(evt, ctxFor(1, { now: hourAgo })))).toBe('rev-in-future')
    // within the allowed skew
    expect(reason(await verifyCommitEvent(evt, ctxFor(1, { now: Date.now() - 60 * 1000 })))).toBe('ok')
    // a commit signed with a rev a day ahead
    const tomorrowUs = (Date.now() + 24 * 3600 * 1000) * 1000
    const futureRev = tidFromUs(tomorrowUs)
    const future = await rewriteCommit(evt, { keypair, edit: (c) => (c.rev = futureRev) })
    expect(future.rev).toBe(futureRev)
    expect(reason(await verifyCommitEvent(future, ctxFor(1)))).toBe('rev-in-future')
  })

  it('blocks over 2,000,000 bytes → blocks-too-big', async () => {
    const { evt } = events[1]!
    const junk = new BlockMap()
    for (let i = 0; i < 3; i++) {
      const value = { junk: new Uint8Array(800_000).fill(i + 1) }
      junk.set(cidForCbor(value), cborEncode(value))
    }
    const big = filterSlice(evt, () => true, junk)
    expect(big.blocks.length).toBeGreaterThan(2_000_000)
    expect(reason(await verifyCommitEvent(big, ctxFor(1)))).toBe('blocks-too-big')
    // the limit is configurable
    expect(reason(await verifyCommitEvent(big, ctxFor(1, { limits: { maxBlocksBytes: 3_000_000 } })))).toBe('ok')
  })

  it('a record over 1,000,000 bytes → record-too-big', async () => {
    const huge = post('huge', { blob: new Uint8Array(1_000_100).fill(7) })
    const { evt } = await commitEvent(base, [createOp(rk(500), huge)], keypair)
    expect(reason(await verifyCommitEvent(evt, { signingKey: keypair.did() }))).toBe('record-too-big')
  })

  it('more than 200 ops → too-many-ops', async () => {
    const writes = Array.from({ length: 201 }, (_, i) => createOp(rk(2000 + i), post(`bulk ${i}`)))
    const { evt } = await commitEvent(base, writes, keypair)
    expect(reason(await verifyCommitEvent(evt, { signingKey: keypair.did() }))).toBe('too-many-ops')
  })

  it('CAR root that is not the commit → car-root-mismatch', async () => {
    const { evt } = events[1]!
    expect(reason(await verifyCommitEvent({ ...evt, commit: events[0]!.evt.commit }, ctxFor(1)))).toBe('car-root-mismatch')
    const car = readCarSync(evt.blocks)
    const reRooted = writeCar(cidForCbor({ other: 1 }), car.blocks)
    expect(reason(await verifyCommitEvent({ ...evt, blocks: reRooted }, ctxFor(1)))).toBe('car-root-mismatch')
  })

  it('commit for another DID → did-mismatch', async () => {
    const { evt } = events[1]!
    expect(reason(await verifyCommitEvent({ ...evt, repo: 'did:plc:someoneelse000000000000' }, ctxFor(1)))).toBe('did-mismatch')
  })

  it('event rev not the commit rev → rev-mismatch; version 2 → bad-version', async () => {
    const { evt } = events[1]!
    expect(reason(await verifyCommitEvent({ ...evt, rev: events[2]!.evt.rev }, ctxFor(1)))).toBe('rev-mismatch')
    const v2 = await rewriteCommit(evt, { keypair, edit: (c) => (c.version = 2) })
    expect(reason(await verifyCommitEvent(v2, ctxFor(1)))).toBe('bad-version')
  })

  it('truncated or corrupt CAR → malformed', async () => {
    const { evt } = events[1]!
    for (const cut of [1, 10, 100, evt.blocks.length - 1]) {
      const res = await verifyCommitEvent({ ...evt, blocks: evt.blocks.subarray(0, evt.blocks.length - cut) }, ctxFor(1))
      expect(reason(res), `cut ${cut}`).toBe('malformed')
      expect(res.ok ? '' : res.message).toMatch(/CAR/)
    }
    const flipped = new Uint8Array(evt.blocks)
    flipped[flipped.length - 3]! ^= 0xff
    expect(reason(await verifyCommitEvent({ ...evt, blocks: flipped }, ctxFor(1)))).toBe('malformed')
  })

  it('slice without a needed node or record → missing-block', async () => {
    const { evt } = events[1]!
    const car = readCarSync(evt.blocks)
    const commitBytes = car.blocks.get(evt.commit)!
    const { data } = decodeCommit(commitBytes).commit
    const noRoot = filterSlice(evt, (cid) => !cid.equals(data))
    expect(reason(await verifyCommitEvent(noRoot, ctxFor(1)))).toBe('missing-block')
    const noCommit = filterSlice(evt, (cid) => !cid.equals(evt.commit))
    expect(reason(await verifyCommitEvent(noCommit, ctxFor(1)))).toBe('missing-block')

    const created = evt.ops.find((o) => o.action === 'create')!
    const noRecord = filterSlice(evt, (cid) => !cid.equals(created.cid!))
    expect(reason(await verifyCommitEvent(noRecord, ctxFor(1)))).toBe('missing-block')
    const lenient = await verifyCommitEvent(noRecord, ctxFor(1, { allowMissingRecords: true }))
    expect(reason(lenient)).toBe('ok')
    expect(lenient.ok && lenient.records.has(created.path)).toBe(false)
  })

  it('broken chain → chain-break, with the verified commit attached', async () => {
    const { evt, prev } = events[2]!
    const staleRev = await verifyCommitEvent(evt, ctxFor(2, { prev: { rev: events[0]!.prev.rev, data: prev.data } }))
    expect(reason(staleRev)).toBe('chain-break')
    expect(!staleRev.ok && staleRev.commit?.rev).toBe(evt.rev)
    const otherData = await verifyCommitEvent(evt, ctxFor(2, { prev: { rev: prev.rev, data: events[0]!.prev.data } }))
    expect(reason(otherData)).toBe('chain-break')
    expect(!otherData.ok && otherData.newData?.equals(toCid(readCommitData(evt)))).toBe(true)
  })

  it('malformed events and ops → malformed', async () => {
    const { evt } = events[1]!
    const ctx = ctxFor(1)
    const cases: [string, CommitEvent][] = [
      ['ops not an array', { ...evt, ops: 'x' as never }],
      ['blocks not bytes', { ...evt, blocks: 'x' as never }],
      ['commit not a CID', { ...evt, commit: 'bafy' as never }],
      ['rev not a TID', { ...evt, rev: 'yesterday' }],
      ['since not a TID', { ...evt, since: 'nope' }],
      ['repo not a DID', { ...evt, repo: 'alice' }],
      ['bad path', { ...evt, ops: [{ ...evt.ops[0]!, path: 'no-slash' }] }],
      ['unknown action', { ...evt, ops: [{ ...evt.ops[0]!, action: 'upsert' }] }],
      ['duplicate path', { ...evt, ops: [evt.ops[0]!, evt.ops[0]!] }],
      ['delete with cid', { ...evt, ops: evt.ops.map((o) => (o.action === 'delete' ? { ...o, cid: o.prev! } : o)) }],
      ['create without cid', { ...evt, ops: evt.ops.map((o) => (o.action === 'create' ? { ...o, cid: null } : o)) }],
      ['update without prev', { ...evt, ops: evt.ops.map((o) => (o.action === 'update' ? { ...o, prev: undefined } : o)) }],
      ['prevData missing', { ...evt, prevData: undefined }],
    ]
    for (const [name, bad] of cases) expect(reason(await verifyCommitEvent(bad, ctx)), name).toBe('malformed')
    // prevData may be left out when told so (legacy hosts), or on a first commit (since null)
    const lenient = await verifyCommitEvent({ ...evt, prevData: undefined }, ctxFor(1, { requirePrevData: false, prev: null }))
    expect(lenient).toMatchObject({ ok: true, inverted: false })
    const first = await verifyCommitEvent({ ...evt, prevData: undefined, since: null }, ctxFor(1, { prev: null }))
    expect(first).toMatchObject({ ok: true, inverted: false })
  })
})

describe('verifySyncEvent', () => {
  function syncEvent(evt: CommitEvent, edit: Partial<{ did: string; rev: string; blocks: Uint8Array }> = {}) {
    const car = readCarSync(evt.blocks)
    const commitOnly = new BlockMap()
    commitOnly.set(evt.commit, car.blocks.get(evt.commit)!)
    return { seq: 9, did: evt.repo, rev: evt.rev, blocks: writeCar(evt.commit, commitOnly), time: new Date().toISOString(), ...edit }
  }

  it('accepts a signed commit-only CAR and says whether it changes anything', async () => {
    const { evt, prev } = events[2]!
    const res = await verifySyncEvent(syncEvent(evt), { signingKey: keypair.did(), prev })
    expect(res).toMatchObject({ ok: true, changed: true })
    expect(res.ok && res.commitCid.equals(evt.commit)).toBe(true)
    const same = await verifySyncEvent(syncEvent(evt), {
      signingKey: keypair.did(),
      prev: { rev: evt.rev, data: toCid(readCommitData(evt)) },
    })
    expect(same).toMatchObject({ ok: true, changed: false })
  })

  it('rejects bad syncs with the matching reason', async () => {
    const { evt } = events[2]!
    const key = keypair.did()
    expect(reason(await verifySyncEvent(syncEvent(evt), { signingKey: otherKey.did() }))).toBe('bad-signature')
    expect(reason(await verifySyncEvent(syncEvent(evt, { did: 'did:plc:other0000000000000000' }), { signingKey: key }))).toBe(
      'did-mismatch',
    )
    expect(reason(await verifySyncEvent(syncEvent(evt, { rev: events[1]!.evt.rev }), { signingKey: key }))).toBe('rev-mismatch')
    expect(reason(await verifySyncEvent(syncEvent(evt, { blocks: evt.blocks }), { signingKey: key }))).toBe(
      evt.blocks.length > 10_000 ? 'blocks-too-big' : 'ok',
    )
    const padded = syncEvent(evt)
    const junk = new BlockMap()
    const value = { pad: new Uint8Array(10_000) }
    junk.set(cidForCbor(value), cborEncode(value))
    const car = readCarSync(padded.blocks)
    car.blocks.addMap(junk)
    expect(reason(await verifySyncEvent({ ...padded, blocks: writeCar(evt.commit, car.blocks) }, { signingKey: key }))).toBe(
      'blocks-too-big',
    )
    const newer = { rev: events[2]!.evt.rev, data: events[2]!.prev.data }
    expect(reason(await verifySyncEvent(syncEvent(events[1]!.evt), { signingKey: key, prev: newer }))).toBe('rev-not-newer')
    expect(reason(await verifySyncEvent(syncEvent(evt, { blocks: padded.blocks.subarray(0, 20) }), { signingKey: key }))).toBe(
      'malformed',
    )
    expect(
      reason(await verifySyncEvent(syncEvent(evt), { signingKey: key, now: Date.now() - 3600_000 })),
    ).toBe('rev-in-future')
  })
})

describe('verifyRepoCar', () => {
  let car: Uint8Array
  let repo: Repo
  let store: MemoryBlockstore

  beforeAll(async () => {
    store = new MemoryBlockstore()
    repo = await Repo.create(store, DID, keypair, [
      ...Array.from({ length: 50 }, (_, i) => createOp(rk(i), post(`r${i}`))),
      createOp('self', { $type: 'app.bsky.actor.profile', displayName: 'V' }, 'app.bsky.actor.profile'),
    ])
    car = await blocksToCarFile(repo.cid, store.blocks)
  })

  it('returns every record, as the reference verifier does', async () => {
    const res = await verifyRepoCar(car, DID, keypair.did())
    const ref = await refVerifyRepoCar(car, DID, keypair.did())
    expect(res.records.map((r) => `${r.collection}/${r.rkey}`)).toEqual(ref.creates.map((c) => `${c.collection}/${c.rkey}`))
    expect(res.records).toHaveLength(51)
    expect(res.commitCid.equals(toCid(repo.cid))).toBe(true)
    const contents = (await repo.getContents()) as Record<string, Record<string, unknown>>
    for (const r of res.records) expect(r.value).toEqual(contents[r.collection]![r.rkey])
  })

  it('verifies an empty repo', async () => {
    const emptyStore = new MemoryBlockstore()
    const empty = await Repo.create(emptyStore, DID, keypair)
    const res = await verifyRepoCar(await blocksToCarFile(empty.cid, emptyStore.blocks), DID, keypair.did())
    expect(res.records).toEqual([])
    expect(res.commit.data.equals(toCid(empty.commit.data))).toBe(true)
  })

  it('refuses wrong key, wrong DID, missing blocks and non-canonical trees', async () => {
    await expect(verifyRepoCar(car, DID, otherKey.did())).rejects.toMatchObject({ reason: 'bad-signature' })
    await expect(verifyRepoCar(car, 'did:plc:nobody00000000000000000', keypair.did())).rejects.toMatchObject({
      reason: 'did-mismatch',
    })
    await expect(verifyRepoCar(car.subarray(0, car.length - 7), DID, keypair.did())).rejects.toBeInstanceOf(RepoVerifyError)

    const recordCid = toCid((await repo.data.get(`${COLL}/${rk(10)}`))!)
    const blocks = readCarSync(car).blocks
    blocks.delete(recordCid)
    await expect(verifyRepoCar(writeCar(toCid(repo.cid), blocks), DID, keypair.did())).rejects.toMatchObject({
      reason: 'missing-block',
    })

    // a hand-made root node whose keys are not on the layer their hashes give
    const leaf = cidForCbor({ leaf: 1 })
    const badNode = {
      l: null,
      e: [
        { p: 0, k: new TextEncoder().encode('A0/374913'), v: leaf, t: null },
        { p: 0, k: new TextEncoder().encode('B1/986427'), v: leaf, t: null },
      ],
    }
    const nodeCid = cidForCbor(badNode)
    const commit = await signCommit({ did: DID, version: 3, data: nodeCid, rev: repo.commit.rev, prev: null }, keypair)
    const commitCid = cidForCbor(commit)
    const bad = new BlockMap()
    bad.set(commitCid, cborEncode(commit))
    bad.set(nodeCid, cborEncode(badNode))
    bad.set(leaf, cborEncode({ leaf: 1 }))
    const err = await verifyRepoCar(writeCar(commitCid, bad), DID, keypair.did()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RepoVerifyError)
    expect(err).toMatchObject({ reason: 'malformed' })
    expect((err as Error).message).toMatch(/layer/)
  })
})

// ---- helpers ----

function readCommitData(evt: CommitEvent): CID {
  const bytes = readCarSync(evt.blocks).blocks.get(evt.commit)!
  return CID.asCID(cborDecode<{ data: unknown }>(bytes).data)!
}

const B32 = '234567abcdefghijklmnopqrstuvwxyz'
function tidFromUs(us: number): string {
  let v = BigInt(us) << 10n
  let out = ''
  for (let i = 0; i < 13; i++) {
    out = B32[Number(v & 31n)] + out
    v >>= 5n
  }
  return out
}
