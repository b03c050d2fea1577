/**
 * CARv1 reading and writing (https://ipld.io/specs/transport/car/carv1/).
 *
 * Layout: varint(len) ‖ DAG-CBOR header `{version: 1, roots: [CID…]}`, then for every block
 * varint(len(cid) + len(data)) ‖ binary CID ‖ data.
 *
 * `readCar` is written for hostile input: it refuses inputs over a byte / block-count limit before
 * doing any work, checks every varint and CID, and verifies that every block's bytes hash to its CID
 * (only SHA-256 is accepted, which is all atproto uses). Anything wrong throws a `CarError` whose
 * `code` says what.
 */
import { BlockMap } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { sha256, sha256Into } from '../crypto/sha256.js'
import { cborCidLength, cborDecode, cborEncode, cborHeadLength, writeCborCid, writeCborHead } from '../data/index.js'
import { fixedArg, fixedBytesAt, fixedCid, type FixedPos } from '../data/cbor-fixed.js'

export type CarErrorCode =
  | 'too-big'
  | 'too-many-blocks'
  | 'block-too-big'
  | 'truncated'
  | 'bad-varint'
  | 'bad-header'
  | 'bad-cid'
  | 'unsupported-hash'
  | 'cid-mismatch'
  | 'no-root'

export class CarError extends Error {
  constructor(
    public code: CarErrorCode,
    message: string,
  ) {
    super(`invalid CAR (${code}): ${message}`)
    this.name = 'CarError'
  }
}

export interface CarLimits {
  /** whole input, in bytes (default 512 MiB) */
  maxBytes?: number
  /** number of block sections (default 5,000,000) */
  maxBlocks?: number
  /** one block's data, in bytes (default 2,000,000: nothing in an atproto repo is bigger) */
  maxBlockBytes?: number
  /** number of roots in the header (default 16) */
  maxRoots?: number
}

export const DEFAULT_CAR_LIMITS: Required<CarLimits> = {
  maxBytes: 512 * 1024 * 1024,
  maxBlocks: 5_000_000,
  maxBlockBytes: 2_000_000,
  maxRoots: 16,
}

export interface CarContents {
  roots: CID[]
  blocks: BlockMap
}

const SHA2_256 = 0x12
export const DAG_CBOR_CODEC = 0x71

// ---------------------------------------------------------------------------------------------
// varints (unsigned LEB128, minimal encoding, at most 2^53 - 1)

/** Reads an unsigned varint at `pos`; returns [value, next position]. */
export function readVarint(bytes: Uint8Array, pos: number, what = 'varint'): [number, number] {
  let value = 0
  let mul = 1
  for (let i = 0; i < 8; i++) {
    if (pos + i >= bytes.length) throw new CarError('truncated', `input ends inside a ${what}`)
    const b = bytes[pos + i]!
    value += (b & 0x7f) * mul
    if ((b & 0x80) === 0) {
      if (b === 0 && i > 0) throw new CarError('bad-varint', `non-minimal ${what} encoding`)
      if (!Number.isSafeInteger(value)) throw new CarError('bad-varint', `${what} too large`)
      return [value, pos + i + 1]
    }
    mul *= 128
  }
  throw new CarError('bad-varint', `${what} longer than 8 bytes`)
}

export function varintLength(n: number): number {
  let len = 1
  while (n >= 0x80) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}

