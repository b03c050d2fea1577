/**
 * The raw-frame path of a #commit (commit-frame.ts) against the decoded path as the oracle:
 *  - checkFrameBody refuses exactly the frames decodeFrame refuses (same `truncated`), over crafted odd inputs
 *    and thousands of random corruptions of real frames; bodySeq reads the seq decodeFrame reads;
 *  - CommitFrame.outbound().withSeq(seq) is byte for byte the frame the relay built before from the decoded body
 *    (encodeMessageFrame('#commit', {seq, ...out}), `out` as the relay's ingester built it), for bodies with
 *    extra fields, blobs, odd ops, missing/invalid/non-ASCII time, since/prevData absent or null, keys out of order.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { describe, expect, it, vi } from 'vitest'
import { cidForBlock, DAG_CBOR_CODEC, RAW_CODEC } from '../../src/data/index.js'
import {
  FrameError,
  bodySeq,
  checkFrameBody,
  decodeFrame,
  encodeMessageFrame,
  indexCommitFrame,
  matchMessageHeader,
  messageHeaderBytes,
} from '../../src/stream/index.js'
import { rng } from '../repo/helpers.js'

const HEADER = messageHeaderBytes('#commit')
const cid = (s: string, codec = DAG_CBOR_CODEC) => cidForBlock(new TextEncoder().encode(s), codec)

function baseBody(i = 0): Record<string, unknown> {
  return {
    seq: 1000 + i,
    rebase: false,
    tooBig: false,
    repo: 'did:plc:abcdefghijklmnopqrstuvwx',
    commit: cid(`commit${i}`),
    rev: '3kabcdefghij2',
    since: '3kabcdefghii2',
    blocks: new Uint8Array(Array.from({ length: 200 + i }, (_, k) => (k * 7 + i) & 0xff)),
    ops: [
      { action: 'create', path: 'app.bsky.feed.post/3kabc', cid: cid(`rec${i}`) },
      { action: 'update', path: 'app.bsky.feed.like/3kabd', cid: cid(`rec2${i}`), prev: cid(`old${i}`) },
      { action: 'delete', path: 'app.bsky.graph.follow/3kabe', cid: null, prev: cid(`old2${i}`) },
    ],
    blobs: [cid(`blob${i}`, RAW_CODEC)],
    time: '2026-12-06T10:00:00.000Z',
    prevData: cid(`data${i}`),
  }
}

const frameOf = (body: Record<string, unknown>) => encodeMessageFrame('#commit', body)

// --- hand-built CBOR (for what encodeMessageFrame never writes: keys out of order, non-minimal heads...)
function head(major: number, n: number, width?: 1 | 2 | 4 | 8): number[] {
  const m = major << 5
  const w = width ?? (n < 24 ? 0 : n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x100000000 ? 4 : 8)
  if (w === 0) return [m | n]
  const out = [m | (w === 1 ? 24 : w === 2 ? 25 : w === 4 ? 26 : 27)]
  for (let i = w - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** (8 * i)) & 0xff)
  return out
}
const text = (s: string) => [...head(3, new TextEncoder().encode(s).length), ...new TextEncoder().encode(s)]
/** a map with its entries in the given order (values already encoded) */
function mapBytes(entries: [string | number[], number[] | Uint8Array][]): number[] {
  const out = head(5, entries.length)
  for (const [k, v] of entries) out.push(...(typeof k === 'string' ? text(k) : k), ...v)
  return out
}
const enc = (v: unknown) => [...dagCbor.encode(v)]
const frameFromBody = (body: number[] | Uint8Array) => new Uint8Array([...HEADER, ...body])

type Verdict = 'ok' | 'truncated' | 'malformed' | 'fallback'

function oracle(bytes: Uint8Array): Verdict {
  try {
    decodeFrame(bytes)
    return 'ok'
  } catch (err) {
    if (!(err instanceof FrameError)) throw err
    return err.truncated ? 'truncated' : 'malformed'
  }
}

