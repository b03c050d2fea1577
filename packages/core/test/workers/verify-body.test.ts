/**
 * The worker's fixed-shape path against the generic decoders as the oracle, on whole `#commit` bodies as a relay
 * receives them (real signed sync-1.1 commits built with @atproto/repo) and thousands of corruptions of them:
 *  - `runVerifyTask` (body read by CommitFrame.commitEvent, CAR by readCanonicalCar, commit by
 *    readCanonicalCommit, records by strict scan) gives the verdict (ok with rev/CIDs, or reason and message)
 *    of `cborDecode` + `verifyCommitEvent` with `readers: 'generic'`;
 *  - `readCarSlice` gives the roots and blocks, or the CarError, of `readCarSync`.
 */
import { MemoryBlockstore, Repo } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { beforeAll, describe, expect, it } from 'vitest'
import type { Keypair } from '@atproto/crypto'
import { cborDecode, cborEncode, cidForBlock, DAG_CBOR_CODEC } from '../../src/data/index.js'
import { CarBlocks, readCarSlice, readCarSync, verifyCommitEvent, writeCar, type CommitEvent } from '../../src/repo/index.js'
import { DEFAULT_CAR_LIMITS, readCanonicalCar } from '../../src/repo/car.js'
import { checkFrameBody, indexCommitFrame } from '../../src/stream/commit-frame.js'
import { cidFromWire, cidToWire, runVerifyTask } from '../../src/workers/verify.js'
import { commitEvent, corrupt, createOp, deleteOp, newKeypair, post, rng, updateOp } from '../repo/helpers.js'

interface Sample {
  body: Uint8Array
  prev: { rev: string; data: CID } | null
}

let keypair: Keypair
let samples: Sample[]
const NOW = Date.now()

beforeAll(async () => {
  keypair = await newKeypair()
  const rk = (i: number) => `3k${String(i).padStart(11, '2')}`
  let repo = await Repo.create(new MemoryBlockstore(), 'did:plc:workerbodytest000000000', keypair, [createOp(rk(0), post('seed'))])
  samples = []
  for (let i = 1; i <= 16; i++) {
    const writes =
      i % 5 === 0
        ? [updateOp(rk(i - 1), post(`edited ${i}`)), deleteOp(rk(i - 2)), createOp(rk(100 + i), post('x'))]
        : [createOp(rk(i), post(`post ${i}`, i % 3 === 0 ? { langs: ['en'] } : {}))]
    const { evt, next } = await commitEvent(repo, writes, keypair)
    samples.push({ body: cborEncode(evt), prev: { rev: evt.since!, data: evt.prevData! } })
    repo = next
  }
})

/** The verdict as the worker gives it. */
async function viaWorker(s: Sample): Promise<unknown> {
  const res = await runVerifyTask({
    kind: 'commit',
    evt: undefined,
    body: s.body,
    signingKey: keypair.did(),
    prev: s.prev ? { rev: s.prev.rev, data: cidToWire(s.prev.data) } : null,
    now: NOW,
  })
  return res.ok
    ? { ok: true, rev: res.rev, commitCid: [...cidFromWire(res.commitCid).bytes], newData: [...cidFromWire(res.newData).bytes], inverted: res.inverted }
    : res
}

/** The verdict through the generic decoders only. */
async function viaDecoders(s: Sample): Promise<unknown> {
  let evt: unknown
  try {
    evt = cborDecode(s.body)
  } catch (err) {
    return { ok: false, reason: 'malformed', message: `#commit body is not DAG-CBOR: ${(err as Error).message}` }
  }
  if (typeof evt !== 'object' || evt === null || Array.isArray(evt) || evt instanceof Uint8Array || CID.asCID(evt)) {
    return { ok: false, reason: 'malformed', message: '#commit body is not a map' }
  }
  const res = await verifyCommitEvent(evt as CommitEvent, { signingKey: keypair.did(), prev: s.prev, now: NOW, readers: 'generic' })
  return res.ok
    ? { ok: true, rev: res.commit.rev, commitCid: [...res.commitCid.bytes], newData: [...res.newData.bytes], inverted: res.inverted }
    : { ok: false, reason: res.reason, message: res.message }
}

function carOutcome(car: Uint8Array, fixedShape: boolean): unknown {
  try {
    const { roots, blocks } = fixedShape ? readCarSlice(car) : (({ roots, blocks }) => ({ roots, blocks: CarBlocks.fromBlockMap(blocks) }))(readCarSync(car))
    const list: [string, number[]][] = []
    blocks.toBlockMap().forEach((bytes, cid) => list.push([cid.toString(), [...bytes]]))
    list.sort((a, b) => (a[0] < b[0] ? -1 : 1))
    return { roots: roots.map(String), blocks: list }
  } catch (err) {
    return { error: (err as Error).name, code: (err as { code?: string }).code, message: (err as Error).message }
  }
}

