import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import {
  FrameError,
  decodeFrame,
  encodeErrorFrame,
  encodeInfoFrame,
  encodeMessageFrame,
  type MessageFrame,
} from '@stratos/core/stream'

const cid = CID.createV1(0x71, await sha256.digest(new TextEncoder().encode('hello')))

function concat(...parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts)
}

const commitBody = {
  seq: 42,
  rebase: false,
  tooBig: false,
  repo: 'did:plc:abc123',
  commit: cid,
  rev: '3l3qo2vutsw2b',
  since: null,
  blocks: new Uint8Array([1, 2, 3, 4]),
  ops: [{ action: 'create', path: 'app.bsky.feed.post/3l3qo2vuowo2b', cid, prev: undefined }],
  blobs: [],
  time: '2024-09-09T19:46:02.102Z',
  big: Number.MAX_SAFE_INTEGER,
  neg: -12345678901,
}

describe('frame codec', () => {
  it('encodes a message frame as header {op:1,t} followed by the body, both DAG-CBOR', () => {
    const bytes = encodeMessageFrame('#commit', commitBody)
    const { prev: _p, ...op } = commitBody.ops[0]!
    const expected = concat(dagCbor.encode({ op: 1, t: '#commit' }), dagCbor.encode({ ...commitBody, ops: [op] }))
    expect(Buffer.from(bytes).equals(Buffer.from(expected))).toBe(true)
  })

  it('round-trips message frames (CIDs, bytes, null, large ints)', () => {
    const frame = decodeFrame(encodeMessageFrame('#commit', commitBody)) as MessageFrame
    expect(frame.op).toBe(1)
    expect(frame.t).toBe('#commit')
    const body = frame.body
    expect(body.seq).toBe(42)
    expect(body.since).toBeNull()
    expect(body.big).toBe(Number.MAX_SAFE_INTEGER)
    expect(body.neg).toBe(-12345678901)
    expect((body.commit as CID).equals(cid)).toBe(true)
    expect(Array.from(body.blocks as Uint8Array)).toEqual([1, 2, 3, 4])
    const ops = body.ops as Record<string, unknown>[]
    expect(ops[0]).not.toHaveProperty('prev') // undefined optional field dropped, not encoded
    expect((ops[0]!.cid as CID).toString()).toBe(cid.toString())
  })

  it('round-trips error frames with and without a message', () => {
    expect(decodeFrame(encodeErrorFrame('FutureCursor', 'Cursor in the future.'))).toEqual({
      op: -1,
      error: 'FutureCursor',
      message: 'Cursor in the future.',
    })
    expect(decodeFrame(encodeErrorFrame('ConsumerTooSlow'))).toEqual({ op: -1, error: 'ConsumerTooSlow' })
    const bytes = encodeErrorFrame('X')
    expect(Buffer.from(bytes).equals(Buffer.from(concat(dagCbor.encode({ op: -1 }), dagCbor.encode({ error: 'X' }))))).toBe(
      true,
    )
  })

  it('encodes #info frames', () => {
    expect(decodeFrame(encodeInfoFrame('OutdatedCursor'))).toEqual({ op: 1, t: '#info', body: { name: 'OutdatedCursor' } })
  })

  it('drops $type from the body (the type travels in t)', () => {
    const f = decodeFrame(encodeMessageFrame('#identity', { $type: 'com.atproto.sync.subscribeRepos#identity', seq: 1 }))
    expect(f).toEqual({ op: 1, t: '#identity', body: { seq: 1 } })
  })

  it('refuses bodies outside the data model', () => {
    expect(() => encodeMessageFrame('#x', [] as unknown as Record<string, unknown>)).toThrow(TypeError)
    expect(() => encodeMessageFrame('#x', null as unknown as Record<string, unknown>)).toThrow(TypeError)
    expect(() => encodeMessageFrame('#x', new Uint8Array(2) as unknown as Record<string, unknown>)).toThrow(TypeError)
    expect(() => encodeMessageFrame('#x', { n: 1.5 })).toThrow(/non-integer/)
    expect(() => encodeMessageFrame('#x', { a: [1, undefined] })).toThrow(/undefined/)
    expect(() => encodeMessageFrame('#x', { d: new Date() })).toThrow(TypeError)
    expect(() => encodeMessageFrame('', { a: 1 })).toThrow(TypeError)
    expect(() => encodeErrorFrame('')).toThrow(TypeError)
  })

  it('accepts ArrayBuffer and fragment lists', () => {
    const bytes = encodeMessageFrame('#identity', { seq: 3, did: 'did:plc:x' })
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
    expect(decodeFrame(ab)).toEqual(decodeFrame(bytes))
    expect(decodeFrame([bytes.subarray(0, 5), bytes.subarray(5)])).toEqual(decodeFrame(bytes))
  })

  it('returns unknown ops as "unknown" so consumers can skip them', () => {
    const f = decodeFrame(concat(dagCbor.encode({ op: 2, t: '#future' }), dagCbor.encode({ a: 1 })))
    expect(f).toEqual({ op: 'unknown', header: { op: 2, t: '#future' }, body: { a: 1 } })
  })
})

