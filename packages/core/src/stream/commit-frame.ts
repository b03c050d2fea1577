/**
 * The raw-frame path of a `#commit` (what a relay does with each upstream commit without decoding it):
 *
 *  - `matchMessageHeader` + `checkFrameBody`: accept or refuse the frame exactly as `decodeFrame` does (same
 *    FrameError, same `truncated`), with a strict scan (scanCborItemStrict) that builds nothing;
 *  - `indexCommitFrame`: a fixed-shape reader of the body's top level (and of each op) that records where
 *    each field's value lies in the frame, and decodes only the few strings a relay routes by (repo, seq);
 *  - `CommitFrame.outbound()`: the relay's outbound `#commit` built from those byte ranges: the same bytes
 *    `encodeMessageFrame('#commit', {seq, ...})` gives for the body the relay forwards (rebase/tooBig false,
 *    blobs empty, ops reduced to action/path/cid/prev, an invalid time replaced), with only the seq to write.
 *
 * The body's values are copied byte for byte: a strictly valid DAG-CBOR string, byte string, CID or null has
 * one encoding, so a copy is what a decode and re-encode would give. The only exception is a `time` that is not
 * ASCII (invalid UTF-8 would decode to U+FFFD): it is decoded and encoded again. Keep `decodeFrame` and the
 * decoded path as the oracle (test/stream/commit-frame.test.ts compares them).
 */
import { CID } from 'multiformats/cid'
import { CborTruncatedError, cborHeadLength, scanCborItemStrict, writeCborHead } from '../data/index.js'
import type { CommitEvent, CommitEventOp } from '../repo/verify.js'
import { cidAt, isCidPayload, latin1 } from '../data/cbor-fixed.js'
import { FrameError, messageHeaderBytes } from './frames.js'

export { isCidPayload }

/**
 * The type of a frame whose header is, byte for byte, the canonical message header (`{op: 1, t}`) of one of
 * `types`, and where its body starts; null for any other frame (decode it with decodeFrame).
 */
export function matchMessageHeader(bytes: Uint8Array, types: readonly string[]): { t: string; bodyStart: number } | null {
  for (const t of types) {
    const h = messageHeaderBytes(t)
    if (bytes.length < h.length) continue
    let same = true
    for (let i = 0; i < h.length; i++) {
      if (bytes[i] !== h[i]) {
        same = false
        break
      }
    }
    if (same) return { t, bodyStart: h.length }
  }
  return null
}

/**
 * Checks the body of a message frame (from `bodyStart` to the end) as `decodeFrame` does: one strictly valid
 * DAG-CBOR map and nothing after it. Throws the FrameError decodeFrame would (truncated or malformed).
 */
export function checkFrameBody(bytes: Uint8Array, bodyStart: number): void {
  if (bodyStart >= bytes.length) throw new FrameError('frame has no body', { truncated: true })
  let end: number
  try {
    end = scanCborItemStrict(bytes, bodyStart, isCidPayload)
  } catch (err) {
    const truncated = err instanceof CborTruncatedError
    throw new FrameError(`${truncated ? 'truncated' : 'invalid'} CBOR in frame body: ${(err as Error).message}`, { cause: err, truncated })
  }
  // (a strict refusal and trailing bytes are both "malformed": which one is reported does not matter)
  if (end !== bytes.length) throw new FrameError(`frame has ${bytes.length - end} trailing bytes`)
  if (bytes[bodyStart]! >> 5 !== 5) throw new FrameError('message frame body is not a map')
}

// ---------------------------------------------------------------------------------------------------
// reading (the bytes are known to be valid: checkFrameBody passed)

