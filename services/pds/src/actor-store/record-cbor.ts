import { CID } from 'multiformats/cid'
import { writeCborCid, writeCborHead } from '@stratos/core/data'

/**
 * DAG-CBOR bytes of a record value written by hand, for the write path (a record is encoded once per write):
 * the bytes core's `cborEncode` gives (test/record-cbor.test.ts checks it against it). It takes the common
 * shapes only: plain objects with ASCII keys, arrays, well-formed strings, booleans, null, safe integers,
 * CIDs and bytes. Anything else (floats, undefined, bigints, non-ASCII keys, lone surrogates, BlobRef
 * instances, deep nesting...) gives undefined: the caller then uses `cborEncode`, which encodes it or throws
 * the data-model error.
 */
export function encodeRecordCbor(value: unknown): Uint8Array | undefined {
  writer.reset()
  return writer.put(value, 0) ? writer.bytes() : undefined
}

/** Deeper values are left to cborEncode (which enforces the data model's own limit). */
const MAX_DEPTH = 32

class CborWriter {
  /** scratch space, kept between records (an encoding is synchronous: one at a time) */
  private buf = Buffer.allocUnsafe(16 * 1024)
  private p = 0

  reset(): void {
    this.p = 0
    // a large record's space is not kept
    if (this.buf.length > 64 * 1024) this.buf = Buffer.allocUnsafe(16 * 1024)
  }

  /** a copy of what was written (a Buffer, as cborEncode gives) */
  bytes(): Uint8Array {
    const out = Buffer.allocUnsafe(this.p)
    this.buf.copy(out, 0, 0, this.p)
    return out
  }

  private room(n: number): void {
    if (this.p + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.p + n))
    this.buf.copy(next, 0, 0, this.p)
    this.buf = next
  }

  private head(major: number, n: number): void {
    this.room(9)
    this.p = writeCborHead(this.buf, this.p, major, n)
  }

  /** An ASCII string's bytes; false when it is not ASCII. */
  private ascii(s: string): boolean {
    const n = s.length
    for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return false
    this.head(3, n)
    this.room(n)
    for (let i = 0; i < n; i++) this.buf[this.p + i] = s.charCodeAt(i)
    this.p += n
    return true
  }

  private string(s: string): boolean {
    if (s.length < 64 && this.ascii(s)) return true
    // lone surrogates: left to cborEncode (isWellFormed is in Node 20, not in this TypeScript lib)
    if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) return false
    const n = Buffer.byteLength(s, 'utf8')
    this.head(3, n)
    this.room(n)
    this.p += this.buf.write(s, this.p, 'utf8')
    return true
  }

  put(v: unknown, depth: number): boolean {
    switch (typeof v) {
      case 'string':
        return this.string(v)
      case 'boolean':
        this.room(1)
        this.buf[this.p++] = v ? 0xf5 : 0xf4
        return true
      case 'number':
        if (!Number.isSafeInteger(v)) return false
        if (v >= 0) this.head(0, v)
        else this.head(1, -1 - v)
        return true
      case 'object': {
        if (v === null) {
          this.room(1)
          this.buf[this.p++] = 0xf6
          return true
        }
        if (depth >= MAX_DEPTH) return false
        if (Array.isArray(v)) {
          this.head(4, v.length)
          for (let i = 0; i < v.length; i++) {
            if (!(i in v) || !this.put(v[i], depth + 1)) return false
          }
          return true
        }
        if (v instanceof Uint8Array) {
          this.head(2, v.length)
          this.room(v.length)
          this.buf.set(v, this.p)
          this.p += v.length
          return true
        }
        const cid = CID.asCID(v)
        if (cid) {
          this.room(cid.bytes.length + 13)
          this.p = writeCborCid(this.buf, this.p, cid.bytes)
          return true
        }
        const proto = Object.getPrototypeOf(v)
        if (proto !== Object.prototype && proto !== null) return false
        const keys = Object.keys(v)
        // DAG-CBOR's map order: shorter keys first, then bytewise (code units are bytes for ASCII keys)
        keys.sort((a, b) => (a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0))
        this.head(5, keys.length)
        const obj = v as Record<string, unknown>
        for (const k of keys) {
          if (!this.ascii(k) || !this.put(obj[k], depth + 1)) return false
        }
        return true
      }
      default:
        return false
    }
  }
}

const writer = new CborWriter()
