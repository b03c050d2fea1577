/**
 * zstd dictionaries for Jetstream compression, supplied by the operator as files (Jetstream's published
 * dictionaries are not shipped with Stratos). A dictionary must be a structured zstd dictionary (RFC 8878
 * §5: magic 0xEC30A437, then its 32-bit id), which is what `zstd --train` and Jetstream publish.
 */
import { readFileSync } from 'node:fs'

export interface ZstdDictionary {
  /** where it was read from (for logs) */
  path: string
  /** the dictionary id in its header (the id v2 clients ask for with zstdDictionary=<id>) */
  id: number
  bytes: Uint8Array
}

const MAGIC = 0xec30a437
const MAX_BYTES = 16 * 1024 * 1024

/** Parses dictionary bytes; returns an error message when they are not a usable structured dictionary. */
export function parseZstdDictionary(bytes: Uint8Array, path: string): ZstdDictionary | string {
  if (bytes.byteLength < 8) return `${path} is not a zstd dictionary (${bytes.byteLength} bytes)`
  if (bytes.byteLength > MAX_BYTES) return `${path} is larger than ${MAX_BYTES} bytes`
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0, true) !== MAGIC) {
    return `${path} is not a structured zstd dictionary (no 0xEC30A437 magic; make one with zstd --train)`
  }
  const id = view.getUint32(4, true)
  if (id === 0) return `${path} has dictionary id 0 (reserved); train it with an id (zstd --train --dictID=N)`
  return { path, id, bytes }
}

/** Reads a dictionary file; returns an error message when it cannot be read or is not a dictionary. */
export function readZstdDictionary(path: string): ZstdDictionary | string {
  let bytes: Uint8Array
  try {
    bytes = readFileSync(path)
  } catch (err) {
    return `cannot read ${path}: ${(err as Error).message}`
  }
  return parseZstdDictionary(bytes, path)
}
