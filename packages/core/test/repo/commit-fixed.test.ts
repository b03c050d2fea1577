/**
 * The fixed-shape readers of the commit path against the generic decoder as the oracle:
 *  - decodeCommit's reader (readCanonicalCommit): on real signed commits (@atproto/repo) and thousands of
 *    corruptions of them, the same commit and unsigned bytes, or the same error (reason and message);
 *  - the record check of verifyCommitEvent (recordProblem: strict scan first): the same verdict and message
 *    as decoding the record, on real records and thousands of corruptions.
 */
import { MemoryBlockstore, Repo } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { cborDecode, cborEncode, cidForCbor } from '../../src/data/index.js'
import { cidAt } from '../../src/data/cbor-fixed.js'
import { decodeCommit, readCanonicalCommit } from '../../src/repo/commit.js'
import { recordProblem } from '../../src/repo/verify.js'
import { corrupt, createOp, newKeypair, post, rng, toCid, updateOp } from './helpers.js'

function commitOutcome(bytes: Uint8Array, fixedShape: boolean): unknown {
  try {
    const { commit, unsignedBytes } = decodeCommit(bytes, { fixedShape })
    return {
      did: commit.did,
      version: commit.version,
      data: commit.data.toString(),
      rev: commit.rev,
      prev: commit.prev?.toString() ?? null,
      sig: [...commit.sig],
      unsigned: [...unsignedBytes],
    }
  } catch (err) {
    return { error: (err as Error).name, reason: (err as { reason?: string }).reason, message: (err as Error).message }
  }
}

/** The former record check: decode, then a map. */
function decodedRecordProblem(bytes: Uint8Array): string | null {
  let value: unknown
  try {
    value = cborDecode(bytes)
  } catch (err) {
    return `is not DAG-CBOR: ${(err as Error).message}`
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array || toCidOrNull(value)) {
    return 'is not a map'
  }
  return null
}
const toCidOrNull = (v: unknown) => (v as { asCID?: unknown })?.asCID ?? null

/** Commit blocks and record blocks of a repository built and signed by @atproto/repo. */
async function realBlocks(): Promise<{ commits: Uint8Array[]; records: Uint8Array[] }> {
  const keypair = await newKeypair()
  const rk = (i: number) => `3k${String(i).padStart(11, '2')}`
  let repo = await Repo.create(new MemoryBlockstore(), 'did:plc:fixedshapetest0000000000', keypair, [createOp(rk(0), post('seed'))])
  const commits: Uint8Array[] = []
  const records: Uint8Array[] = []
  for (let i = 1; i <= 12; i++) {
    const rec = post(`post ${i} ${'ü'.repeat(i)}`, i % 3 === 0 ? { langs: ['en', 'de'], n: i * 1000 } : {})
    const writes = i % 4 === 0 ? [updateOp(rk(i - 1), post(`edited ${i}`))] : [createOp(rk(i), rec)]
    const commitData = await repo.formatCommit(writes, keypair)
    commits.push(commitData.newBlocks.get(commitData.cid)!)
    commitData.newBlocks.forEach((bytes, cid) => {
      if (!cid.equals(commitData.cid) && !('e' in cborDecode<Record<string, unknown>>(bytes))) records.push(bytes)
    })
    repo = await repo.applyCommit(commitData)
  }
  return { commits, records }
}