function raw(bytes: Uint8Array): Verdict {
  const m = matchMessageHeader(bytes, ['#commit'])
  if (!m) return 'fallback'
  try {
    checkFrameBody(bytes, m.bodyStart)
    return 'ok'
  } catch (err) {
    if (!(err instanceof FrameError)) throw err
    return err.truncated ? 'truncated' : 'malformed'
  }
}

function sameVerdict(bytes: Uint8Array, label: string): Verdict {
  const r = raw(bytes)
  if (r === 'fallback') return r
  const o = oracle(bytes)
  expect(r, label).toBe(o)
  if (o === 'ok') {
    const f = decodeFrame(bytes)
    const seq = f.op === 1 && Number.isSafeInteger(f.body.seq) ? f.body.seq : undefined
    expect(bodySeq(bytes, HEADER.length), label).toBe(seq)
  }
  return r
}

describe('checkFrameBody: refuses what decodeFrame refuses', () => {
  it('crafted odd frames', () => {
    const good = enc(baseBody())
    const entries = (body: Record<string, unknown>): [string, number[]][] => Object.entries(body).map(([k, v]) => [k, enc(v)])
    const e = entries(baseBody())
    const cidBytes = [...cid('x').bytes]
    const cases: [string, number[] | Uint8Array, Verdict][] = [
      ['valid', good, 'ok'],
      ['keys out of canonical order (accepted by the decoder)', mapBytes([...e].reverse()), 'ok'],
      ['extra fields of every kind', mapBytes([...e, ['zzz', enc({ a: [1, -5, 2n ** 60n, true, null, new Uint8Array(3)] })]]), 'ok'],
      ['negative seq', mapBytes([...e.filter(([k]) => k !== 'seq'), ['seq', enc(-7)]]), 'ok'],
      ['seq beyond 2^53', mapBytes([...e.filter(([k]) => k !== 'seq'), ['seq', enc(2n ** 60n)]]), 'ok'],
      ['seq not an integer type', mapBytes([...e.filter(([k]) => k !== 'seq'), ['seq', enc('12')]]), 'ok'],
      ['no seq', mapBytes(e.filter(([k]) => k !== 'seq')), 'ok'],
      ['non-minimal integer (seq 5 in 2 bytes)', mapBytes([...e.filter(([k]) => k !== 'seq'), ['seq', head(0, 5, 1)]]), 'malformed'],
      ['non-minimal integer (seq in 8 bytes)', mapBytes([...e.filter(([k]) => k !== 'seq'), ['seq', head(0, 70000, 8)]]), 'malformed'],
      ['non-minimal negative integer', mapBytes([...e, ['n', head(1, 3, 2)]]), 'malformed'],
      ['non-minimal string length', mapBytes([...e.filter(([k]) => k !== 'rev'), ['rev', [...head(3, 13, 1), ...new TextEncoder().encode('3kabcdefghij2')]]]), 'malformed'],
      ['non-minimal key length', mapBytes([...e.filter(([k]) => k !== 'rev'), [[...head(3, 3, 2), ...new TextEncoder().encode('rev')], enc('x')]]), 'malformed'],
      ['non-minimal map length', [...head(5, e.length, 1), ...mapBytes(e).slice(1)], 'malformed'],
      ['non-minimal array length', mapBytes([...e, ['arr', [...head(4, 1, 2), 1]]]), 'malformed'],
      ['64-bit byte string length', mapBytes([...e, ['b', [...head(2, 2, 8), 1, 2]]]), 'malformed'],
      ['repeated key', mapBytes([...e, ['rev', enc('3kabcdefghij3')]]), 'malformed'],
      ['repeated key in an op', mapBytes([...e.filter(([k]) => k !== 'ops'), ['ops', [...head(4, 1), ...mapBytes([['path', enc('a/b')], ['path', enc('a/c')]])]]]), 'malformed'],
      ['keys equal once decoded (invalid UTF-8)', mapBytes([...e, [[0x61, 0xff], enc(1)], [[0x61, 0xfe], enc(2)]]), 'malformed'],
      ['distinct non-ASCII keys', mapBytes([...e, [text('é'), enc(1)], [text('è'), enc(2)]]), 'ok'],
      ['invalid UTF-8 in a value (decoded with U+FFFD)', mapBytes([...e.filter(([k]) => k !== 'time'), ['time', [0x62, 0xff, 0xfe]]]), 'ok'],
      ['many keys, one repeated (the large-map path)', mapBytes([...e, ...Array.from({ length: 30 }, (_, i) => [`k${i}`, enc(i)] as [string, number[]]), ['k7', enc(0)]]), 'malformed'],
      ['many keys, none repeated', mapBytes([...e, ...Array.from({ length: 30 }, (_, i) => [`k${i}`, enc(i)] as [string, number[]])]), 'ok'],
      ['CID without the 0x00 prefix', mapBytes([...e.filter(([k]) => k !== 'commit'), ['commit', [0xd8, 0x2a, ...head(2, cidBytes.length), ...cidBytes]]]), 'malformed'],
      ['CID cut short', mapBytes([...e.filter(([k]) => k !== 'commit'), ['commit', [0xd8, 0x2a, ...head(2, 20), 0, ...cidBytes.slice(0, 19)]]]), 'malformed'],
      ['CID with a trailing byte', mapBytes([...e.filter(([k]) => k !== 'commit'), ['commit', [0xd8, 0x2a, ...head(2, cidBytes.length + 2), 0, ...cidBytes, 7]]]), 'malformed'],
      ['empty CID', mapBytes([...e.filter(([k]) => k !== 'commit'), ['commit', [0xd8, 0x2a, 0x40]]]), 'malformed'],
      ['CIDv0 link', mapBytes([...e, ['v0', [0xd8, 0x2a, ...head(2, 35), 0, 0x12, 0x20, ...new Array(32).fill(9)]]]), 'ok'],
      ['CID with another hash', mapBytes([...e, ['h', [0xd8, 0x2a, ...head(2, 21), 0, 1, 0x71, 0x13, 0x10, ...new Array(16).fill(1)]]]), 'ok'],
      ['tag 42 on a string', mapBytes([...e, ['t', [0xd8, 0x2a, ...text('abc')]]]), 'malformed'],
      ['tag 43', mapBytes([...e, ['t', [0xd8, 0x2b, 0x40]]]), 'malformed'],
      ['a float', mapBytes([...e, ['f', [0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]]]), 'malformed'],
      ['undefined', mapBytes([...e, ['u', [0xf7]]]), 'malformed'],
      ['simple value 16', mapBytes([...e, ['u', [0xf0]]]), 'malformed'],
      ['indefinite-length array', mapBytes([...e, ['i', [0x9f, 0x01, 0xff]]]), 'malformed'],
      ['__proto__ key', mapBytes([...e, ['__proto__', enc(1)]]), 'malformed'],
      ['integer key', [...head(5, e.length + 1), ...mapBytes(e).slice(1), 0x01, 0x01], 'malformed'],
      ['body is an array', enc([1, 2]), 'malformed'],
      ['body is a string', enc('x'), 'malformed'],
      ['trailing bytes', [...good, 0x00], 'malformed'],
      ['a second body', [...good, ...good], 'malformed'],
      ['no body', [], 'truncated'],
      ['cut inside blocks', good.slice(0, good.length - 100), 'truncated'],
      ['cut after one byte', good.slice(0, 1), 'truncated'],
      ['cut, with a strict refusal before the cut', mapBytes([['seq', head(0, 5, 1)], ...e.filter(([k]) => k !== 'seq')]).slice(0, 60), 'truncated'],
      ['too deep', [...head(5, 1), ...text('d'), ...new Array(300).fill(0x81), 0x01], 'malformed'],
      ['length beyond the data', mapBytes([...e, ['b', [...head(2, 100000), 1, 2, 3]]]), 'truncated'],
    ]
    for (const [label, body, expected] of cases) {
      const bytes = frameFromBody(body)
      expect(sameVerdict(bytes, label), label).toBe(expected)
    }
  })

  it('every truncation and thousands of random corruptions of real frames', () => {
    const rand = rng(42)
    const counts: Record<Verdict, number> = { ok: 0, truncated: 0, malformed: 0, fallback: 0 }
    for (let f = 0; f < 6; f++) {
      const body = baseBody(f)
      if (f % 2 === 1) (body as Record<string, unknown>).extra = { nested: [1, 'two', cid('n'), new Uint8Array([1, 2])], n: -300 }
      if (f === 4) delete body.prevData
      const frame = frameOf(body)
      for (let cut = 0; cut < frame.length; cut++) counts[sameVerdict(frame.subarray(0, cut), `cut at ${cut}`)]++
      for (let i = 0; i < 1500; i++) {
        const m = new Uint8Array(frame)
        const edits = 1 + Math.floor(rand() * 3)
        for (let k = 0; k < edits; k++) {
          // corrupt the structure more often than the blocks' bytes (which any value passes)
          const at = HEADER.length + Math.floor(rand() * (m.length - HEADER.length))
          const pick = rand()
          if (pick < 0.4) m[at] = Math.floor(rand() * 256)
          else if (pick < 0.7) m[at] = [0x18, 0x19, 0x1a, 0x1b, 0x58, 0x78, 0x98, 0xb8, 0xd8, 0xf6, 0xf7, 0xfb, 0x5f, 0x9f, 0xbf, 0x00, 0x40, 0x60][Math.floor(rand() * 18)]!
          else m[at] = m[at]! ^ (1 << Math.floor(rand() * 8))
        }
        counts[sameVerdict(m, `corruption ${f}/${i}`)]++
      }
    }
    // the corpus exercised every verdict
    expect(counts.ok).toBeGreaterThan(100)
    expect(counts.truncated).toBeGreaterThan(100)
    expect(counts.malformed).toBeGreaterThan(100)
  })

  it('a frame whose header is not the canonical #commit header is left to decodeFrame', () => {
    const body = enc(baseBody())
    expect(matchMessageHeader(new Uint8Array([...mapBytes([['op', enc(1)], ['t', enc('#commit')]]), ...body]), ['#commit'])).toBeNull()
    expect(matchMessageHeader(frameOf(baseBody()), ['#identity'])).toBeNull()
    expect(matchMessageHeader(frameOf(baseBody()), ['#commit'])).toEqual({ t: '#commit', bodyStart: HEADER.length })
  })
})

