/**
 * A strict structural scan of CBOR bytes, run before @ipld/dag-cbor decodes them. It enforces the atproto
 * (DRISL) restrictions that the decoder alone does not: no floats, no simple values other than
 * false/true/null, no tags other than 42 (and 42 must wrap a byte string), no indefinite lengths,
 * string map keys only, integers within signed 64-bit, and a nesting-depth limit. It also refuses the map
 * key "__proto__": the decoder would make it the object's prototype (no own key), so the decoded value
 * would differ from the bytes (and their CID, their signature). It also finds where each top-level item
 * ends, for concatenated objects (event-stream frames).
 */
import { CborTruncatedError, DataModelError } from './errors.js'

export interface CborLimits {
  /** Maximum nesting depth of arrays/maps/tags (default 256). */
  maxDepth?: number
}

export const DEFAULT_MAX_DEPTH = 256

const TWO_POW_63 = 2n ** 63n

/** UTF-8 bytes of "__proto__". */
const PROTO_KEY = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f]

function isProtoKey(b: Uint8Array, at: number): boolean {
  for (let i = 0; i < 9; i++) if (b[at + i] !== PROTO_KEY[i]) return false
  return true
}

class Scanner {
  pos: number
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly maxDepth: number,
  ) {
    this.pos = start
  }

  fail(msg: string): never {
    throw new DataModelError(`invalid CBOR at byte ${this.pos}: ${msg}`)
  }

  truncated(): never {
    throw new CborTruncatedError(`invalid CBOR at byte ${this.pos}: unexpected end of data`)
  }

  /** Reads an item head; returns [major, additional info, argument]. */
  head(): [number, number, number | bigint] {
    const b = this.bytes
    if (this.pos >= b.length) this.truncated()
    const ib = b[this.pos++]!
    const major = ib >> 5
    const ai = ib & 0x1f
    if (ai < 24) return [major, ai, ai]
    if (major === 7 && ai >= 25 && ai <= 27) this.fail('floats are not allowed')
    if (ai === 31) this.fail('indefinite-length items are not allowed')
    if (ai > 27) this.fail(`reserved additional info ${ai}`)
    const size = 1 << (ai - 24) // 1, 2, 4, 8
    if (this.pos + size > b.length) this.truncated()
    let value: number | bigint
    if (size === 8) {
      const hi = ((b[this.pos]! << 24) | (b[this.pos + 1]! << 16) | (b[this.pos + 2]! << 8) | b[this.pos + 3]!) >>> 0
      const lo =
        ((b[this.pos + 4]! << 24) | (b[this.pos + 5]! << 16) | (b[this.pos + 6]! << 8) | b[this.pos + 7]!) >>> 0
      value = hi < 0x200000 ? hi * 0x100000000 + lo : (BigInt(hi) << 32n) | BigInt(lo)
    } else {
      let v = 0
      for (let i = 0; i < size; i++) v = v * 256 + b[this.pos + i]!
      value = v
    }
    this.pos += size
    return [major, ai, value]
  }

  /** Length argument of a string/array/map, bounded by the bytes left (each element needs >= 1 byte). */
  length(arg: number | bigint, perItem: number): number {
    const left = this.bytes.length - this.pos
    if (typeof arg === 'bigint') this.fail('length exceeds the data')
    if (arg * perItem > left) this.truncated()
    return arg
  }

  item(depth: number): void {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`)
    const [major, ai, arg] = this.head()
    switch (major) {
      case 0:
      case 1:
        if (typeof arg === 'bigint' && arg >= TWO_POW_63) this.fail('integer outside the signed 64-bit range')
        return
      case 2:
      case 3:
        this.pos += this.length(arg, 1)
        return
      case 4: {
        const n = this.length(arg, 1)
        for (let i = 0; i < n; i++) this.item(depth + 1)
        return
      }
      case 5: {
        const n = this.length(arg, 2)
        for (let i = 0; i < n; i++) {
          const b = this.bytes[this.pos]
          if (b === undefined || b >> 5 !== 3) this.fail('map keys must be strings')
          // the key is read here (a text string: no depth, no nesting) so its bytes can be compared cheaply
          const keyLen = this.length(this.head()[2], 1)
          if (keyLen === 9 && isProtoKey(this.bytes, this.pos)) {
            this.fail('the map key "__proto__" is not allowed (a JavaScript object cannot hold it faithfully)')
          }
          this.pos += keyLen
          this.item(depth + 1)
        }
        return
      }
      case 6: {
        if (arg !== 42) this.fail(`tag ${String(arg)} is not allowed (only 42, CID links)`)
        const b = this.bytes[this.pos]
        if (b === undefined || b >> 5 !== 2) this.fail('tag 42 must wrap a byte string')
        this.item(depth + 1)
        return
      }
      default: // 7
        if (ai === 20 || ai === 21 || ai === 22) return // false, true, null
        if (ai === 23) this.fail('undefined is not allowed')
        this.fail(`simple value ${String(arg)} is not allowed`)
    }
  }
}

/** Checks one CBOR item starting at `start`; returns the offset just past it. Throws DataModelError. */
export function scanCborItem(bytes: Uint8Array, start = 0, limits: CborLimits = {}): number {
  const s = new Scanner(bytes, start, limits.maxDepth ?? DEFAULT_MAX_DEPTH)
  s.item(0)
  return s.pos
}

// ---------------------------------------------------------------------------------------------------
// strict scan: everything the decoder (@ipld/dag-cbor, strict) refuses as well

/** Smallest argument each additional-info size may carry in its shortest form (strict decoding). */
const MIN_ARG = [24, 256, 65536, 4294967296]

const utf8 = new TextDecoder()

/** A tag-42 payload (with its leading 0x00): true when `isValidCid` accepts it. */
export type CidCheck = (payload: Uint8Array) => boolean

class StrictScanner extends Scanner {
  /** the first refusal that does not stop the structural scan (reported once the scan is through) */
  problem: string | null = null
  constructor(
    bytes: Uint8Array,
    start: number,
    maxDepth: number,
    private readonly cidOk: CidCheck,
  ) {
    super(bytes, start, maxDepth)
  }

  note(msg: string): void {
    this.problem ??= `invalid CBOR at byte ${this.pos}: ${msg}`
  }

  override head(): [number, number, number | bigint] {
    const h = super.head()
    const ai = h[1]
    if (ai >= 24 && ai <= 27 && h[0] !== 7) {
      const v = h[2]
      if ((typeof v === 'number' ? v : Number(v)) < MIN_ARG[ai - 24]!) this.note('integer or length not in its shortest form')
    }
    return h
  }

  override item(depth: number): void {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`)
    const b = this.bytes
    const major = b[this.pos] === undefined ? -1 : b[this.pos]! >> 5
    if (major === 5) return this.map(depth)
    if (major === 6) {
      const at = this.pos
      super.item(depth) // checks the tag (42, on a byte string) and its length
      // the payload: re-read the byte string head (already checked) to find it
      this.pos = at
      this.head() // the tag
      const [, , len] = this.head()
      const start = this.pos
      this.pos += len as number
      if (!this.cidOk(b.subarray(start, this.pos))) this.note('tag 42 does not hold a valid CID')
      return
    }
    super.item(depth)
  }

  private map(depth: number): void {
    const [, , arg] = this.head()
    const n = this.length(arg, 2)
    const b = this.bytes
    // keys seen in this map: compared as the decoder compares them (as decoded strings)
    let small: number[] | null = null
    let seen: Set<string> | null = null
    for (let i = 0; i < n; i++) {
      const kb = b[this.pos]
      if (kb === undefined || kb >> 5 !== 3) this.fail('map keys must be strings')
      const keyLen = this.length(this.head()[2], 1)
      const keyAt = this.pos
      if (keyLen === 9 && isProtoKeyAt(b, keyAt)) {
        this.fail('the map key "__proto__" is not allowed (a JavaScript object cannot hold it faithfully)')
      }
      this.pos += keyLen
      if (this.problem === null) {
        if (n <= 16) {
          small ??= []
          for (let j = 0; j < small.length; j += 2) {
            if (sameKey(b, small[j]!, small[j + 1]!, keyAt, keyLen)) {
              this.note('repeated map key')
              break
            }
          }
          small.push(keyAt, keyLen)
        } else {
          seen ??= new Set()
          const k = utf8.decode(b.subarray(keyAt, keyAt + keyLen))
          if (seen.has(k)) this.note('repeated map key')
          seen.add(k)
        }
      }
      this.item(depth + 1)
    }
  }
}