/** Writes `n` as a varint into `out` at `pos`; returns the next position. */
export function writeVarint(n: number, out: Uint8Array, pos: number): number {
  while (n >= 0x80) {
    out[pos++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  out[pos++] = n
  return pos
}

export function encodeVarint(n: number): Uint8Array {
  const out = new Uint8Array(varintLength(n))
  writeVarint(n, out, 0)
  return out
}

// ---------------------------------------------------------------------------------------------
// reading

/** Parses a binary CID (v1, or a bare v0 sha-256 multihash) at `pos` within `end`. */
function readCid(bytes: Uint8Array, pos: number, end: number): [CID, number] {
  const view = bytes.subarray(0, end)
  // CIDv0: a bare sha2-256 multihash, 0x12 0x20 + 32 bytes
  if (view[pos] === SHA2_256 && view[pos + 1] === 0x20) {
    if (pos + 34 > end) throw new CarError('truncated', 'block section ends inside a CID')
    try {
      return [CID.decode(view.subarray(pos, pos + 34)), pos + 34]
    } catch (err) {
      throw new CarError('bad-cid', (err as Error).message)
    }
  }
  const start = pos
  let version: number
  let hashCode: number
  let hashLen: number
  try {
    ;[version, pos] = readVarint(view, pos, 'CID version')
    ;[, pos] = readVarint(view, pos, 'CID codec')
    ;[hashCode, pos] = readVarint(view, pos, 'multihash code')
    ;[hashLen, pos] = readVarint(view, pos, 'multihash length')
  } catch (err) {
    if (err instanceof CarError && err.code === 'truncated') {
      throw new CarError('truncated', 'block section ends inside a CID')
    }
    throw err
  }
  if (version !== 1) throw new CarError('bad-cid', `unsupported CID version ${version}`)
  if (pos + hashLen > end) throw new CarError('truncated', 'block section ends inside a CID digest')
  if (hashCode !== SHA2_256) {
    throw new CarError('unsupported-hash', `multihash 0x${hashCode.toString(16)} (only sha2-256 is accepted)`)
  }
  if (hashLen !== 32) throw new CarError('bad-cid', `sha2-256 digest of ${hashLen} bytes`)
  try {
    return [CID.decode(view.subarray(start, pos + hashLen)), pos + hashLen]
  } catch (err) {
    throw new CarError('bad-cid', (err as Error).message)
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Parses a whole CAR file held in memory. Throws `CarError` on anything malformed or over the
 * limits. Block bytes in the result are views into `bytes` (no copies).
 */
export function readCarSync(bytes: Uint8Array, limits: CarLimits = {}): CarContents {
  const lim = { ...DEFAULT_CAR_LIMITS, ...limits }
  if (!(bytes instanceof Uint8Array)) throw new CarError('bad-header', 'input is not bytes')
  if (bytes.length > lim.maxBytes) {
    throw new CarError('too-big', `${bytes.length} bytes is over the limit of ${lim.maxBytes}`)
  }
  if (bytes.length === 0) throw new CarError('truncated', 'empty input')

  // header
  const [headerLen, afterHeaderLen] = readVarint(bytes, 0, 'header length')
  if (headerLen === 0) throw new CarError('bad-header', 'zero-length header')
  if (afterHeaderLen + headerLen > bytes.length) throw new CarError('truncated', 'input ends inside the header')
  let header: unknown
  try {
    header = cborDecode(bytes.subarray(afterHeaderLen, afterHeaderLen + headerLen))
  } catch (err) {
    throw new CarError('bad-header', `header is not DAG-CBOR: ${(err as Error).message}`)
  }
  const roots = parseHeader(header, lim.maxRoots)

  // blocks
  const blocks = new BlockMap()
  let pos = afterHeaderLen + headerLen
  let count = 0
  while (pos < bytes.length) {
    if (++count > lim.maxBlocks) throw new CarError('too-many-blocks', `more than ${lim.maxBlocks} blocks`)
    const [sectionLen, sectionStart] = readVarint(bytes, pos, 'block section length')
    if (sectionLen === 0) throw new CarError('bad-cid', `empty block section at byte ${pos}`)
    const end = sectionStart + sectionLen
    if (end > bytes.length) throw new CarError('truncated', `input ends inside block #${count}`)
    const [cid, dataStart] = readCid(bytes, sectionStart, end)
    const data = bytes.subarray(dataStart, end)
    if (data.length > lim.maxBlockBytes) {
      throw new CarError('block-too-big', `block ${cid} is ${data.length} bytes (limit ${lim.maxBlockBytes})`)
    }
    if (!bytesEqual(sha256(data), cid.multihash.digest)) {
      throw new CarError('cid-mismatch', `block bytes do not hash to ${cid}`)
    }
    blocks.set(cid, data)
    pos = end
  }
  return { roots, blocks }
}

function parseHeader(header: unknown, maxRoots: number): CID[] {
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new CarError('bad-header', 'header is not a map')
  }
  const h = header as Record<string, unknown>
  if (h.version !== 1) throw new CarError('bad-header', `unsupported CAR version ${String(h.version)}`)
  if (!Array.isArray(h.roots)) throw new CarError('bad-header', 'header roots is not an array')
  if (h.roots.length > maxRoots) throw new CarError('bad-header', `more than ${maxRoots} roots`)
  return h.roots.map((r) => {
    const cid = CID.asCID(r)
    if (!cid) throw new CarError('bad-header', 'header root is not a CID')
    return cid
  })
}

// ---------------------------------------------------------------------------------------------
// the hot path: a commit's CAR slice, read without CID objects or string keys

const VARINT_SCALE = [1, 128, 16384, 2097152]

/** a block's digest, compared with its CID's (no array per block) */
const DIGEST = new Uint8Array(32)

/** A varint at `pos` in its minimal form (at most 4 bytes), as [value, next]; null for anything else. */
function varintAt(b: Uint8Array, pos: number): [number, number] | null {
  let value = 0
  for (let i = 0; i < 4; i++) {
    const x = b[pos + i]
    if (x === undefined) return null
    value += (x & 0x7f) * VARINT_SCALE[i]!
    if ((x & 0x80) === 0) return x === 0 && i > 0 ? null : [value, pos + i + 1]
  }
  return null
}

const CAR_KEY_ROOTS = Uint8Array.of(0x65, 0x72, 0x6f, 0x6f, 0x74, 0x73) // "roots"
const CAR_KEY_VERSION = Uint8Array.of(0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e) // "version"

/**
 * The blocks of a CAR by their CID's bytes. Built by `readCarSlice` without CID objects or string keys
 * (a BlockMap keys blocks by the CID's base32 form); `get` takes anything with the CID's `bytes`.
 */
export class CarBlocks {
  private readonly first = new Map<number, number>()
  private readonly next: number[] = []
  private readonly cids: Uint8Array[] = []
  private readonly datas: Uint8Array[] = []

  /** Blocks added (a CID given twice counts twice; `get` returns the first). */
  get size(): number {
    return this.cids.length
  }

  private static bucket(cid: Uint8Array): number {
    const n = cid.length
    return n < 4 ? n : ((cid[n - 4]! << 24) | (cid[n - 3]! << 16) | (cid[n - 2]! << 8) | cid[n - 1]!) | 0
  }

  add(cid: Uint8Array, data: Uint8Array): void {
    const i = this.cids.length
    this.cids.push(cid)
    this.datas.push(data)
    const key = CarBlocks.bucket(cid)
    const head = this.first.get(key)
    if (head === undefined) {
      this.first.set(key, i)
      this.next.push(-1)
      return
    }
    // appended to its bucket's chain, so `get` finds the first block given for a CID
    let j = head
    while (this.next[j]! >= 0) j = this.next[j]!
    this.next[j] = i
    this.next.push(-1)
  }

  get(cid: { bytes: Uint8Array }): Uint8Array | undefined {
    return this.getBytes(cid.bytes)
  }

  /** The block of the CID whose bytes are `want`. */
  getBytes(want: Uint8Array): Uint8Array | undefined {
    for (let j = this.first.get(CarBlocks.bucket(want)) ?? -1; j >= 0; j = this.next[j]!) {
      const have = this.cids[j]!
      if (have.length === want.length && bytesEqual(have, want)) return this.datas[j]
    }
    return undefined
  }

  has(cid: { bytes: Uint8Array }): boolean {
    return this.get(cid) !== undefined
  }

  /** The same blocks as a BlockMap (CID objects, for @atproto/repo). */
  toBlockMap(): BlockMap {
    const out = new BlockMap()
    for (let i = this.cids.length - 1; i >= 0; i--) out.set(CID.decode(this.cids[i]!), this.datas[i]!)
    return out
  }

  static fromBlockMap(blocks: BlockMap): CarBlocks {
    const out = new CarBlocks()
    blocks.forEach((data, cid) => out.add(cid.bytes, data))
    return out
  }
}

/**
 * A CAR in the form every writer produces (header `{roots, version: 1}` in canonical DAG-CBOR, CIDv1 sha2-256
 * blocks with a one-byte codec, minimal varints), read with the checks of `readCarSync` (limits, every block's
 * hash), or null for anything else, valid or not.
 */
export function readCanonicalCar(bytes: Uint8Array, lim: Required<CarLimits>): { roots: CID[]; blocks: CarBlocks } | null {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0 || bytes.length > lim.maxBytes) return null
  const h = varintAt(bytes, 0)
  if (!h || h[0] === 0) return null
  const [headerLen, headerStart] = h
  const headerEnd = headerStart + headerLen
  if (headerEnd > bytes.length) return null
  // {"roots": [link...], "version": 1}
  const header = bytes.subarray(0, headerEnd)
  if (header[headerStart] !== 0xa2 || !fixedBytesAt(header, headerStart + 1, CAR_KEY_ROOTS)) return null
  const at: FixedPos = { pos: 0 }
  const n = fixedArg(header, headerStart + 1 + CAR_KEY_ROOTS.length, 4, at)
  if (n < 0 || n > lim.maxRoots) return null
  const roots: CID[] = []
  for (let i = 0; i < n; i++) {
    const cid = fixedCid(header, at)
    if (!cid) return null
    roots.push(cid)
  }
  if (!fixedBytesAt(header, at.pos, CAR_KEY_VERSION) || at.pos + CAR_KEY_VERSION.length + 1 !== headerEnd) return null
  if (header[headerEnd - 1] !== 0x01) return null

  const blocks = new CarBlocks()
  let pos = headerEnd
  let count = 0
  while (pos < bytes.length) {
    if (++count > lim.maxBlocks) return null
    const sec = varintAt(bytes, pos)
    if (!sec || sec[0] === 0) return null
    const [sectionLen, start] = sec
    const end = start + sectionLen
    // CIDv1, a one-byte codec, sha2-256, 32 bytes
    if (end > bytes.length || start + 36 > end) return null
    if (bytes[start] !== 1 || bytes[start + 1]! >= 0x80 || bytes[start + 2] !== SHA2_256 || bytes[start + 3] !== 0x20) return null
    const data = bytes.subarray(start + 36, end)
    if (data.length > lim.maxBlockBytes) return null
    sha256Into(data, DIGEST, 0)
    for (let i = 0; i < 32; i++) if (DIGEST[i] !== bytes[start + 4 + i]) return null
    blocks.add(bytes.subarray(start, start + 36), data)
    pos = end
  }
  return { roots, blocks }
}

/**
 * `readCarSync` for a commit's slice, with the blocks as CarBlocks: a canonical CAR is read by
 * `readCanonicalCar`, anything else by `readCarSync` (which accepts it, or throws the CarError it always threw);
 * `fixedShape: false` always uses `readCarSync` (the tests' oracle).
 */
export function readCarSlice(
  bytes: Uint8Array,
  limits: CarLimits = {},
  opts: { fixedShape?: boolean } = {},
): { roots: CID[]; blocks: CarBlocks } {
  const fast = opts.fixedShape === false ? null : readCanonicalCar(bytes, { ...DEFAULT_CAR_LIMITS, ...limits })
  if (fast) return fast
  const car = readCarSync(bytes, limits)
  return { roots: car.roots, blocks: CarBlocks.fromBlockMap(car.blocks) }
}

/** Async form of `readCarSync` (the contract's `readCar`). */
export async function readCar(bytes: Uint8Array, limits?: CarLimits): Promise<CarContents> {
  return readCarSync(bytes, limits)
}

/** Like `readCar`, but requires a first root and returns it as `root`. */
export async function readCarWithRoot(
  bytes: Uint8Array,
  limits?: CarLimits,
): Promise<{ root: CID; roots: CID[]; blocks: BlockMap }> {
  const car = readCarSync(bytes, limits)
  const root = car.roots[0]
  if (!root) throw new CarError('no-root', 'header has no root')
  return { root, roots: car.roots, blocks: car.blocks }
}

// ---------------------------------------------------------------------------------------------
// writing

/** A block as produced by iterating a BlockMap (`[cid, bytes]`) or as `{cid, bytes}`. */
export type CarBlockInput = readonly [CidLike, Uint8Array] | { cid: CidLike; bytes: Uint8Array }
type CidLike = { bytes: Uint8Array }

function blockParts(b: CarBlockInput): [Uint8Array, Uint8Array] {
  if (Array.isArray(b)) return [(b as readonly [CidLike, Uint8Array])[0].bytes, (b as readonly [CidLike, Uint8Array])[1]]
  const o = b as { cid: CidLike; bytes: Uint8Array }
  return [o.cid.bytes, o.bytes]
}

function rootList(root: CID | CID[] | null | undefined): CID[] {
  if (!root) return []
  return Array.isArray(root) ? root : [root]
}

/** `{"roots": [...], "version": 1}` in canonical key order: the map head and the key "roots" */
const HEADER_START = Uint8Array.of(0xa2, 0x65, 0x72, 0x6f, 0x6f, 0x74, 0x73)
/** the key "version" and the value 1 */
const HEADER_END = Uint8Array.of(0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x01)

/**
 * Encodes the CAR header (length prefix included). Written by hand (one per `#commit` frame and export):
 * the bytes are those `cborEncode({ version: 1, roots })` gives (test/repo/car.test.ts checks it).
 */
export function encodeCarHeader(root: CID | CID[] | null | undefined): Uint8Array {
  const roots = rootList(root)
  let len = HEADER_START.length + cborHeadLength(roots.length) + HEADER_END.length
  for (const cid of roots) {
    if (!CID.asCID(cid)) return encodeCarHeaderGeneric(roots)
    len += cborCidLength(cid.bytes.length)
  }
  const out = new Uint8Array(varintLength(len) + len)
  let p = writeVarint(len, out, 0)
  out.set(HEADER_START, p)
  p = writeCborHead(out, p + HEADER_START.length, 4, roots.length)
  for (const cid of roots) p = writeCborCid(out, p, cid.bytes)
  out.set(HEADER_END, p)
  return out
}

function encodeCarHeaderGeneric(roots: CID[]): Uint8Array {
  const header = cborEncode({ version: 1, roots })
  const out = new Uint8Array(varintLength(header.length) + header.length)
  out.set(header, writeVarint(header.length, out, 0))
  return out
}

/** Encodes one block section (length prefix, CID, data). */
export function encodeCarBlock(cid: CidLike, bytes: Uint8Array): Uint8Array {
  const len = cid.bytes.length + bytes.length
  const out = new Uint8Array(varintLength(len) + len)
  let pos = writeVarint(len, out, 0)
  out.set(cid.bytes, pos)
  out.set(bytes, pos + cid.bytes.length)
  return out
}

/** Writes a whole CAR into one buffer. `blocks` may be a BlockMap or any iterable of blocks. */
export function writeCar(root: CID | CID[] | null, blocks: Iterable<CarBlockInput>): Uint8Array {
  const header = encodeCarHeader(root)
  const parts: [Uint8Array, Uint8Array][] = []
  let total = header.length
  for (const b of blocks) {
    const p = blockParts(b)
    const len = p[0].length + p[1].length
    total += varintLength(len) + len
    parts.push(p)
  }
  const out = new Uint8Array(total)
  out.set(header, 0)
  let pos = header.length
  for (const [cid, data] of parts) {
    pos = writeVarint(cid.length + data.length, out, pos)
    out.set(cid, pos)
    pos += cid.length
    out.set(data, pos)
    pos += data.length
  }
  return out
}

/**
 * Streams a CAR: header first, then blocks as they come from `blocks`, coalesced into chunks of
 * about `chunkSize` bytes (default 64 KiB) so a large export does not become millions of tiny
 * writes. Memory use is one chunk plus whatever the block source holds.
 */
export async function* carStream(
  root: CID | CID[] | null,
  blocks: AsyncIterable<CarBlockInput> | Iterable<CarBlockInput>,
  opts: { chunkSize?: number } = {},
): AsyncGenerator<Uint8Array, void, unknown> {
  const chunkSize = opts.chunkSize ?? 64 * 1024
  let buf = new Uint8Array(chunkSize)
  let used = 0
  const header = encodeCarHeader(root)
  if (header.length >= chunkSize) yield header
  else {
    buf.set(header, 0)
    used = header.length
  }
  for await (const b of blocks as AsyncIterable<CarBlockInput>) {
    const [cid, data] = blockParts(b)
    const len = cid.length + data.length
    const need = varintLength(len) + len
    if (used + need > chunkSize && used > 0) {
      yield buf.subarray(0, used)
      buf = new Uint8Array(chunkSize)
      used = 0
    }
    if (need > chunkSize) {
      const out = new Uint8Array(need)
      let pos = writeVarint(len, out, 0)
      out.set(cid, pos)
      out.set(data, pos + cid.length)
      yield out
      continue
    }
    used = writeVarint(len, buf, used)
    buf.set(cid, used)
    used += cid.length
    buf.set(data, used)
    used += data.length
  }
  if (used > 0) yield buf.subarray(0, used)
}

/** Collects an async iterable of chunks into one buffer. */
export async function concatChunks(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let total = 0
  for await (const c of chunks as AsyncIterable<Uint8Array>) {
    parts.push(c)
    total += c.length
  }
  const out = new Uint8Array(total)
  let pos = 0
  for (const p of parts) {
    out.set(p, pos)
    pos += p.length
  }
  return out
}
