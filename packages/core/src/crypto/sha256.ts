/**
 * SHA-256 of bytes (or a string, as UTF-8). One-shot `crypto.hash` where Node has it (20.12+): it spares the
 * Hash object that `createHash(...).update(...).digest()` allocates, about half the cost of hashing a block
 * of a few hundred bytes; older Nodes take the Hash object path.
 */
import * as nodeCrypto from 'node:crypto'

type OneShot = (algorithm: string, data: Uint8Array | string, outputEncoding: 'buffer') => Buffer
const oneShot = (nodeCrypto as unknown as { hash?: OneShot }).hash

export const sha256: (bytes: Uint8Array | string) => Uint8Array =
  typeof oneShot === 'function'
    ? (bytes) => {
        const d = oneShot('sha256', bytes, 'buffer')
        return new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
      }
    : (bytes) => {
        const d = nodeCrypto.createHash('sha256').update(bytes).digest()
        return new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
      }