/** [major, argument, offset after the head] of the item at `pos` (a valid item: no checks). */
function head(b: Uint8Array, pos: number): [number, number, number] {
  const ib = b[pos]!
  const major = ib >> 5
  const ai = ib & 0x1f
  if (ai < 24) return [major, ai, pos + 1]
  if (ai === 24) return [major, b[pos + 1]!, pos + 2]
  if (ai === 25) return [major, (b[pos + 1]! << 8) | b[pos + 2]!, pos + 3]
  if (ai === 26) return [major, ((b[pos + 1]! << 24) | (b[pos + 2]! << 16) | (b[pos + 3]! << 8) | b[pos + 4]!) >>> 0, pos + 5]
  // 8 bytes (an integer value only: longer lengths do not fit a frame); may lose precision above 2^53
  let v = 0
  for (let i = 1; i <= 8; i++) v = v * 256 + b[pos + i]!
  return [major, v, pos + 9]
}

/** The offset just past the (valid) item at `pos`. */
function skip(b: Uint8Array, pos: number): number {
  const [major, arg, next] = head(b, pos)
  switch (major) {
    case 2:
    case 3:
      return next + arg
    case 4: {
      let p = next
      for (let i = 0; i < arg; i++) p = skip(b, p)
      return p
    }
    case 5: {
      let p = next
      for (let i = 0; i < arg; i++) p = skip(b, skip(b, p))
      return p
    }
    case 6:
      return skip(b, next)
    default:
      return next
  }
}

const utf8 = new TextDecoder()

function isAscii(b: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (b[i]! >= 0x80) return false
  return true
}

/** The text string at `pos` as the decoder gives it, or undefined if the item is not a text string. */
function textAt(b: Uint8Array, pos: number): string | undefined {
  const [major, len, at] = head(b, pos)
  if (major !== 3) return undefined
  const end = at + len
  if (len <= 64 && isAscii(b, at, end)) return latin1(b, at, end)
  return utf8.decode(b.subarray(at, end))
}

/** Key names (UTF-8) compared against a key in place. */
function keyIs(b: Uint8Array, at: number, len: number, name: Uint8Array): boolean {
  if (len !== name.length) return false
  for (let i = 0; i < len; i++) if (b[at + i] !== name[i]) return false
  return true
}

const enc = (s: string) => new TextEncoder().encode(s)
const K = {
  seq: enc('seq'),
  repo: enc('repo'),
  rev: enc('rev'),
  since: enc('since'),
  blocks: enc('blocks'),
  commit: enc('commit'),
  prevData: enc('prevData'),
  time: enc('time'),
  ops: enc('ops'),
  action: enc('action'),
  path: enc('path'),
  cid: enc('cid'),
  prev: enc('prev'),
}

// top-level fields: index into CommitFrame.ranges (start at 2i, end at 2i + 1)
const F_REPO = 0
const F_REV = 1
const F_SINCE = 2
const F_BLOCKS = 3
const F_COMMIT = 4
const F_PREVDATA = 5
const F_TIME = 6
const F_OPS = 7
const N_FIELDS = 8

// op fields: index into CommitFrame.opRanges (8 per op)
const O_ACTION = 0
const O_PATH = 1
const O_CID = 2
const O_PREV = 3

const TAG42 = 0xd8
const CBOR_NULL = 0xf6
const CBOR_FALSE = 0xf4

/**
 * A `#commit` frame's body, indexed in place: the byte range of each field the relay reads or forwards.
 * Built by `indexCommitFrame` over a frame that `checkFrameBody` accepted.
 */
export class CommitFrame {
  /** `seq` when it is a safe integer */
  seq: number | undefined = undefined
  /** `repo` when it is a text string */
  repo: string | undefined = undefined
  /** value ranges [start, end) in `frame` of the top-level fields (-1: absent) */
  readonly ranges = new Int32Array(N_FIELDS * 2).fill(-1)
  /** ops: -1 when `ops` is absent or not an array */
  opCount = -1
  /** per op, value ranges of action, path, cid, prev (-1: absent; the op's action start is -2 if the op is not a map) */
  opRanges: Int32Array = EMPTY

  constructor(
    readonly frame: Uint8Array,
    readonly bodyStart: number,
  ) {}

  /** The body's bytes (a view into the frame). */
  get body(): Uint8Array {
    return this.frame.subarray(this.bodyStart)
  }