describe('verify worker: fixed-shape body, CAR, commit and record readers', () => {
  it('accepts real commits on the fixed-shape path, with the verdict of the decoders', async () => {
    for (const s of samples) {
      checkFrameBody(s.body, 0)
      expect(indexCommitFrame(s.body, 0).commitEvent(), 'the body takes the fixed-shape path').not.toBeNull()
      const car = cborDecode<CommitEvent>(s.body).blocks
      expect(readCanonicalCar(car, DEFAULT_CAR_LIMITS), 'the CAR takes the fixed-shape path').not.toBeNull()
      const a = await viaWorker(s)
      expect(a).toMatchObject({ ok: true })
      expect(a).toEqual(await viaDecoders(s))
    }
  })

  it('gives the verdict of the decoders on corrupted bodies', async () => {
    const rand = rng(21)
    const reasons = new Map<string, number>()
    for (let i = 0; i < 2500; i++) {
      const base = samples[i % samples.length]!
      const s = { body: corrupt(base.body, rand), prev: rand() < 0.2 ? null : base.prev }
      const a = await viaWorker(s)
      expect(a).toEqual(await viaDecoders(s))
      const r = (a as { reason?: string }).reason ?? 'ok'
      reasons.set(r, (reasons.get(r) ?? 0) + 1)
    }
    // the corpus reached the decoders' refusals, the CAR's and valid events
    for (const r of ['malformed', 'ok']) expect(reasons.get(r) ?? 0, r).toBeGreaterThan(20)
  }, 120_000)

  it('gives the verdict of the decoders on bodies whose commit block is corrupted (CAR and CIDs rebuilt)', async () => {
    const rand = rng(27)
    const reasons = new Map<string, number>()
    for (let i = 0; i < 2000; i++) {
      const base = samples[i % samples.length]!
      const evt = cborDecode<CommitEvent>(base.body)
      const car = readCarSync(evt.blocks)
      const commitBytes = car.blocks.get(evt.commit)!
      const bad = corrupt(commitBytes, rand)
      const cid = cidForBlock(bad, DAG_CBOR_CODEC)
      const blocks: [CID, Uint8Array][] = []
      car.blocks.forEach((bytes, c) => blocks.push(c.equals(evt.commit) ? [cid, bad] : [CID.decode(c.bytes), bytes]))
      const s = { body: cborEncode({ ...evt, commit: cid, blocks: writeCar(cid, blocks) }), prev: base.prev }
      const a = await viaWorker(s)
      expect(a).toEqual(await viaDecoders(s))
      const r = (a as { reason?: string }).reason ?? 'ok'
      reasons.set(r, (reasons.get(r) ?? 0) + 1)
    }
    // refusals of the commit (malformed, bad-version, mismatches) and of its signature
    for (const r of ['malformed', 'bad-signature']) expect(reasons.get(r) ?? 0, r).toBeGreaterThan(20)
    expect(reasons.size).toBeGreaterThan(3)
  }, 120_000)

  it('reads CARs as readCarSync does, or throws its error', async () => {
    const rand = rng(33)
    const cars = samples.map((s) => cborDecode<CommitEvent>(s.body).blocks)
    for (const car of cars) expect(carOutcome(car, true)).toEqual(carOutcome(car, false))
    const counts = { fast: 0, fallback: 0 }
    for (let i = 0; i < 6000; i++) {
      const car = corrupt(cars[i % cars.length]!, rand)
      expect(carOutcome(car, true)).toEqual(carOutcome(car, false))
      if (readCanonicalCar(car, DEFAULT_CAR_LIMITS)) counts.fast++
      else counts.fallback++
    }
    expect(counts.fast).toBeGreaterThan(50)
    expect(counts.fallback).toBeGreaterThan(1000)
    // a limit is applied as readCarSync applies it
    const car = cars[0]!
    for (const limits of [{ maxBlocks: 2 }, { maxBlockBytes: 100 }, { maxBytes: car.length - 1 }, { maxRoots: 0 }]) {
      let fast: unknown
      let slow: unknown
      try {
        fast = readCarSlice(car, limits)
      } catch (err) {
        fast = (err as Error).message
      }
      try {
        slow = readCarSync(car, limits)
      } catch (err) {
        slow = (err as Error).message
      }
      expect(typeof fast === 'string' ? fast : 'ok').toBe(typeof slow === 'string' ? slow : 'ok')
    }
  })
})

describe('CIDs on the wire (cidToWire / cidFromWire)', () => {
  it('gives back the same CID: v1 dag-cbor and raw, v0, an identity hash of another length', async () => {
    const digest = await sha256Hasher.digest(new TextEncoder().encode('wire'))
    const cids = [CID.createV1(0x71, digest), CID.createV1(0x55, digest), CID.createV0(digest), CID.createV1(0x71, identity.digest(new Uint8Array(300).fill(0xff)))]
    for (const cid of cids) {
      const wire = cidToWire(cid)
      expect(wire.length).toBe(cid.bytes.length)
      expect(cidFromWire(wire).equals(cid)).toBe(true)
      expect(cidFromWire(wire).toString()).toBe(cid.toString())
    }
  })
})
