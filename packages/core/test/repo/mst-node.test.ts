/**
 * decodeMstNode's fixed-shape reader (readCanonicalMstNode) against the generic decoder as the oracle: on every
 * node of trees built by @atproto/repo, and on thousands of corruptions of them, both paths give the same
 * result or the same error (reason and message).
 */
import { MemoryBlockstore, MST, mstUtil } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { cborDecode, cborEncode, cidForBlock, DAG_CBOR_CODEC } from '../../src/data/index.js'
import { decodeMstNode, isValidMstKeyBytes, readCanonicalMstNode } from '../../src/repo/mst-walk.js'
import { readNodeLinks } from '../../src/repo/mst-invert.js'
import { rng } from './helpers.js'

const leaf = (i: number) => cidForBlock(new TextEncoder().encode(`record ${i}`), DAG_CBOR_CODEC)

/** Every node block of an @atproto/repo MST with `n` keys. */
async function treeNodes(n: number, seed: number): Promise<Uint8Array[]> {
  const store = new MemoryBlockstore()
  let mst = await MST.create(store)
  const rand = rng(seed)
  const colls = ['app.bsky.feed.post', 'app.bsky.feed.like', 'app.bsky.graph.follow', 'x.y']
  for (let i = 0; i < n; i++) {
    const rkey = `3k${Math.floor(rand() * 1e12).toString(36).padStart(11, 'a')}`
    mst = await mst.add(`${colls[i % colls.length]}/${rkey}`, leaf(i))
  }
  const { blocks } = await mst.getUnstoredBlocks()
  const out: Uint8Array[] = []
  blocks.forEach((bytes) => out.push(bytes))
  return out
}

function outcome(bytes: Uint8Array, fixedShape: boolean): unknown {
  const cid = cidForBlock(bytes, DAG_CBOR_CODEC)
  try {
    const { left, entries } = decodeMstNode(cid, bytes, { fixedShape })
    return {
      left: left?.toString() ?? null,
      entries: entries.map((e) => ({ key: [...e.key], keyStr: e.keyStr, value: e.value.toString(), right: e.right?.toString() ?? null })),
    }
  } catch (err) {
    return { error: (err as Error).name, reason: (err as { reason?: string }).reason, message: (err as Error).message }
  }
}

describe('decodeMstNode: fixed-shape reader', () => {
  it('reads every node of real trees as the generic decoder does', async () => {
    let nodes = 0
    for (const [n, seed] of [[1, 1], [40, 2], [600, 3]] as const) {
      for (const bytes of await treeNodes(n, seed)) {
        expect(readCanonicalMstNode(bytes), 'a canonical node takes the fixed-shape path').not.toBeNull()
        expect(outcome(bytes, true)).toEqual(outcome(bytes, false))
        // the object is the one cborDecode gives
        const fast = readCanonicalMstNode(bytes)!
        const slow = cborDecode<{ e: { k: Uint8Array; p: number; t: CID | null; v: CID }[]; l: CID | null }>(bytes)
        expect(fast.l?.toString() ?? null).toBe(slow.l?.toString() ?? null)
        expect(fast.e.map((e) => [[...e.k], e.p, e.t?.toString() ?? null, e.v.toString()])).toEqual(
          slow.e.map((e) => [[...e.k], e.p, e.t?.toString() ?? null, e.v.toString()]),
        )
        nodes++
      }
    }
    expect(nodes).toBeGreaterThan(20)
  })

  it('gives the same result or the same error on corrupted and odd nodes', async () => {
    const rand = rng(7)
    const base = await treeNodes(200, 11)
    const counts = { ok: 0, error: 0, fallback: 0 }
    for (let i = 0; i < 6000; i++) {
      const m = new Uint8Array(base[i % base.length]!)
      const edits = 1 + Math.floor(rand() * 2)
      for (let k = 0; k < edits; k++) {
        const at = Math.floor(rand() * m.length)
        const pick = rand()
        if (pick < 0.5) m[at] = Math.floor(rand() * 256)
        else m[at] = [0x18, 0x19, 0xf6, 0xf7, 0xd8, 0x2a, 0x00, 0x40, 0x41, 0x58, 0xa2, 0xa3, 0xa4, 0x61, 0x80, 0x81][Math.floor(rand() * 16)]!
      }
      const bytes = rand() < 0.1 ? m.subarray(0, Math.floor(rand() * m.length)) : m
      const a = outcome(bytes, true)
      expect(a).toEqual(outcome(bytes, false))
      if (readCanonicalMstNode(bytes) === null) counts.fallback++
      else if ((a as { error?: string }).error) counts.error++
      else counts.ok++
    }
    // the corpus reached both paths, and semantic refusals on the fixed-shape path
    expect(counts.fallback).toBeGreaterThan(100)
    expect(counts.ok + counts.error).toBeGreaterThan(100)

    // odd but valid encodings go to the generic decoder: keys out of order, a non-minimal length, v before t
    const cid = leaf(1)
    const odd = [
      cborEncode({ e: [], l: null }),
      new Uint8Array([0xa2, 0x61, 0x6c, 0xf6, 0x61, 0x65, 0x80]), // l before e
      new Uint8Array([0xa2, 0x61, 0x65, 0x98, 0x00, 0x61, 0x6c, 0xf6]), // array length in 2 bytes
      new Uint8Array([0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6, 0x00]), // trailing byte
      cborEncode({ e: [{ k: new TextEncoder().encode('a.b/c'), p: 0, v: cid, t: null }], l: null }),
      cborEncode({ e: [{ k: new TextEncoder().encode('a.b/c'), p: 0, v: cid }], l: null }), // no t
      cborEncode({ e: [{ k: new TextEncoder().encode('a.b/c'), p: 0, v: cid, t: null, x: 1 }], l: null }), // extra key
      cborEncode({ e: [{ k: new TextEncoder().encode('a.b/c'), p: 0, v: null, t: null }], l: null }), // v null
    ]
    for (const bytes of odd) expect(outcome(bytes, true)).toEqual(outcome(bytes, false))
    expect(readCanonicalMstNode(odd[1]!)).toBeNull()
    expect(readCanonicalMstNode(odd[2]!)).toBeNull()
    expect(readCanonicalMstNode(odd[3]!)).toBeNull()
    expect(readCanonicalMstNode(odd[4]!)).not.toBeNull()
  })
})

