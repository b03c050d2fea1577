/**
 * A read-only, validating walk over an MST held in a block source. Building and editing trees is
 * left to @atproto/repo's MST; this walker exists for the two places that read untrusted trees in
 * bulk: verifying a full repo CAR and streaming a repo export in the preferred block order.
 *
 * It checks what the repository spec asks a reader to check: every node decodes to the node shape,
 * keys are valid record paths, strictly increasing (bytewise) across the whole tree, each key sits
 * on the layer its hash gives, children are exactly one layer down, prefix compression is exact,
 * and the tree is canonical (no entry-less root over a child, no empty leaf nodes).
 */
import { mstUtil } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { sha256 } from '../crypto/index.js'
import { cborDecode } from '../data/index.js'
import { fixedArg, fixedCid } from '../data/cbor-fixed.js'

/** MST layer of a key: leading zero bits of SHA-256(key), divided by 2 (fanout 4). */
export function mstKeyLayer(key: string | Uint8Array): number {
  const hash = sha256(key)
  let zeros = 0
  for (const byte of hash) {
    if (byte === 0) {
      zeros += 8
      continue
    }
    zeros += Math.clz32(byte) - 24
    break
  }
  return Math.floor(zeros / 2)
}

/** Length of the common byte prefix of two keys. */
export function commonPrefixLength(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

export class MstWalkError extends Error {
  constructor(
    public reason: 'missing-block' | 'malformed',
    message: string,
    public cid?: CID,
  ) {
    super(message)
    this.name = 'MstWalkError'
  }
}

export type MstWalkItem =
  | { type: 'node'; cid: CID; bytes: Uint8Array; layer: number }
  | { type: 'leaf'; key: string; cid: CID }

export type BlockGetter = (cid: CID) => Uint8Array | undefined | null

const utf8Strict = new TextDecoder('utf-8', { fatal: true })

export interface DecodedMstEntry {
  key: Uint8Array
  keyStr: string
  value: CID
  right: CID | null
}

// ---------------------------------------------------------------------------------------------------
// fixed-shape reader: an MST node as every writer encodes it, read without the generic decoder

/**
 * An MST node in its canonical encoding (`{e: [{k, p, t, v}...], l}`, keys in that order, shortest heads,
 * links as CIDs or null): the object `cborDecode` gives for it, read directly (no tokens, no copies). Any
 * other byte string (another shape, an odd encoding, trailing bytes) gives null: the caller decodes it with
 * `cborDecode`, so what is accepted or refused, and why, does not change.
 */
export function readCanonicalMstNode(b: Uint8Array): { e: { k: Uint8Array; p: number; t: CID | null; v: CID }[]; l: CID | null } | null {
  const at = { pos: 0 }
  // {"e": ...
  if (b[0] !== 0xa2 || b[1] !== 0x61 || b[2] !== 0x65) return null
  const n = fixedArg(b, 3, 4, at)
  if (n < 0) return null
  const e: { k: Uint8Array; p: number; t: CID | null; v: CID }[] = []
  for (let i = 0; i < n; i++) {
    let p = at.pos
    // {"k": bytes, "p": uint, "t": link | null, "v": link}
    if (b[p] !== 0xa4 || b[p + 1] !== 0x61 || b[p + 2] !== 0x6b) return null
    const klen = fixedArg(b, p + 3, 2, at)
    if (klen < 0 || at.pos + klen > b.length) return null
    const k = b.subarray(at.pos, at.pos + klen)
    p = at.pos + klen
    if (b[p] !== 0x61 || b[p + 1] !== 0x70) return null
    const prefix = fixedArg(b, p + 2, 0, at)
    if (prefix < 0) return null
    p = at.pos
    if (b[p] !== 0x61 || b[p + 1] !== 0x74) return null
    let t: CID | null = null
    if (b[p + 2] === 0xf6) {
      at.pos = p + 3
    } else {
      at.pos = p + 2
      const c = fixedCid(b, at)
      if (!c) return null
      t = c
    }
    p = at.pos
    if (b[p] !== 0x61 || b[p + 1] !== 0x76) return null
    at.pos = p + 2
    const v = fixedCid(b, at)
    if (!v) return null
    e.push({ k, p: prefix, t, v })
  }
  // "l": link | null
  let p = at.pos
  if (b[p] !== 0x61 || b[p + 1] !== 0x6c) return null
  let l: CID | null = null
  if (b[p + 2] === 0xf6) {
    p += 3
  } else {
    at.pos = p + 2
    const c = fixedCid(b, at)
    if (!c) return null
    l = c
    p = at.pos
  }
  return p === b.length ? { e, l } : null
}

/** [a-zA-Z0-9_~\-:.] as a byte table (the characters of a record path's two parts) */
const KEY_CHAR = new Uint8Array(128)
for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~-:.') KEY_CHAR[c.charCodeAt(0)] = 1

/**
 * `mstUtil.isValidMstKey` on a key's bytes (no string, no split, no regexp): at most 1024 bytes, two non-empty
 * parts of [a-zA-Z0-9_~\-:.] around one '/'. A key of these bytes is ASCII, so its string is its bytes.
 */
export function isValidMstKeyBytes(key: Uint8Array): boolean {
  const n = key.length
  if (n > 1024) return false
  let slash = -1
  for (let i = 0; i < n; i++) {
    const c = key[i]!
    if (c === 0x2f) {
      if (slash >= 0) return false
      slash = i
    } else if (c >= 0x80 || KEY_CHAR[c] === 0) return false
  }
  return slash > 0 && slash < n - 1
}

/** `isValidMstKeyBytes` on a string of char codes below 0x80 (false for any other char). */
export function isValidMstKeyAscii(key: string): boolean {
  const n = key.length
  if (n > 1024) return false
  let slash = -1
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i)
    if (c === 0x2f) {
      if (slash >= 0) return false
      slash = i
    } else if (c >= 0x80 || KEY_CHAR[c] === 0) return false
  }
  return slash > 0 && slash < n - 1
}

