/**
 * The head of a DAG-CBOR item (major type + argument) in its shortest form, for the hand-written encoders of
 * hot paths (MST nodes, outbound commit frames). Arguments up to 2^53 - 1.
 */

/** Bytes of the head of an item whose argument is `n`. */
export function cborHeadLength(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9
}

/** Writes the head at `p`; returns the offset after it. */
export function writeCborHead(out: Uint8Array, p: number, major: number, n: number): number {
  const m = major << 5
  if (n < 24) {
    out[p] = m | n
    return p + 1
  }
  if (n < 0x100) {
    out[p] = m | 24
    out[p + 1] = n
    return p + 2
  }
  if (n < 0x10000) {
    out[p] = m | 25
    out[p + 1] = n >> 8
    out[p + 2] = n & 0xff
    return p + 3
  }
  if (n < 0x100000000) {
    out[p] = m | 26
    out[p + 1] = n >>> 24
    out[p + 2] = (n >> 16) & 0xff
    out[p + 3] = (n >> 8) & 0xff
    out[p + 4] = n & 0xff
    return p + 5
  }
  out[p] = m | 27
  let v = n
  for (let i = 8; i >= 1; i--) {
    out[p + i] = v % 256
    v = Math.floor(v / 256)
  }
  return p + 9
}

/** Bytes of a CID link whose CID is `cidLength` bytes (tag 42, a byte string of 0x00 and the CID). */
export function cborCidLength(cidLength: number): number {
  return 2 + cborHeadLength(cidLength + 1) + 1 + cidLength
}

/** Writes a CID link (tag 42 over a byte string: 0x00, then the CID's bytes) at `p`; returns the offset after it. */
export function writeCborCid(out: Uint8Array, p: number, cid: Uint8Array): number {
  out[p] = 0xd8
  out[p + 1] = 0x2a
  p = writeCborHead(out, p + 2, 2, cid.length + 1)
  out[p] = 0
  out.set(cid, p + 1)
  return p + 1 + cid.length
}
