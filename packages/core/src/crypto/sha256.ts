/**
 * SHA-256 of bytes (or a string, as UTF-8). One-shot `crypto.hash` where Node has it (20.12+): it spares the
 * Hash object that `createHash(...).update(...).digest()` allocates; older Nodes take the Hash object path.
 *
 * The digest is asked for as a latin1 string (one character per byte) and copied into a 32-byte Uint8Array: a
 * Buffer output costs an ArrayBuffer of its own (a native allocation, freed by the GC) and a slower encoding
 * lookup in `crypto.hash` ('buffer' is not a string encoding), which together were most of the call's cost
 * for the small blocks of a commit (about 2.5x for blocks of a few hundred bytes). A 32-byte Uint8Array lives
 * in the JS heap.
 */
import * as nodeCrypto from 'node:crypto'

type OneShot = (algorithm: string, data: Uint8Array | string, outputEncoding: 'latin1') => string
const oneShot = (nodeCrypto as unknown as { hash?: OneShot }).hash

/** Writes SHA-256 of `bytes` (a string as UTF-8) into `out` at `offset` (32 bytes): no array of its own for a digest that is copied anyway. */
export const sha256Into: (bytes: Uint8Array | string, out: Uint8Array, offset: number) => void =
  typeof oneShot === 'function'
    ? (bytes, out, offset) => {
        const s = oneShot('sha256', bytes, 'latin1')
        for (let i = 0; i < 32; i++) out[offset + i] = s.charCodeAt(i)
      }
    : (bytes, out, offset) => out.set(nodeCrypto.createHash('sha256').update(bytes).digest(), offset)

export function sha256(bytes: Uint8Array | string): Uint8Array {
  const out = new Uint8Array(32)
  sha256Into(bytes, out, 0)
  return out
}