  private has(f: number): boolean {
    return this.ranges[2 * f]! >= 0
  }

  private first(f: number): number {
    const s = this.ranges[2 * f]!
    return s < 0 ? -1 : this.frame[s]!
  }

  /** `since` as the relay forwards it: the string, or null when it is absent or not a string. */
  since(): string | null {
    if (!this.has(F_SINCE)) return null
    return textAt(this.frame, this.ranges[2 * F_SINCE]!) ?? null
  }

  /** `rev` when it is a text string. */
  rev(): string | undefined {
    return this.has(F_REV) ? textAt(this.frame, this.ranges[2 * F_REV]!) : undefined
  }

  /** `since` is present and not null (a decoded body's `since != null`). */
  hasSince(): boolean {
    return this.has(F_SINCE) && this.first(F_SINCE) !== CBOR_NULL
  }

  /**
   * The ops of a verified commit (every op is a map with string action and path, and cid a CID or null):
   * action, path and the cid as a string (null when absent or not a CID), as the decoded ops give them.
   */
  ops(): { action: string; path: string; cid: string | null }[] {
    const b = this.frame
    const out: { action: string; path: string; cid: string | null }[] = []
    for (let i = 0; i < this.opCount; i++) {
      const o = 8 * i
      const a = this.opRanges[o + 2 * O_ACTION]!
      const p = this.opRanges[o + 2 * O_PATH]!
      const c = this.opRanges[o + 2 * O_CID]!
      let cid: string | null = null
      if (c >= 0 && b[c] === TAG42) {
        // tag 42 (2 bytes), a byte string: 0x00 then the CID's bytes
        const [, len, at] = head(b, c + 2)
        cid = CID.decode(b.subarray(at + 1, at + len)).toString()
      }
      out.push({ action: a >= 0 ? (textAt(b, a) ?? '') : '', path: p >= 0 ? (textAt(b, p) ?? '') : '', cid })
    }
    return out
  }

  /** The ops' actions and paths (of a verified commit: every op is a map with string action and path). */
  opsActionPath(): { action: string; path: string }[] {
    const out: { action: string; path: string }[] = []
    for (let i = 0; i < this.opCount; i++) {
      const a = this.opRanges[8 * i + 2 * O_ACTION]!
      const p = this.opRanges[8 * i + 2 * O_PATH]!
      out.push({ action: a >= 0 ? (textAt(this.frame, a) ?? '') : '', path: p >= 0 ? (textAt(this.frame, p) ?? '') : '' })
    }
    return out
  }

  /**
   * The fields of the body that `verifyCommitEvent` reads (repo, commit, rev, since, blocks, ops with action, path,
   * cid and prev, prevData), as `cborDecode` of the body gives them (an absent field undefined), built from the
   * index; null when one of them has a form this does not build (text that is not ASCII, a value of another type
   * than the field's, an op that is not a map): decode the body instead.
   */
  commitEvent(): CommitEvent | null {
    const b = this.frame
    const r = this.ranges
    const repo = fieldValue(b, r, F_REPO)
    const commit = fieldValue(b, r, F_COMMIT)
    const rev = fieldValue(b, r, F_REV)
    const since = fieldValue(b, r, F_SINCE)
    const blocks = fieldValue(b, r, F_BLOCKS)
    const prevData = fieldValue(b, r, F_PREVDATA)
    if (repo === BAIL || commit === BAIL || rev === BAIL || since === BAIL || blocks === BAIL || prevData === BAIL) return null
    let ops: CommitEventOp[] | undefined
    if (this.opCount >= 0) {
      ops = new Array(this.opCount)
      const o = this.opRanges
      for (let i = 0; i < this.opCount; i++) {
        if (o[8 * i] === -2) return null
        const op: Record<string, unknown> = {}
        for (let f = 0; f < 4; f++) {
          const at = o[8 * i + 2 * f]!
          if (at < 0) continue
          const v = plainValueAt(b, at)
          if (v === BAIL) return null
          op[OP_FIELDS[f]!] = v
        }
        ops[i] = op as unknown as CommitEventOp
      }
    } else if (r[2 * F_OPS]! >= 0) return null
    return { repo, commit, rev, since, blocks, ops, prevData } as CommitEvent
  }