function asNullableCid(v: unknown, what: string, at: CID): CID | null {
  if (v === null || v === undefined) return null
  const cid = CID.asCID(v)
  if (!cid) throw new MstWalkError('malformed', `MST node ${at}: ${what} is not a CID`, at)
  return cid
}

/**
 * Decodes and checks one MST node block: the node shape, exact prefix compression, valid UTF-8 record
 * paths. (Order across nodes and layers are checked by the callers.) Throws MstWalkError('malformed').
 */
export function decodeMstNode(
  cid: CID,
  bytes: Uint8Array,
  opts: { fixedShape?: boolean } = {},
): { left: CID | null; entries: DecodedMstEntry[] } {
  let obj: unknown = opts.fixedShape === false ? null : readCanonicalMstNode(bytes)
  if (obj === null) {
    try {
      obj = cborDecode(bytes)
    } catch (err) {
      throw new MstWalkError('malformed', `MST node ${cid} is not DAG-CBOR: ${(err as Error).message}`, cid)
    }
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj) || CID.asCID(obj)) {
    throw new MstWalkError('malformed', `MST node ${cid} is not a map`, cid)
  }
  const node = obj as Record<string, unknown>
  if (!Array.isArray(node.e)) throw new MstWalkError('malformed', `MST node ${cid} has no entry array`, cid)
  const left = asNullableCid(node.l, 'l', cid)
  const entries: DecodedMstEntry[] = []
  let prev: Uint8Array = new Uint8Array(0)
  for (const [i, raw] of node.e.entries()) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new MstWalkError('malformed', `MST node ${cid}: entry ${i} is not a map`, cid)
    }
    const e = raw as Record<string, unknown>
    if (typeof e.p !== 'number' || !Number.isInteger(e.p) || e.p < 0 || !(e.k instanceof Uint8Array)) {
      throw new MstWalkError('malformed', `MST node ${cid}: entry ${i} has a bad p or k`, cid)
    }
    if (e.p > prev.length || (i === 0 && e.p !== 0)) {
      throw new MstWalkError('malformed', `MST node ${cid}: entry ${i} prefix length ${e.p} out of range`, cid)
    }
    const key = new Uint8Array(e.p + e.k.length)
    key.set(prev.subarray(0, e.p), 0)
    key.set(e.k, e.p)
    if (i > 0 && commonPrefixLength(prev, key) !== e.p) {
      throw new MstWalkError('malformed', `MST node ${cid}: entry ${i} prefix compression is not exact`, cid)
    }
    let keyStr: string
    if (isValidMstKeyBytes(key)) {
      keyStr = String.fromCharCode.apply(null, key as unknown as number[]) // ASCII
    } else {
      // refused (or an odd form): decoded and checked as text, for the message
      try {
        keyStr = utf8Strict.decode(key)
      } catch {
        throw new MstWalkError('malformed', `MST node ${cid}: entry ${i} key is not UTF-8`, cid)
      }
      if (!mstUtil.isValidMstKey(keyStr)) {
        throw new MstWalkError('malformed', `MST node ${cid}: invalid key ${JSON.stringify(keyStr)}`, cid)
      }
    }
    const value = CID.asCID(e.v)
    if (!value) throw new MstWalkError('malformed', `MST node ${cid}: entry ${i} value is not a CID`, cid)
    entries.push({ key, keyStr, value, right: asNullableCid(e.t, 't', cid) })
    prev = key
  }
  return { left, entries }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