// ---------------------------------------------------------------------------------------------------
// outbound: the oracle is the relay's former code (decode, build `out`, encodeMessageFrame)

const NOW = '2026-12-06T12:34:56.789Z'

function formerOutbound(frame: Uint8Array, seq: number): Uint8Array {
  const f = decodeFrame(frame)
  if (f.op !== 1) throw new Error('not a message')
  const body = f.body
  const evt = body as { since?: unknown; blocks: Uint8Array; ops: Record<string, unknown>[]; prevData?: unknown; commit: unknown; rev: string }
  const t = typeof body.time === 'string' ? body.time : undefined
  const out: Record<string, unknown> = {
    rebase: false,
    tooBig: false,
    repo: body.repo,
    commit: evt.commit,
    rev: evt.rev,
    since: typeof evt.since === 'string' ? evt.since : null,
    blocks: evt.blocks,
    ops: evt.ops.map((op) => {
      const o: Record<string, unknown> = { action: op.action, path: op.path, cid: op.cid ?? null }
      if (op.prev) o.prev = op.prev
      return o
    }),
    blobs: [],
    time: t && !Number.isNaN(Date.parse(t)) ? t : NOW,
  }
  if (evt.prevData) out.prevData = evt.prevData
  return encodeMessageFrame('#commit', { seq, ...out })
}