  /**
   * The relay's outbound `#commit` for this (verified) commit, built from the body's bytes:
   * `{seq, rebase: false, tooBig: false, repo, commit, rev, since, blocks, ops, blobs: [], time, prevData?}`
   * with each op reduced to `{action, path, cid (null if absent), prev (if a CID)}`, `since` null unless a
   * string and `time` replaced by `now` (ISO) unless a valid date string. Only the seq is left to write.
   */
  outbound(now: () => string = isoNow): OutboundCommit {
    const b = this.frame
    const r = this.ranges

    // the time as forwarded (copied from the body when it is valid ASCII)
    let timeBytes: Uint8Array | null = null
    let timeRange = false
    const tStart = r[2 * F_TIME]!
    const t = tStart >= 0 ? textAt(b, tStart) : undefined
    if (t !== undefined && !Number.isNaN(Date.parse(t))) {
      const [, len, at] = head(b, tStart)
      if (isAscii(b, at, at + len)) timeRange = true
      else timeBytes = textItem(t)
    } else {
      timeBytes = textItem(now())
    }
    const sinceIsText = this.has(F_SINCE) && this.first(F_SINCE) >> 5 === 3
    const hasPrevData = this.has(F_PREVDATA) && this.first(F_PREVDATA) === TAG42

    // ops: [{cid, path, prev?, action}] (canonical key order: length first, then bytewise)
    const n = this.opCount < 0 ? 0 : this.opCount
    let opsLen = cborHeadLength(n)
    for (let i = 0; i < n; i++) {
      const o = 8 * i
      const cid = this.opRanges[o + 2 * O_CID]!
      const prev = this.opRanges[o + 2 * O_PREV]!
      const hasPrev = prev >= 0 && b[prev] === TAG42
      opsLen += 1 + 4 + (cid >= 0 ? this.opRanges[o + 2 * O_CID + 1]! - cid : 1) // "cid" + value
      opsLen += 5 + this.opRanges[o + 2 * O_PATH + 1]! - this.opRanges[o + 2 * O_PATH]!
      if (hasPrev) opsLen += 5 + this.opRanges[o + 2 * O_PREV + 1]! - prev
      opsLen += 7 + this.opRanges[o + 2 * O_ACTION + 1]! - this.opRanges[o + 2 * O_ACTION]!
    }

    const header = messageHeaderBytes('#commit')
    const fields = 11 + (hasPrevData ? 1 : 0)
    // everything but the seq's value
    const size =
      header.length +
      1 + // map head (<= 23 entries)
      4 + opsLen +
      4 + fieldLen(r, F_REV) +
      4 + // "seq" (the value is written later)
      5 + fieldLen(r, F_REPO) +
      5 + (timeRange ? fieldLen(r, F_TIME) : timeBytes!.length) +
      6 + 1 + // blobs []
      6 + (sinceIsText ? fieldLen(r, F_SINCE) : 1) +
      7 + fieldLen(r, F_BLOCKS) +
      7 + fieldLen(r, F_COMMIT) +
      7 + 1 + // rebase false
      7 + 1 + // tooBig false
      (hasPrevData ? 9 + fieldLen(r, F_PREVDATA) : 0)
    // (written by module functions, not closures: a closure per commit is an allocation, and more under tsx)
    // One buffer for the frame as it is stored and sent: not zero-filled (every byte is written), from Node's
    // pool when small, with SEQ_SLOT bytes left for the seq's value; the part before the seq starts where a
    // seq of SEQ_GUESS's width leaves it in place (withSeq moves it otherwise: a few hundred bytes at most)
    const start = SEQ_SLOT - SEQ_GUESS_LEN
    const out = Buffer.allocUnsafe(size + SEQ_SLOT)
    const o = this.opRanges
    let p = put(out, start, header, 0, header.length)
    out[p++] = 0xa0 | fields
    p = putKey(out, p, K.ops)
    p = writeCborHead(out, p, 4, n)
    for (let i = 0; i < n; i++) {
      const at = 8 * i
      const cid = o[at + 2 * O_CID]!
      const prev = o[at + 2 * O_PREV]!
      const hasPrev = prev >= 0 && b[prev] === TAG42
      out[p++] = 0xa0 | (hasPrev ? 4 : 3)
      p = putKey(out, p, K.cid)
      if (cid >= 0) p = put(out, p, b, cid, o[at + 2 * O_CID + 1]!)
      else out[p++] = CBOR_NULL
      p = putKey(out, p, K.path)
      p = put(out, p, b, o[at + 2 * O_PATH]!, o[at + 2 * O_PATH + 1]!)
      if (hasPrev) {
        p = putKey(out, p, K.prev)
        p = put(out, p, b, prev, o[at + 2 * O_PREV + 1]!)
      }
      p = putKey(out, p, K.action)
      p = put(out, p, b, o[at + 2 * O_ACTION]!, o[at + 2 * O_ACTION + 1]!)
    }
    p = putKey(out, p, K.rev)
    p = putField(out, p, b, r, F_REV)
    p = putKey(out, p, K.seq)
    const seqAt = p - start
    p += SEQ_GUESS_LEN // (the slot's end: the rest of the frame follows it)
    p = putKey(out, p, K.repo)
    p = putField(out, p, b, r, F_REPO)
    p = putKey(out, p, K.time)
    if (timeRange) p = putField(out, p, b, r, F_TIME)
    else p = put(out, p, timeBytes!, 0, timeBytes!.length)
    p = putKey(out, p, BLOBS)
    out[p++] = 0x80
    p = putKey(out, p, K.since)
    if (sinceIsText) p = putField(out, p, b, r, F_SINCE)
    else out[p++] = CBOR_NULL
    p = putKey(out, p, K.blocks)
    p = putField(out, p, b, r, F_BLOCKS)
    p = putKey(out, p, K.commit)
    p = putField(out, p, b, r, F_COMMIT)
    p = putKey(out, p, REBASE)
    out[p++] = CBOR_FALSE
    p = putKey(out, p, TOOBIG)
    out[p++] = CBOR_FALSE
    if (hasPrevData) {
      p = putKey(out, p, K.prevData)
      p = putField(out, p, b, r, F_PREVDATA)
    }
    if (p !== size + SEQ_SLOT) throw new Error(`outbound commit: wrote ${p - SEQ_SLOT} bytes, expected ${size}`)
    return new OutboundCommit(out, seqAt, n, start)
  }
}

