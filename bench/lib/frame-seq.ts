/**
 * The seq of a message frame's body read in place, without allocating (the bench consumers read it from every
 * frame at every consumer: 100 × 10,150 times a run). Assumes a valid frame (the relay's); -1 when the body has
 * no integer seq. core's bodySeq is the oracle (consumer 0 compares both on every frame).
 */

/** offset just past the (valid) CBOR item at `p` */
function skip(b: Uint8Array, p: number): number {
  let pending = 1
  while (pending > 0) {
    pending--
    const ib = b[p]!
    const major = ib >> 5
    const ai = ib & 0x1f
    let arg: number
    if (ai < 24) {
      arg = ai
      p += 1
    } else if (ai === 24) {
      arg = b[p + 1]!
      p += 2
    } else if (ai === 25) {
      arg = (b[p + 1]! << 8) | b[p + 2]!
      p += 3
    } else if (ai === 26) {
      arg = ((b[p + 1]! << 24) | (b[p + 2]! << 16) | (b[p + 3]! << 8) | b[p + 4]!) >>> 0
      p += 5
    } else {
      arg = 0
      for (let i = 1; i <= 8; i++) arg = arg * 256 + b[p + i]!
      p += 9
    }
    if (major === 2 || major === 3) p += arg
    else if (major === 4) pending += arg
    else if (major === 5) pending += 2 * arg
    else if (major === 6) pending += 1
  }
  return p
}

/** the frame's seq: the header (one map) skipped, then the body's `seq` key looked up */
export function frameSeq(b: Uint8Array): number {
  let p = skip(b, 0)
  const ib = b[p]!
  if (ib >> 5 !== 5 || (ib & 0x1f) >= 24) return -1
  const n = ib & 0x1f
  p++
  for (let i = 0; i < n; i++) {
    // key: "seq" is 0x63 's' 'e' 'q'
    if (b[p] === 0x63 && b[p + 1] === 0x73 && b[p + 2] === 0x65 && b[p + 3] === 0x71) {
      const v = p + 4
      const vb = b[v]!
      if (vb >> 5 !== 0) return -1
      const ai = vb & 0x1f
      if (ai < 24) return ai
      if (ai === 24) return b[v + 1]!
      if (ai === 25) return (b[v + 1]! << 8) | b[v + 2]!
      if (ai === 26) return ((b[v + 1]! << 24) | (b[v + 2]! << 16) | (b[v + 3]! << 8) | b[v + 4]!) >>> 0
      return -1
    }
    p = skip(b, skip(b, p))
  }
  return -1
}