/**
 * Walks the tree rooted at `root`: yields every node (pre-order, before its contents) and every
 * leaf (in key order). Throws `MstWalkError` on a missing node or an invalid tree.
 */
export function* walkMst(get: BlockGetter, root: CID): Generator<MstWalkItem, void, unknown> {
  let lastKey: Uint8Array | null = null
  const maxDepth = 130

  function* visit(cid: CID, expectedLayer: number | null, isRoot: boolean, depth: number): Generator<MstWalkItem> {
    if (depth > maxDepth) throw new MstWalkError('malformed', 'MST too deep', cid)
    const bytes = get(cid)
    if (!bytes) throw new MstWalkError('missing-block', `missing MST node ${cid}`, cid)
    const { left, entries } = decodeMstNode(cid, bytes)
    let layer: number
    if (entries.length > 0) {
      layer = mstKeyLayer(entries[0]!.key)
      if (expectedLayer !== null && layer !== expectedLayer) {
        throw new MstWalkError('malformed', `MST node ${cid} is on layer ${layer}, expected ${expectedLayer}`, cid)
      }
    } else {
      if (isRoot) {
        if (left) throw new MstWalkError('malformed', `MST root ${cid} has no entries but a subtree`, cid)
        layer = 0
      } else {
        if (!left) throw new MstWalkError('malformed', `MST node ${cid} is empty`, cid)
        layer = expectedLayer!
      }
    }
    if (layer === 0 && (left || entries.some((e) => e.right))) {
      throw new MstWalkError('malformed', `MST node ${cid} on layer 0 has subtrees`, cid)
    }
    yield { type: 'node', cid, bytes, layer }
    if (left) yield* visit(left, layer - 1, false, depth + 1)
    for (const e of entries) {
      if (mstKeyLayer(e.key) !== layer) {
        throw new MstWalkError('malformed', `MST node ${cid}: key ${e.keyStr} does not belong on layer ${layer}`, cid)
      }
      if (lastKey && compareBytes(lastKey, e.key) >= 0) {
        throw new MstWalkError('malformed', `MST keys out of order at ${e.keyStr}`, cid)
      }
      lastKey = e.key
      yield { type: 'leaf', key: e.keyStr, cid: e.value }
      if (e.right) yield* visit(e.right, layer - 1, false, depth + 1)
    }
  }

  yield* visit(root, null, true, 0)
}