/** The byte length of top-level field f's value. */
function fieldLen(r: Int32Array, f: number): number {
  return r[2 * f + 1]! - r[2 * f]!
}

/** Copies src[start, end) into out at p; returns the position after it. */
function put(out: Uint8Array, p: number, src: Uint8Array, start: number, end: number): number {
  if (end - start <= 16) for (let i = start; i < end; i++) out[p++] = src[i]!
  else {
    out.set(src.subarray(start, end), p)
    p += end - start
  }
  return p
}

/** A map key (a text string of at most 23 bytes) at p. */
function putKey(out: Uint8Array, p: number, k: Uint8Array): number {
  out[p++] = 0x60 | k.length
  return put(out, p, k, 0, k.length)
}

/** The value of top-level field f as it is in the body. */
function putField(out: Uint8Array, p: number, b: Uint8Array, r: Int32Array, f: number): number {
  return put(out, p, b, r[2 * f]!, r[2 * f + 1]!)
}

const BLOBS = enc('blobs')
const REBASE = enc('rebase')
const TOOBIG = enc('tooBig')
const EMPTY = new Int32Array(0)

/** The most bytes a seq's value takes (a CBOR head with an 8-byte argument). */
const SEQ_SLOT = 9
/** The width of seq assumed when a frame is built (65,536 to 2^32 - 1: 5 bytes): such a seq moves nothing. */
const SEQ_GUESS_LEN = 5

