/**
 * Commit objects and revs: decoding a signed commit from its block, checking its signature with
 * the fast-path verifier, and reading the time out of a TID rev.
 */
import { CID } from 'multiformats/cid'
import { verifySignature } from '../crypto/index.js'
import { cborDecode, cborEncode } from '../data/index.js'
import { fixedArg, fixedAscii, fixedBytesAt, fixedCid, type FixedPos } from '../data/cbor-fixed.js'

/** A decoded repo commit (format version 3). Unknown extra fields are kept in `raw`. */
export interface SignedCommit {
  did: string
  version: number
  data: CID
  rev: string
  prev: CID | null
  sig: Uint8Array
}

export class CommitDecodeError extends Error {
  constructor(
    public reason: 'malformed' | 'bad-version',
    message: string,
  ) {
    super(message)
    this.name = 'CommitDecodeError'
  }
}

const TID_RE = /^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$/
const B32_SORT = '234567abcdefghijklmnopqrstuvwxyz'

export function isTid(s: unknown): s is string {
  return typeof s === 'string' && TID_RE.test(s)
}

/** Milliseconds since the epoch encoded in a TID (its top 53 bits are microseconds). */
export function tidTimestampMs(tid: string): number {
  let v = 0n
  for (const ch of tid) v = v * 32n + BigInt(B32_SORT.indexOf(ch))
  return Number(v >> 10n) / 1000
}

// ---------------------------------------------------------------------------------------------------
// fixed-shape reader: a commit as every writer encodes it, read without the generic decoder

const key = (name: string) => Uint8Array.from([0x60 | name.length, ...new TextEncoder().encode(name)])
const K_DID = key('did')
const K_REV = key('rev')
const K_SIG = key('sig')
const K_DATA = key('data')
const K_PREV = key('prev')
const K_VERSION = key('version')

/**
 * A commit block in its canonical encoding: a map of exactly did, rev, sig, data, prev, version (DAG-CBOR key
 * order), did and rev ASCII text, sig a byte string, data a link, prev a link or null, version an unsigned
 * integer below 24, shortest heads, nothing after it. Gives the object `cborDecode` gives for it and where the
 * sig entry (key and value) lies, so the unsigned encoding is the block without that entry; null for any other
 * byte string (the caller decodes it with `cborDecode`, so what is accepted or refused, and why, does not change).
 */
export function readCanonicalCommit(b: Uint8Array): { obj: Record<string, unknown>; sigStart: number; sigEnd: number } | null {
  if (b[0] !== 0xa6) return null
  const at: FixedPos = { pos: 1 }
  if (!fixedBytesAt(b, 1, K_DID)) return null
  at.pos = 1 + K_DID.length
  const did = fixedAscii(b, at)
  if (did === undefined || !fixedBytesAt(b, at.pos, K_REV)) return null
  at.pos += K_REV.length
  const rev = fixedAscii(b, at)
  if (rev === undefined || !fixedBytesAt(b, at.pos, K_SIG)) return null
  const sigStart = at.pos
  const sigLen = fixedArg(b, sigStart + K_SIG.length, 2, at)
  if (sigLen < 0 || at.pos + sigLen > b.length) return null
  const sig = b.subarray(at.pos, at.pos + sigLen)
  const sigEnd = at.pos + sigLen
  if (!fixedBytesAt(b, sigEnd, K_DATA)) return null
  at.pos = sigEnd + K_DATA.length
  const data = fixedCid(b, at)
  if (!data || !fixedBytesAt(b, at.pos, K_PREV)) return null
  at.pos += K_PREV.length
  let prev: CID | null = null
  if (b[at.pos] === 0xf6) at.pos++
  else {
    const c = fixedCid(b, at)
    if (!c) return null
    prev = c
  }
  if (!fixedBytesAt(b, at.pos, K_VERSION)) return null
  const v = b[at.pos + K_VERSION.length]
  if (v === undefined || v >= 24) return null
  if (at.pos + K_VERSION.length + 1 !== b.length) return null
  return { obj: { did, rev, sig, data, prev, version: v }, sigStart, sigEnd }
}

/**
 * Decodes a commit block. Throws `CommitDecodeError` ('bad-version' for a map whose version is not
 * 3, 'malformed' for anything else that is not a v3 commit). The unsigned encoding (the map without
 * `sig`, re-encoded as DAG-CBOR) is returned alongside, ready for signature checking. A canonically encoded
 * block is read by `readCanonicalCommit` (the unsigned encoding is then the block minus its sig entry);
 * `fixedShape: false` always uses the generic decoder (the tests' oracle).
 */
export function decodeCommit(bytes: Uint8Array, opts: { fixedShape?: boolean } = {}): { commit: SignedCommit; unsignedBytes: Uint8Array } {
  const fixed = opts.fixedShape === false ? null : readCanonicalCommit(bytes)
  let obj: unknown = fixed?.obj
  if (!fixed) {
    try {
      obj = cborDecode(bytes)
    } catch (err) {
      throw new CommitDecodeError('malformed', `commit block is not DAG-CBOR: ${(err as Error).message}`)
    }
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj) || obj instanceof Uint8Array || CID.asCID(obj)) {
    throw new CommitDecodeError('malformed', 'commit block is not a map')
  }
  const c = obj as Record<string, unknown>
  if (c.version !== 3) {
    throw new CommitDecodeError('bad-version', `commit version is ${JSON.stringify(c.version ?? null)}, expected 3`)
  }
  if (typeof c.did !== 'string' || c.did.length === 0) throw new CommitDecodeError('malformed', 'commit did missing')
  const data = CID.asCID(c.data)
  if (!data) throw new CommitDecodeError('malformed', 'commit data is not a CID')
  if (!isTid(c.rev)) throw new CommitDecodeError('malformed', 'commit rev is not a TID')
  if (!('prev' in c)) throw new CommitDecodeError('malformed', 'commit prev field missing (must be present, may be null)')
  let prev: CID | null = null
  if (c.prev !== null) {
    prev = CID.asCID(c.prev)
    if (!prev) throw new CommitDecodeError('malformed', 'commit prev is not a CID or null')
  }
  if (!(c.sig instanceof Uint8Array)) throw new CommitDecodeError('malformed', 'commit sig is not bytes')
  const commit: SignedCommit = { did: c.did, version: 3, data, rev: c.rev, prev, sig: c.sig }
  if (fixed) {
    // the canonical encoding of the map without sig: one entry fewer, the other entries' bytes unchanged
    const { sigStart, sigEnd } = fixed
    const unsignedBytes = new Uint8Array(bytes.length - (sigEnd - sigStart))
    unsignedBytes[0] = 0xa5
    unsignedBytes.set(bytes.subarray(1, sigStart), 1)
    unsignedBytes.set(bytes.subarray(sigEnd), sigStart)
    return { commit, unsignedBytes }
  }
  const { sig: _sig, ...unsigned } = c
  return { commit, unsignedBytes: cborEncode(unsigned) }
}

/**
 * True when `sig` over `unsignedBytes` verifies with the did:key. An unparseable key counts as a
 * failed check (the caller should refresh the identity), never as an exception.
 */
export function checkCommitSignature(didKey: string, unsignedBytes: Uint8Array, sig: Uint8Array): boolean {
  try {
    return verifySignature(didKey, unsignedBytes, sig)
  } catch {
    return false
  }
}