function isProtoKeyAt(b: Uint8Array, at: number): boolean {
  for (let i = 0; i < 9; i++) if (b[at + i] !== PROTO_KEY[i]) return false
  return true
}

function isAscii(b: Uint8Array, at: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (b[at + i]! >= 0x80) return false
  return true
}

/** Two keys the decoder would see as the same string (invalid UTF-8 decodes to U+FFFD, so compare decoded). */
function sameKey(b: Uint8Array, a: number, aLen: number, c: number, cLen: number): boolean {
  if (aLen === cLen) {
    let eq = true
    for (let i = 0; i < aLen; i++) {
      if (b[a + i] !== b[c + i]) {
        eq = false
        break
      }
    }
    if (eq) return true
  }
  if (isAscii(b, a, aLen) && isAscii(b, c, cLen)) return false
  return utf8.decode(b.subarray(a, a + aLen)) === utf8.decode(b.subarray(c, c + cLen))
}

/**
 * `scanCborItem` plus everything the strict DAG-CBOR decoder refuses: integers and lengths not in their
 * shortest form, repeated map keys (as decoded strings) and tag-42 payloads that are not a 0x00-prefixed
 * valid CID (`cidOk`). An item this accepts decodes with `cborDecode` (it throws the same way when it does
 * not), without building anything: what a reader that only needs a few fields checks first.
 * Structural errors (truncation included) are thrown as `scanCborItem` throws them, before any of the
 * strict refusals (the order in which a scan, then a decode, meet them).
 */
export function scanCborItemStrict(bytes: Uint8Array, start: number, cidOk: CidCheck, limits: CborLimits = {}): number {
  const s = new StrictScanner(bytes, start, limits.maxDepth ?? DEFAULT_MAX_DEPTH, cidOk)
  s.item(0)
  if (s.problem !== null) throw new DataModelError(s.problem)
  return s.pos
}