/**
 * An outbound `#commit` frame without its seq's value: `withSeq` gives the frame. It is built in one buffer
 * with a slot for the seq, and the first `withSeq` writes the seq into that buffer (no copy of the frame: the
 * bytes stored and sent are that buffer); a later call copies the frame, so a frame returned earlier never
 * changes.
 */
export class OutboundCommit {
  private written = false

  constructor(
    /** the frame in a buffer: [start, start + seqAt) before the seq, SEQ_SLOT bytes for it, then the rest */
    private readonly buf: Uint8Array,
    /** the offset in the frame where the seq's value goes */
    readonly seqAt: number,
    /** the ops in it */
    readonly opCount: number,
    /** where the part before the seq starts in `buf` (it ends SEQ_GUESS_LEN bytes before the slot's end) */
    private start: number,
  ) {}

  /** The frame's length without the seq's value. */
  get length(): number {
    return this.buf.length - SEQ_SLOT
  }

  withSeq(seq: number): Uint8Array {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`seq must be a non-negative safe integer, got ${seq}`)
    const n = cborHeadLength(seq)
    const buf = this.buf
    const slotEnd = SEQ_SLOT + this.seqAt // where the rest of the frame starts in buf
    if (this.written) {
      // the buffer is a frame handed out: copy
      const out = Buffer.allocUnsafe(this.length + n)
      out.set(buf.subarray(this.start, this.start + this.seqAt), 0)
      writeCborHead(out, this.seqAt, 0, seq)
      out.set(buf.subarray(slotEnd), this.seqAt + n)
      return out
    }
    this.written = true
    const start = SEQ_SLOT - n
    if (start !== this.start) {
      buf.copyWithin(start, this.start, this.start + this.seqAt)
      this.start = start
    }
    writeCborHead(buf, start + this.seqAt, 0, seq)
    return buf.subarray(start)
  }
}

function textItem(s: string): Uint8Array {
  const bytes = new TextEncoder().encode(s)
  const out = new Uint8Array(cborHeadLength(bytes.length) + bytes.length)
  const p = writeCborHead(out, 0, 3, bytes.length)
  out.set(bytes, p)
  return out
}

const isoNow = (): string => new Date().toISOString()

/** A top-level field's value as `plainValueAt` gives it; undefined when the field is absent. */
function fieldValue(b: Uint8Array, r: Int32Array, f: number): unknown {
  const at = r[2 * f]!
  return at < 0 ? undefined : plainValueAt(b, at)
}

const OP_FIELDS = ['action', 'path', 'cid', 'prev'] as const // in the order of O_ACTION..O_PREV
const BAIL = Symbol('bail')

/**
 * The (valid) item at `pos` as `cborDecode` gives it, for the scalar forms of a commit's fields: ASCII text,
 * bytes (a view), a link (CID), null, true/false, a small unsigned integer; BAIL for anything else.
 */
function plainValueAt(b: Uint8Array, pos: number): unknown {
  const ib = b[pos]!
  if (ib === CBOR_NULL) return null
  if (ib === CBOR_FALSE) return false
  if (ib === CBOR_FALSE + 1) return true
  const [major, arg, at] = head(b, pos)
  switch (major) {
    case 0:
      return Number.isSafeInteger(arg) ? arg : BAIL
    case 2:
      return b.subarray(at, at + arg)
    case 3:
      return isAscii(b, at, at + arg) ? textAt(b, pos) : BAIL
    case 6: {
      // tag 42 over 0x00 + the CID's bytes (checkFrameBody checked the payload)
      const [, len, p] = head(b, at)
      return cidAt(b, p + 1, len - 1) ?? BAIL
    }
    default:
      return BAIL
  }
}

