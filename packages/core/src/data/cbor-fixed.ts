/**
 * Building blocks of the fixed-shape readers (MST nodes, commit objects, CAR headers): read one item of an
 * expected type in its canonical, shortest-form encoding, or report that it is not there (-1 / undefined), so
 * the reader can hand the bytes to the generic decoder instead. They never accept an encoding the strict
 * DAG-CBOR decoder would refuse; they may refuse encodings it accepts (the fallback handles those).
 */
import { CID } from 'multiformats/cid'
import { Digest } from 'multiformats/hashes/digest'

/** A read position, advanced by the readers. */
export interface FixedPos {
  pos: number
}

/**
 * The argument of the head at `pos` if it has major type `major` in its shortest form with at most 4 bytes of
 * argument (sets `out.pos` after the head), or -1.
 */
export function fixedArg(b: Uint8Array, pos: number, major: number, out: FixedPos): number {
  const ib = b[pos]
  if (ib === undefined || ib >> 5 !== major) return -1
  const ai = ib & 0x1f
  if (ai < 24) {
    out.pos = pos + 1
    return ai
  }
  if (ai === 24) {
    const v = b[pos + 1]
    if (v === undefined || v < 24) return -1
    out.pos = pos + 2
    return v
  }
  if (ai === 25) {
    if (pos + 2 >= b.length) return -1
    const v = (b[pos + 1]! << 8) | b[pos + 2]!
    if (v < 0x100) return -1
    out.pos = pos + 3
    return v
  }
  if (ai === 26) {
    if (pos + 4 >= b.length) return -1
    const v = ((b[pos + 1]! << 24) | (b[pos + 2]! << 16) | (b[pos + 3]! << 8) | b[pos + 4]!) >>> 0
    if (v < 0x10000) return -1
    out.pos = pos + 5
    return v
  }
  return -1
}

/** A CID link (tag 42 over a byte string 0x00 + CID bytes) at `out.pos` (advanced past it), or undefined. */
export function fixedCid(b: Uint8Array, out: FixedPos): CID | undefined {
  const pos = out.pos
  if (b[pos] !== 0xd8 || b[pos + 1] !== 0x2a) return undefined
  const len = fixedArg(b, pos + 2, 2, out)
  if (len < 1 || out.pos + len > b.length || b[out.pos] !== 0) return undefined
  const cid = cidAt(b, out.pos + 1, len - 1)
  if (!cid) return undefined
  out.pos += len
  return cid
}

/**
 * The CID whose binary form is the `len` bytes at `start`, as `CID.decode` gives it (same version, codec,
 * multihash and bytes), or undefined when CID.decode refuses them or would normalize them to other bytes (a
 * reader that copies bytes must copy what an encoder of the decoded value writes). The common form (CIDv1, a
 * one-byte codec, sha2-256, 32 bytes) is built directly: one 36-byte copy, no varint parsing, no re-encoding.
 */
export function cidAt(b: Uint8Array, start: number, len: number): CID | undefined {
  if (len === 36 && b[start] === 1 && b[start + 1]! < 0x80 && b[start + 2] === 0x12 && b[start + 3] === 0x20) {
    // a copy (not a view that would keep a whole socket buffer alive), a plain Uint8Array as CID.decode gives
    const plain = new Uint8Array(36)
    plain.set(b.subarray(start, start + 36))
    const multihash = plain.subarray(2)
    return new CID(1, plain[1]!, new Digest(0x12, 32, multihash.subarray(2), multihash), plain)
  }
  const payload = b.subarray(start, start + len)
  let cid: CID
  try {
    cid = CID.decode(payload)
  } catch {
    return undefined
  }
  const cb = cid.bytes
  if (cb.length !== payload.length) return undefined
  for (let i = 0; i < cb.length; i++) if (cb[i] !== payload[i]) return undefined
  return cid
}

/**
 * An ASCII text string at `out.pos` (advanced past it), or undefined (another type, a non-shortest length,
 * or a non-ASCII byte: UTF-8 is left to the generic decoder).
 */
export function fixedAscii(b: Uint8Array, out: FixedPos): string | undefined {
  const len = fixedArg(b, out.pos, 3, out)
  if (len < 0) return undefined
  const start = out.pos
  const end = start + len
  if (end > b.length) return undefined
  for (let i = start; i < end; i++) if (b[i]! >= 0x80) return undefined
  out.pos = end
  return len <= 64 ? latin1(b, start, end) : utf8.decode(b.subarray(start, end))
}

const utf8 = new TextDecoder()

type Latin1Slice = (this: Uint8Array, start: number, end: number) => string
const nativeLatin1 = (Buffer.prototype as unknown as { latin1Slice?: Latin1Slice }).latin1Slice

/**
 * Bytes [start, end) of `b` (within its bounds) as a string of one-byte characters: character i is byte
 * start + i, so ASCII bytes give their text. Node's latin1 slice where there is one: about 3x cheaper than
 * `String.fromCharCode.apply` over a subarray for a record path, and no view allocated.
 */
export function latin1(b: Uint8Array, start: number, end: number): string {
  if (nativeLatin1) return nativeLatin1.call(b, start, end)
  return String.fromCharCode.apply(null, b.subarray(start, end) as unknown as number[])
}

/** True when the bytes at `pos` are exactly `expect` (e.g. a map key with its head). */
export function fixedBytesAt(b: Uint8Array, pos: number, expect: Uint8Array): boolean {
  if (pos + expect.length > b.length) return false
  for (let i = 0; i < expect.length; i++) if (b[pos + i] !== expect[i]) return false
  return true
}

/** A tag-42 payload (0x00, then the CID's bytes) that the DAG-CBOR decoder takes for a CID. */
export function isCidPayload(p: Uint8Array): boolean {
  // the common form: CIDv1, dag-cbor or raw, sha2-256 with a 32-byte digest
  if (p.length === 37 && p[0] === 0 && p[1] === 1 && (p[2] === 0x71 || p[2] === 0x55) && p[3] === 0x12 && p[4] === 0x20) return true
  if (p[0] !== 0) return false
  try {
    CID.decode(p.subarray(1))
    return true
  } catch {
    return false
  }
}
