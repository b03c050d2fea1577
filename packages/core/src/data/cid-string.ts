/**
 * A CID's string form (what `cid.toString()` returns) without multiformats' per-CID cache: a v1 CID is 'b' and
 * its bytes in lowercase RFC 4648 base32 without padding, written as ASCII into one scratch buffer and read
 * back as one string. `cid.toString()` builds the string a character at a time and keeps it in a WeakMap entry
 * per CID object; for the fresh CID objects of a hot path (one per event) that is ~1.5 KB of garbage per call.
 */
import type { CID } from 'multiformats/cid'
import { latin1 } from './cbor-fixed.js'

const ALPHABET = new TextEncoder().encode('abcdefghijklmnopqrstuvwxyz234567')
let scratch = new Uint8Array(128)

/** `cid.toString()` (base32 for v1; a v0 CID keeps its base58btc form). */
export function cidString(cid: CID): string {
  if (cid.version !== 1) return cid.toString()
  const bytes = cid.bytes
  const need = 1 + Math.ceil((bytes.length * 8) / 5)
  if (scratch.length < need) scratch = new Uint8Array(need * 2)
  const out = scratch
  out[0] = 0x62 // 'b'
  let j = 1
  let acc = 0
  let bits = 0
  for (let i = 0; i < bytes.length; i++) {
    acc = ((acc << 8) | bytes[i]!) & 0xfff
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out[j++] = ALPHABET[(acc >> bits) & 31]!
    }
  }
  if (bits > 0) out[j++] = ALPHABET[(acc << (5 - bits)) & 31]!
  return latin1(out, 0, j)
}