describe('decodeCommit: fixed-shape reader', () => {
  it('reads real commits as the generic decoder does, unsigned bytes included', async () => {
    const { commits } = await realBlocks()
    expect(commits.length).toBe(12)
    for (const bytes of commits) {
      expect(readCanonicalCommit(bytes), 'a real commit takes the fixed-shape path').not.toBeNull()
      const fast = commitOutcome(bytes, true)
      expect(fast).toEqual(commitOutcome(bytes, false))
      // the unsigned bytes are the canonical encoding of the commit without sig
      const { sig: _sig, ...unsigned } = cborDecode<Record<string, unknown>>(bytes)
      expect((fast as { unsigned: number[] }).unsigned).toEqual([...cborEncode(unsigned)])
    }
  })

  it('gives the same result or the same error on corrupted and odd commits', async () => {
    const { commits } = await realBlocks()
    const rand = rng(5)
    const counts = { ok: 0, error: 0, fallback: 0 }
    for (let i = 0; i < 8000; i++) {
      const bytes = corrupt(commits[i % commits.length]!, rand)
      const a = commitOutcome(bytes, true)
      expect(a).toEqual(commitOutcome(bytes, false))
      if (readCanonicalCommit(bytes) === null) counts.fallback++
      else if ((a as { error?: string }).error) counts.error++
      else counts.ok++
    }
    // the corpus reached both paths, and refusals on the fixed-shape path (bad version, rev not a TID...)
    expect(counts.fallback).toBeGreaterThan(1000)
    expect(counts.ok).toBeGreaterThan(100)
    expect(counts.error).toBeGreaterThan(50)

    // odd but decodable commits go to the generic decoder; each is judged as before
    const c = cborDecode<Record<string, unknown>>(commits[0]!)
    const data = toCid(c.data as never)
    const odd: Record<string, unknown>[] = [
      { ...c, extra: 1 }, // an extra field
      { ...c, prev: data }, // prev as a link (fixed path)
      { ...c, version: 2 }, // bad-version (fixed path)
      { ...c, version: 30 }, // a version in a 2-byte head
      { ...c, did: 'did:plc:ü' }, // non-ASCII did
      { ...c, rev: 'not-a-tid' }, // malformed (fixed path)
      { ...c, did: '' }, // malformed (fixed path)
      { ...c, sig: new Uint8Array(300) }, // a long sig
      { ...c, data: 'text' }, // data not a link
    ]
    for (const o of odd) {
      const bytes = cborEncode(o)
      expect(commitOutcome(bytes, true)).toEqual(commitOutcome(bytes, false))
    }
    const { prev: _prev, ...noPrev } = c
    expect(commitOutcome(cborEncode(noPrev), true)).toEqual(commitOutcome(cborEncode(noPrev), false))
    expect(readCanonicalCommit(cborEncode(odd[0]!))).toBeNull()
    expect(readCanonicalCommit(cborEncode(odd[1]!))).not.toBeNull()
    expect(readCanonicalCommit(cborEncode(odd[2]!))).not.toBeNull()
    expect(readCanonicalCommit(cborEncode(odd[3]!))).toBeNull()
    expect(readCanonicalCommit(cborEncode(odd[4]!))).toBeNull()
    // keys out of canonical order, a non-shortest map head, trailing bytes
    const canon = commits[0]!
    const withTrailing = new Uint8Array([...canon, 0x00])
    expect(readCanonicalCommit(withTrailing)).toBeNull()
    expect(commitOutcome(withTrailing, true)).toEqual(commitOutcome(withTrailing, false))
    const longHead = new Uint8Array([0xb8, 0x06, ...canon.subarray(1)])
    expect(readCanonicalCommit(longHead)).toBeNull()
    expect(commitOutcome(longHead, true)).toEqual(commitOutcome(longHead, false))
    // a link whose bytes CID.decode normalizes (version 0 spelled out with a codec: read back as a 34-byte CIDv0):
    // the generic path re-encodes the normalized CID, so the fixed-shape path must not splice the original bytes
    const at = canon.findIndex((_, j) => canon[j] === 0x58 && canon[j + 1] === 0x25 && canon[j + 2] === 0 && canon[j + 3] === 1 && canon[j + 4] === 0x71)
    expect(at).toBeGreaterThan(0)
    const v0 = new Uint8Array(canon)
    v0[at + 3] = 0
    expect(readCanonicalCommit(v0)).toBeNull()
    const generic = commitOutcome(v0, false) as { unsigned?: number[] }
    expect(generic.unsigned!.length).toBe(canon.length - 64 - 5 - 3)
    expect(commitOutcome(v0, true)).toEqual(generic)
  })
})

describe('record check: strict scan before a decode', () => {
  it('gives the verdict and message the decode gives, on real and corrupted records', async () => {
    const { records } = await realBlocks()
    expect(records.length).toBeGreaterThan(5)
    for (const bytes of records) expect(recordProblem(bytes)).toBeNull()
    const rand = rng(9)
    const counts = { ok: 0, refused: 0 }
    for (let i = 0; i < 8000; i++) {
      const bytes = corrupt(records[i % records.length]!, rand)
      const expected = decodedRecordProblem(bytes)
      expect(recordProblem(bytes)).toBe(expected)
      if (expected === null) counts.ok++
      else counts.refused++
    }
    expect(counts.ok).toBeGreaterThan(500)
    expect(counts.refused).toBeGreaterThan(1000)
    const odd = [new Uint8Array([]), cborEncode([1, 2]), cborEncode('text'), cborEncode(null), cborEncode(toCid(cidForCbor({ a: 1 }))), cborEncode({})]
    for (const bytes of odd) expect(recordProblem(bytes)).toBe(decodedRecordProblem(bytes))
  })
})

describe('cidAt: the CID of a byte range', () => {
  it('builds the CID CID.decode gives, or refuses what it refuses or would normalize', () => {
    const rand = rng(17)
    const digest = () => Array.from({ length: 32 }, () => Math.floor(rand() * 256))
    const forms: number[][] = []
    for (let i = 0; i < 300; i++) {
      const d = digest()
      forms.push(
        [0x01, 0x71, 0x12, 0x20, ...d], // dag-cbor
        [0x01, 0x55, 0x12, 0x20, ...d], // raw
        [0x01, 0x70, 0x12, 0x20, ...d], // dag-pb
        [0x01, 0x85, 0x01, 0x12, 0x20, ...d], // a two-byte codec
        [0x12, 0x20, ...d], // CIDv0
        [0x00, 0x71, 0x12, 0x20, ...d], // version 0 spelled out: normalized by CID.decode
        [0x01, 0x71, 0x12, 0x20, ...d.slice(1)], // short digest
        [0x01, 0x71, 0x00, 0x03, 1, 2, 3], // identity multihash
      )
    }
    for (let i = 0; i < 2000; i++) forms.push([...corrupt(Uint8Array.from(forms[i % 8]!), rand)])
    const view = (c: CID) => ({ v: c.version, code: c.code, mh: c.multihash.code, size: c.multihash.size, digest: [...c.multihash.digest], mhBytes: [...c.multihash.bytes], bytes: [...c.bytes], s: c.toString() })
    let built = 0
    for (const f of forms) {
      const buf = Uint8Array.from([0xff, ...f, 0xff])
      let expected: unknown
      try {
        const c = CID.decode(buf.subarray(1, 1 + f.length))
        expected = c.bytes.length === f.length && c.bytes.every((x, j) => x === f[j]) ? view(c) : undefined
      } catch {
        expected = undefined
      }
      const got = cidAt(buf, 1, f.length)
      expect(got ? view(got) : undefined).toEqual(expected)
      if (got) {
        built++
        expect(got.equals(CID.decode(Uint8Array.from(f)))).toBe(true)
        expect(got.bytes.constructor).toBe(Uint8Array)
      }
    }
    expect(built).toBeGreaterThan(1000)
  })
})