function rawOutbound(frame: Uint8Array, seq: number): Uint8Array {
  const m = matchMessageHeader(frame, ['#commit'])!
  checkFrameBody(frame, m.bodyStart)
  return indexCommitFrame(frame, m.bodyStart).outbound(() => NOW).withSeq(seq)
}

describe('CommitFrame.outbound: the frame the decoded path built', () => {
  const variants: [string, (b: Record<string, unknown>) => Record<string, unknown> | Uint8Array][] = [
    ['as a PDS sends it', (b) => b],
    ['no blobs, rebase and tooBig true', (b) => ({ ...b, blobs: [], rebase: true, tooBig: true })],
    ['extra fields', (b) => ({ ...b, $type: 'x', extra: { a: [cid('e')] }, zz: 1 })],
    ['since absent', (b) => (({ since: _s, ...rest }) => rest)(b)],
    ['since null', (b) => ({ ...b, since: null })],
    ['since not a string', (b) => ({ ...b, since: 5 })],
    ['prevData absent', (b) => (({ prevData: _p, ...rest }) => rest)(b)],
    ['prevData null', (b) => ({ ...b, prevData: null })],
    ['time absent', (b) => (({ time: _t, ...rest }) => rest)(b)],
    ['time not a date', (b) => ({ ...b, time: 'yesterday-ish' })],
    ['time a number', (b) => ({ ...b, time: 12 })],
    ['time not ASCII but a date', (b) => ({ ...b, time: '\u00a02026-12-06T10:00:00Z' })],
    ['time other date format', (b) => ({ ...b, time: 'Sun, 06 Dec 2026 10:00:00 GMT' })],
    ['long time', (b) => ({ ...b, time: `2026-12-06T10:00:00.${'1'.repeat(300)}Z` })],
    ['no ops', (b) => ({ ...b, ops: [] })],
    [
      'odd ops: prev on a create, prev null, cid absent, extra op fields',
      (b) => ({
        ...b,
        ops: [
          { action: 'create', path: 'a.b/1', cid: cid('1'), prev: cid('p') },
          { action: 'update', path: 'a.b/2', cid: cid('2'), prev: null },
          { action: 'delete', path: 'a.b/3', prev: cid('q') },
          { action: 'delete', path: 'a.b/4', cid: null, extra: 'x', zzzz: [1] },
        ],
      }),
    ],
    ['many ops (array length in 2 bytes)', (b) => ({ ...b, ops: Array.from({ length: 300 }, (_, i) => ({ action: 'create', path: `a.b/${i}`, cid: cid(`${i}`) })) })],
    ['large blocks', (b) => ({ ...b, blocks: new Uint8Array(70000).fill(3) })],
    [
      'keys out of order, at the top and in ops',
      (b) =>
        frameFromBody(
          mapBytes([
            ...Object.entries(b)
              .filter(([k]) => k !== 'ops')
              .reverse()
              .map(([k, v]) => [k, enc(v)] as [string, number[]]),
            ['ops', [...head(4, 1), ...mapBytes([['action', enc('update')], ['prev', enc(cid('pp'))], ['path', enc('x.y/z')], ['cid', enc(cid('c'))]])]],
          ]),
        ),
    ],
    ['time with invalid UTF-8', (b) => frameFromBody(mapBytes([...Object.entries(b).filter(([k]) => k !== 'time').map(([k, v]) => [k, enc(v)] as [string, number[]]), ['time', [0x62, 0xff, 0xfe]]]))],
  ]

  it('byte for byte, for odd bodies and every width of seq', () => {
    const seqs = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER]
    for (const [label, make] of variants) {
      const made = make(baseBody(3))
      const frame = made instanceof Uint8Array ? made : frameOf(made)
      expect(raw(frame), label).toBe('ok')
      for (const seq of seqs) {
        const a = rawOutbound(frame, seq)
        const b = formerOutbound(frame, seq)
        expect(Buffer.from(a).equals(Buffer.from(b)), `${label}, seq ${seq}`).toBe(true)
      }
    }
  })

  it('withSeq writes the seq into the frame built by outbound (no copy); a later call copies, earlier frames unchanged', () => {
    const frame = frameOf(baseBody(2))
    const m = matchMessageHeader(frame, ['#commit'])!
    // every width of seq first (the part before the seq moves in the buffer unless the seq takes 5 bytes)
    for (const seq of [7, 300, 70_000, 2 ** 40 + 3]) {
      const out = indexCommitFrame(frame, m.bodyStart).outbound(() => NOW)
      const alloc = vi.spyOn(Buffer, 'allocUnsafe')
      try {
        const first = out.withSeq(seq)
        expect(alloc, `seq ${seq}: no copy`).not.toHaveBeenCalled()
        const firstBytes = Buffer.from(first)
        expect(firstBytes.equals(Buffer.from(formerOutbound(frame, seq))), `seq ${seq}`).toBe(true)
        for (const again of [seq + 1, 5, 2 ** 33]) {
          alloc.mockClear()
          const b = out.withSeq(again)
          expect(alloc, `seq ${seq} then ${again}: a copy`).toHaveBeenCalledTimes(1)
          expect(Buffer.from(b).equals(Buffer.from(formerOutbound(frame, again))), `seq ${seq} then ${again}`).toBe(true)
        }
        expect(Buffer.from(first).equals(firstBytes), `seq ${seq}: the first frame is unchanged`).toBe(true)
      } finally {
        alloc.mockRestore()
      }
    }
  })

  it('reads repo, seq, since and the ops as the decoded body has them', () => {
    const body = baseBody(1)
    const frame = frameOf(body)
    const cf = indexCommitFrame(frame, HEADER.length)
    expect(cf.repo).toBe(body.repo)
    expect(cf.seq).toBe(body.seq)
    expect(cf.rev()).toBe(body.rev)
    expect(cf.since()).toBe(body.since)
    expect(cf.opsActionPath()).toEqual((body.ops as { action: string; path: string }[]).map(({ action, path }) => ({ action, path })))
    expect(Buffer.from(cf.body).equals(Buffer.from(dagCbor.encode(body)))).toBe(true)
    expect(cf.hasSince()).toBe(true)
    const ops = body.ops as { action: string; path: string; cid: CID | null }[]
    expect(cf.ops()).toEqual(ops.map(({ action, path, cid }) => ({ action, path, cid: cid ? cid.toString() : null })))
    // since absent or null: hasSince() is what `since != null` says of the decoded body
    const { since: _since, ...noSince } = body
    expect(indexCommitFrame(frameOf(noSince), HEADER.length).hasSince()).toBe(false)
    expect(indexCommitFrame(frameOf({ ...body, since: null }), HEADER.length).hasSince()).toBe(false)
    expect(indexCommitFrame(frameOf({ ...body, since: 7 }), HEADER.length).hasSince()).toBe(true)
    // an op without a cid (a delete), with a raw-codec cid, and with an identity-hash CIDv1 (not the common form)
    const odd = [
      { action: 'delete', path: 'a.b/c', prev: cid('p') },
      { action: 'create', path: 'a.b/d', cid: cid('r', RAW_CODEC) },
      { action: 'create', path: 'a.b/e', cid: CID.createV1(DAG_CBOR_CODEC, { code: 0, size: 3, digest: new Uint8Array([1, 2, 3]), bytes: new Uint8Array([0, 3, 1, 2, 3]) }) },
    ]
    expect(indexCommitFrame(frameOf({ ...body, ops: odd }), HEADER.length).ops()).toEqual([
      { action: 'delete', path: 'a.b/c', cid: null },
      { action: 'create', path: 'a.b/d', cid: (odd[1]!.cid as CID).toString() },
      { action: 'create', path: 'a.b/e', cid: (odd[2]!.cid as CID).toString() },
    ])
    const noRepo = indexCommitFrame(frameOf({ ...body, repo: 12 }), HEADER.length)
    expect(noRepo.repo).toBeUndefined()
    const opsNotArray = indexCommitFrame(frameOf({ ...body, ops: 'x' }), HEADER.length)
    expect(opsNotArray.opCount).toBe(-1)
    expect(CID.asCID(decodeFrame(rawOutbound(frame, 9)).op === 1 ? (decodeFrame(rawOutbound(frame, 9)) as { body: { commit: unknown } }).body.commit : null)?.equals(body.commit as CID)).toBe(true)
  })
})