/** The inversion's in-place reader (links as bytes) as decodeMstNode's result, or null. */
function linksOutcome(bytes: Uint8Array): unknown {
  const r = readNodeLinks(bytes)
  if (!r) return null
  const str = (l: Uint8Array | null) => (l ? CID.decode(l).toString() : null)
  return {
    left: str(r.left),
    entries: r.keys.map((k, i) => ({ key: [...new TextEncoder().encode(k)], keyStr: k, value: str(r.vals[i]!), right: str(r.rights[i]!) })),
  }
}

/** decodeMstNode's result when it accepts the node and its keys are in strictly increasing order (what the inversion accepts). */
function acceptedOutcome(bytes: Uint8Array): unknown {
  const a = outcome(bytes, false) as { error?: string; entries?: { keyStr: string }[] }
  if (a.error) return null
  for (let i = 1; i < a.entries!.length; i++) if (!(a.entries![i - 1]!.keyStr < a.entries![i]!.keyStr)) return null
  return a
}

describe('MST inversion: links read in place (readNodeLinks)', () => {
  it('reads every node of real trees as decodeMstNode does; on corrupted nodes it gives that result or hands the node to it', async () => {
    for (const [n, seed] of [[1, 1], [40, 2], [600, 3]] as const) {
      for (const bytes of await treeNodes(n, seed)) {
        expect(linksOutcome(bytes), 'a canonical node is read in place').not.toBeNull()
        expect(linksOutcome(bytes)).toEqual(outcome(bytes, false))
      }
    }
    const rand = rng(17)
    const base = await treeNodes(200, 19)
    const counts = { inPlace: 0, handedOver: 0, handedOverValid: 0 }
    for (let i = 0; i < 6000; i++) {
      const m = new Uint8Array(base[i % base.length]!)
      const edits = 1 + Math.floor(rand() * 2)
      for (let k = 0; k < edits; k++) {
        const at = Math.floor(rand() * m.length)
        if (rand() < 0.5) m[at] = Math.floor(rand() * 256)
        else m[at] = [0x18, 0x19, 0xf6, 0xf7, 0xd8, 0x2a, 0x00, 0x40, 0x41, 0x58, 0xa2, 0xa3, 0xa4, 0x61, 0x80, 0x81, 0x2f, 0x7a][Math.floor(rand() * 18)]!
      }
      const bytes = rand() < 0.1 ? m.subarray(0, Math.floor(rand() * m.length)) : m
      const fast = linksOutcome(bytes)
      if (fast === null) {
        counts.handedOver++
        if (acceptedOutcome(bytes) !== null) counts.handedOverValid++
      } else {
        counts.inPlace++
        // never accepts what decodeMstNode (plus the key order check) refuses, never reads it differently
        expect(fast).toEqual(acceptedOutcome(bytes))
      }
    }
    expect(counts.inPlace).toBeGreaterThan(100)
    expect(counts.handedOver).toBeGreaterThan(100)
  })
})

describe('isValidMstKeyBytes', () => {
  it('agrees with @atproto/repo isValidMstKey on the key decoded as text', () => {
    const rand = rng(13)
    const alphabet = [...'abcXYZ019_~-:./', '/', '/', ' ', '\u00e9', '\u0000', '\u007f', '%', '*']
    const samples = ['app.bsky.feed.post/3k2a4', 'a/b', '/b', 'a/', 'a//b', 'a/b/c', '', '/', 'a.b/' + 'x'.repeat(1020), 'a.b/' + 'x'.repeat(1021)]
    for (let i = 0; i < 5000; i++) {
      const part = () => {
        const len = Math.floor(rand() * 12)
        let s = ''
        for (let j = 0; j < len; j++) s += alphabet[Math.floor(rand() * alphabet.length)]!
        return s
      }
      samples.push(rand() < 0.5 ? part() + part() : `${part()}/${part()}`)
    }
    let valid = 0
    for (const s of samples) {
      const bytes = new TextEncoder().encode(s)
      expect(isValidMstKeyBytes(bytes), JSON.stringify(s)).toBe(mstUtil.isValidMstKey(s))
      if (mstUtil.isValidMstKey(s)) valid++
    }
    // raw bytes that are not UTF-8 are never valid keys
    expect(isValidMstKeyBytes(new Uint8Array([0x61, 0x2f, 0xff]))).toBe(false)
    expect(valid).toBeGreaterThan(100)
  })
})