/**
 * Indexes the body of a `#commit` frame that `checkFrameBody` accepted (a map): the value range of each
 * field, `seq` and `repo` decoded. Fields of another type than expected are indexed all the same (the
 * verification refuses them); unknown fields are skipped.
 */
export function indexCommitFrame(frame: Uint8Array, bodyStart: number): CommitFrame {
  const cf = new CommitFrame(frame, bodyStart)
  const b = frame
  const [, n, first] = head(b, bodyStart)
  let p = first
  for (let i = 0; i < n; i++) {
    const [, klen, kat] = head(b, p)
    const v = kat + klen
    const end = skip(b, v)
    let f = -1
    switch (klen) {
      case 3:
        if (keyIs(b, kat, klen, K.seq)) {
          // as decodeFrame's reader sees it: an integer within ±2^53 (beyond: a bigint, not a seq)
          const [major, arg] = head(b, v)
          if (major === 0 && Number.isSafeInteger(arg)) cf.seq = arg
          else if (major === 1 && Number.isSafeInteger(arg + 1)) cf.seq = -1 - arg
        } else if (keyIs(b, kat, klen, K.rev)) f = F_REV
        else if (keyIs(b, kat, klen, K.ops)) f = F_OPS
        break
      case 4:
        if (keyIs(b, kat, klen, K.repo)) {
          f = F_REPO
          cf.repo = textAt(b, v)
        } else if (keyIs(b, kat, klen, K.time)) f = F_TIME
        break
      case 5:
        if (keyIs(b, kat, klen, K.since)) f = F_SINCE
        break
      case 6:
        if (keyIs(b, kat, klen, K.blocks)) f = F_BLOCKS
        else if (keyIs(b, kat, klen, K.commit)) f = F_COMMIT
        break
      case 8:
        if (keyIs(b, kat, klen, K.prevData)) f = F_PREVDATA
        break
    }
    if (f >= 0) {
      cf.ranges[2 * f] = v
      cf.ranges[2 * f + 1] = end
      if (f === F_OPS) indexOps(cf, v)
    }
    p = end
  }
  return cf
}

function indexOps(cf: CommitFrame, at: number): void {
  const b = cf.frame
  const [major, n, first] = head(b, at)
  if (major !== 4) return
  cf.opCount = n
  const r = new Int32Array(8 * n).fill(-1)
  cf.opRanges = r
  let p = first
  for (let i = 0; i < n; i++) {
    const [m, fields, fp] = head(b, p)
    if (m !== 5) {
      r[8 * i] = -2
      p = skip(b, p)
      continue
    }
    let q = fp
    for (let j = 0; j < fields; j++) {
      const [, klen, kat] = head(b, q)
      const v = kat + klen
      const end = skip(b, v)
      let f = -1
      if (klen === 6 && keyIs(b, kat, klen, K.action)) f = O_ACTION
      else if (klen === 4 && keyIs(b, kat, klen, K.path)) f = O_PATH
      else if (klen === 3 && keyIs(b, kat, klen, K.cid)) f = O_CID
      else if (klen === 4 && keyIs(b, kat, klen, K.prev)) f = O_PREV
      if (f >= 0) {
        r[8 * i + 2 * f] = v
        r[8 * i + 2 * f + 1] = end
      }
      q = end
    }
    p = q
  }
}

/** `seq` of a checked message body, as decodeFrame's reader sees it (a safe integer), or undefined. */
export function bodySeq(frame: Uint8Array, bodyStart: number): number | undefined {
  const [, n, first] = head(frame, bodyStart)
  let p = first
  for (let i = 0; i < n; i++) {
    const [, klen, kat] = head(frame, p)
    const v = kat + klen
    if (klen === 3 && keyIs(frame, kat, klen, K.seq)) {
      const [major, arg] = head(frame, v)
      if (major === 0 && Number.isSafeInteger(arg)) return arg
      if (major === 1 && Number.isSafeInteger(arg + 1)) return -1 - arg
      return undefined
    }
    p = skip(frame, v)
  }
  return undefined
}