describe('malformed frames throw FrameError', () => {
  const good = encodeMessageFrame('#commit', commitBody)

  it('every truncation of a valid frame', () => {
    let thrown = 0
    for (let n = 0; n < good.length; n++) {
      expect(() => decodeFrame(good.subarray(0, n)), `prefix of ${n} bytes`).toThrow(FrameError)
      thrown++
    }
    expect(thrown).toBe(good.length)
  })

  it('trailing bytes after the body', () => {
    expect(() => decodeFrame(concat(good, new Uint8Array([0x00])))).toThrow(/trailing/)
    expect(() => decodeFrame(concat(good, dagCbor.encode({ extra: true })))).toThrow(FrameError)
  })

  it('garbage', () => {
    const samples = [
      new Uint8Array([0xff, 0xff, 0xff]),
      new Uint8Array([0x1c]), // reserved additional info
      Buffer.from('not cbor at all, just text'),
      new Uint8Array([0xa1, 0x61]), // map with truncated key
      new Uint8Array([0xbf, 0x62, 0x6f, 0x70, 0x01, 0xff, 0xa0]), // indefinite-length header map
      concat(new Uint8Array([0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), // 2^64-1 byte string
      concat(new Uint8Array([0x9b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00])), // 2^32-item array
    ]
    for (const s of samples) expect(() => decodeFrame(s), Buffer.from(s).toString('hex')).toThrow(FrameError)
    // pseudo-random bytes: never anything but FrameError
    let x = 12345
    for (let i = 0; i < 300; i++) {
      const len = 1 + (i % 40)
      const buf = new Uint8Array(len)
      for (let j = 0; j < len; j++) {
        x = (x * 1103515245 + 12345) & 0x7fffffff
        buf[j] = x & 0xff
      }
      try {
        decodeFrame(buf)
      } catch (err) {
        expect(err).toBeInstanceOf(FrameError)
      }
    }
  })

  it('well-formed CBOR with a bad frame shape', () => {
    const body = dagCbor.encode({ seq: 1 })
    const cases: [string, Uint8Array][] = [
      ['header not a map', concat(dagCbor.encode([1, '#commit']), body)],
      ['header op missing', concat(dagCbor.encode({ t: '#commit' }), body)],
      ['header op not an integer', concat(dagCbor.encode({ op: '1', t: '#commit' }), body)],
      ['message without t', concat(dagCbor.encode({ op: 1 }), body)],
      ['message with empty t', concat(dagCbor.encode({ op: 1, t: '' }), body)],
      ['message body not a map', concat(dagCbor.encode({ op: 1, t: '#commit' }), dagCbor.encode([1, 2]))],
      ['message body is a string', concat(dagCbor.encode({ op: 1, t: '#commit' }), dagCbor.encode('x'))],
      ['error body without error', concat(dagCbor.encode({ op: -1 }), dagCbor.encode({ message: 'x' }))],
      ['header only', dagCbor.encode({ op: 1, t: '#commit' })],
      ['empty', new Uint8Array(0)],
      ['float in body', concat(dagCbor.encode({ op: 1, t: '#x' }), new Uint8Array([0xa1, 0x61, 0x6e, 0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]))],
      ['non-42 tag', concat(dagCbor.encode({ op: 1, t: '#x' }), new Uint8Array([0xa1, 0x61, 0x6e, 0xc1, 0x01]))],
    ]
    for (const [what, bytes] of cases) expect(() => decodeFrame(bytes), what).toThrow(FrameError)
  })
})

// @atproto/xrpc-server is a dependency of @atproto/sync (a dev dependency of core): load it from there
const syncEntry = createRequire(import.meta.url).resolve('@atproto/sync')
const xrpcServerEntry = createRequire(syncEntry).resolve('@atproto/xrpc-server')
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const xs: any = await import(pathToFileURL(xrpcServerEntry).href)

describe('interop with the reference frame codec (@atproto/xrpc-server)', () => {
  it('their decoder reads our frames', () => {
    const msg = xs.Frame.fromBytes(encodeMessageFrame('#identity', { seq: 7, did: 'did:plc:abc', time: 't' }))
    expect(msg.isMessage()).toBe(true)
    expect(msg.type).toBe('#identity')
    expect(msg.body).toEqual({ seq: 7, did: 'did:plc:abc', time: 't' })
    const err = xs.Frame.fromBytes(encodeErrorFrame('FutureCursor', 'Cursor in the future.'))
    expect(err.isError()).toBe(true)
    expect(err.code).toBe('FutureCursor')
    expect(err.message).toBe('Cursor in the future.')
  })

  it('we read their frames, byte for byte the same', () => {
    const theirs: Uint8Array = new xs.MessageFrame({ seq: 9, repo: 'did:plc:abc', commit: cid }, { type: '#commit' }).toBytes()
    expect(Buffer.from(theirs).equals(Buffer.from(encodeMessageFrame('#commit', { seq: 9, repo: 'did:plc:abc', commit: cid })))).toBe(true)
    const f = decodeFrame(theirs) as MessageFrame
    expect(f.t).toBe('#commit')
    expect((f.body.commit as CID).equals(cid)).toBe(true)
    const theirErr: Uint8Array = new xs.ErrorFrame({ error: 'ConsumerTooSlow', message: 'slow' }).toBytes()
    expect(decodeFrame(theirErr)).toEqual({ op: -1, error: 'ConsumerTooSlow', message: 'slow' })
  })
})

describe('truncated vs malformed', () => {
  it('marks a frame cut short as truncated and garbage as not', async () => {
    const { encodeMessageFrame, decodeFrame, FrameError } = await import('@stratos/core/stream')
    const good = encodeMessageFrame('#commit', { seq: 1, blocks: new Uint8Array(64), repo: 'did:plc:abc' })
    for (const n of [1, good.length - 1, good.length - 40]) {
      try {
        decodeFrame(good.subarray(0, n))
        throw new Error('decoded a truncated frame')
      } catch (err) {
        expect(err).toBeInstanceOf(FrameError)
        expect((err as InstanceType<typeof FrameError>).truncated, `prefix of ${n} bytes`).toBe(true)
      }
    }
    let malformed: unknown
    try {
      decodeFrame(new Uint8Array([0xa1, 0x62, 0x6f, 0x70, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0xa0])) // float in header
    } catch (err) {
      malformed = err
    }
    expect(malformed).toBeInstanceOf(FrameError)
    expect((malformed as InstanceType<typeof FrameError>).truncated).toBe(false)
  })
})
