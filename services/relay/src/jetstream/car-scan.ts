/**
 * The record blocks of a commit's CAR slice, found without hashing. Jetstream events are built from the
 * relay's outbound events, whose CAR slices the relay verified on ingest (every block hashed against its
 * CID, the MST inverted) before logging them; hashing them again for each conversion was three quarters of
 * the conversion's CPU (measured: 144 of 190 µs per one-post commit). This scan only walks the sections
 * and compares CID bytes. Anything it does not expect (a malformed section, a CID it cannot read) makes it
 * give up, and the caller falls back to core's verifying `readCarSync`, which is also its test oracle.
 */
import type { CID } from '@stratos/core/data'
import { readVarint } from '@stratos/core/repo'

/** The blocks of `wanted` found in `car` (by the CID's string form); null when the scan gives up. */
export function findBlocks(car: Uint8Array, wanted: readonly CID[]): Map<string, Uint8Array> | null {
  try {
    return scan(car, wanted)
  } catch {
    return null
  }
}

function scan(car: Uint8Array, wanted: readonly CID[]): Map<string, Uint8Array> | null {
  const buf = Buffer.from(car.buffer, car.byteOffset, car.byteLength)
  const keys = new Map<string, string>()
  for (const cid of wanted) keys.set(Buffer.from(cid.bytes).toString('latin1'), cid.toString())
  const found = new Map<string, Uint8Array>()
  const [headerLen, afterHeaderLen] = readVarint(car, 0)
  let pos = afterHeaderLen + headerLen
  if (headerLen === 0 || pos > car.length) return null
  while (pos < car.length && found.size < keys.size) {
    const [sectionLen, sectionStart] = readVarint(car, pos)
    const end = sectionStart + sectionLen
    if (sectionLen === 0 || end > car.length) return null
    // CIDv1: version, codec, multihash code, digest length, digest
    let p = sectionStart
    let version: number
    ;[version, p] = readVarint(car, p)
    if (version !== 1) return null
    ;[, p] = readVarint(car, p)
    ;[, p] = readVarint(car, p)
    let digestLen: number
    ;[digestLen, p] = readVarint(car, p)
    const cidEnd = p + digestLen
    if (cidEnd > end) return null
    const name = keys.get(buf.toString('latin1', sectionStart, cidEnd))
    if (name !== undefined) found.set(name, car.subarray(cidEnd, end))
    pos = end
  }
  return found
}
