/**
 * Labels as the spec defines them (version 1): `{ver, src, uri, cid?, val, neg?, cts, exp?, sig}`. The
 * signature is over the DAG-CBOR encoding of the label without `sig` (sha256 + ECDSA k256, compact low-S),
 * made with the labeler's #atproto_label key.
 */
import { cborEncode } from '../data/index.js'
import { verifySignature, type SigningKeypair } from '../crypto/index.js'

export interface Label {
  ver: 1
  src: string
  uri: string
  cid?: string
  val: string
  neg?: boolean
  cts: string
  exp?: string
  sig: Uint8Array
}

export type UnsignedLabel = Omit<Label, 'sig'>

/** The bytes a label's signature covers: DAG-CBOR of every field but `sig`. */
export function labelSigningBytes(label: Record<string, unknown>): Uint8Array {
  const { sig: _sig, ...rest } = label
  for (const k of Object.keys(rest)) if (rest[k] === undefined) delete rest[k]
  return cborEncode(rest)
}

export async function signLabel(label: UnsignedLabel, key: SigningKeypair): Promise<Label> {
  const sig = await key.sign(labelSigningBytes(label as unknown as Record<string, unknown>))
  return { ...label, sig }
}

/** Checks `label.sig` against a did:key (the labeler's #atproto_label key). */
export function verifyLabel(label: Record<string, unknown>, didKey: string): boolean {
  const sig = label.sig
  if (!(sig instanceof Uint8Array)) return false
  try {
    return verifySignature(didKey, labelSigningBytes(label), sig)
  } catch {
    return false
  }
}
