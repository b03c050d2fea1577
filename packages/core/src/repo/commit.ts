/**
 * Commit objects and revs: decoding a signed commit from its block, checking its signature with
 * the fast-path verifier, and reading the time out of a TID rev.
 */
import { CID } from 'multiformats/cid'
import { verifySignature } from '../crypto/index.js'
import { cborDecode, cborEncode } from '../data/index.js'

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

/**
 * Decodes a commit block. Throws `CommitDecodeError` ('bad-version' for a map whose version is not
 * 3, 'malformed' for anything else that is not a v3 commit). The unsigned encoding (the map without
 * `sig`, re-encoded as DAG-CBOR) is returned alongside, ready for signature checking.
 */
export function decodeCommit(bytes: Uint8Array): { commit: SignedCommit; unsignedBytes: Uint8Array } {
  let obj: unknown
  try {
    obj = cborDecode(bytes)
  } catch (err) {
    throw new CommitDecodeError('malformed', `commit block is not DAG-CBOR: ${(err as Error).message}`)
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
  const { sig, ...unsigned } = c
  return {
    commit: { did: c.did, version: 3, data, rev: c.rev, prev, sig },
    unsignedBytes: cborEncode(unsigned),
  }
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
