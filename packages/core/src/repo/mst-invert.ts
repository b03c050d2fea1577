/**
 * MST inversion for the `#commit` hot path: given the partial tree in a commit's CAR slice, undo the
 * commit's ops and compute the root the tree had before (to compare with `prevData`).
 *
 * It works directly on the decoded node blocks: a node is decoded only when a walk reaches it (so only
 * the nodes along the touched paths, and along the merge/split spines next to them), edits are made in
 * place on those decoded nodes, and only the nodes that changed are re-encoded and hashed. A node that
 * is needed but not in the slice gives 'missing-block'.
 *
 * Links (entry values, subtrees, node CIDs) are kept as CID bytes, not CID objects: a node in its canonical
 * encoding whose links are all in the common form (CIDv1, a one-byte codec, sha2-256) is read in place, its
 * links as views into the block (`readNodeLinks`); any other node goes through `decodeMstNode` (the generic
 * decoder), so what is accepted or refused, and why, is the same. Only the resulting root becomes a CID.
 *
 * The tree is the canonical MST of the repository spec (fanout 4): a key's layer is the number of
 * leading zero bits of SHA-256(key) divided by 2; a node on layer L holds the keys of layer L in its
 * range, with subtrees on layer L-1 between them (null where the range holds no key); the root is on the
 * layer of the highest key (an empty tree is one empty node). Since that shape depends only on the key
 * set, undoing the ops in any order and rebuilding canonically gives the previous root exactly.
 *
 * @atproto/repo's MST (`invertCommitOps(..., { impl: 'oracle' })` in verify.ts) does the same work
 * through its generic, async tree; the tests compare the two on the interop vectors and on random
 * repositories.
 */
import { CID } from 'multiformats/cid'
import { DAG_CBOR_CODEC, cborHeadLength, cidForCbor, writeCborCid, writeCborHead } from '../data/index.js'
import { fixedArg, latin1, type FixedPos } from '../data/cbor-fixed.js'
import { sha256Into } from '../crypto/sha256.js'
import { MstWalkError, decodeMstNode, isValidMstKeyAscii, mstKeyLayer, type BlockGetter } from './mst-walk.js'

/** A CID as its binary form (a view into a block, or the bytes of a CID object). */
type Link = Uint8Array

/** Reads blocks by their CID's bytes (core's CarBlocks is one). */
export interface LinkSource {
  getBytes(cid: Uint8Array): Uint8Array | undefined | null
}

const linkStr = (l: Link): string => {
  try {
    return CID.decode(l).toString()
  } catch {
    return '(invalid CID)'
  }
}

function linkEquals(a: Link, b: Link): boolean {
  if (a.length !== b.length) return false
  for (let i = a.length - 1; i >= 0; i--) if (a[i] !== b[i]) return false
  return true
}

export type FastInversionResult =
  | { ok: true; root: CID }
  | { ok: false; reason: 'missing-block' | 'inversion-mismatch' | 'malformed'; message: string }

export interface InversionOp {
  action: string
  path: string
  cid: CID | null
  prev?: CID | null
}

class InversionError extends Error {
  constructor(
    readonly reason: 'missing-block' | 'inversion-mismatch' | 'malformed',
    message: string,
  ) {
    super(message)
  }
}

/** A decoded (or newly built) node. `cid` is null once the node has changed. */
class Node {
  constructor(
    readonly layer: number,
    public keys: string[],
    public vals: Link[],
    /** keys.length + 1 subtrees: not yet loaded (Link), loaded (Node) or none (null) */
    public kids: (Node | Link | null)[],
    public cid: Link | null,
  ) {}
}

/** tag 42, byte string of 37 bytes, 0x00: the head of a common-form CID link (then CIDv1 sha2-256 32 bytes) */
function commonLinkAt(b: Uint8Array, pos: number): boolean {
  return (
    b[pos] === 0xd8 &&
    b[pos + 1] === 0x2a &&
    b[pos + 2] === 0x58 &&
    b[pos + 3] === 37 &&
    b[pos + 4] === 0 &&
    b[pos + 5] === 1 &&
    b[pos + 6]! < 0x80 &&
    b[pos + 7] === 0x12 &&
    b[pos + 8] === 0x20 &&
    pos + 41 <= b.length
  )
}

/**
 * An MST node in its canonical encoding with every link in the common form, read in place: keys as strings
 * (ASCII record paths), links as 36-byte views into `b`. The checks `decodeMstNode` makes (prefix lengths in
 * range and exact, valid keys) plus keys in strictly increasing order; null for anything else (another shape
 * or encoding, another CID form, a check that fails), which the caller hands to the generic path for the
 * verdict and its message.
 */
export function readNodeLinks(b: Uint8Array): { keys: string[]; vals: Link[]; rights: (Link | null)[]; left: Link | null } | null {
  const at: FixedPos = { pos: 0 }
  if (b[0] !== 0xa2 || b[1] !== 0x61 || b[2] !== 0x65) return null
  const n = fixedArg(b, 3, 4, at)
  if (n < 0) return null
  const keys: string[] = new Array(n)
  const vals: Link[] = new Array(n)
  const rights: (Link | null)[] = new Array(n)
  let prev = ''
  for (let i = 0; i < n; i++) {
    let p = at.pos
    // {"k": bytes, "p": uint, "t": link | null, "v": link}
    if (b[p] !== 0xa4 || b[p + 1] !== 0x61 || b[p + 2] !== 0x6b) return null
    const klen = fixedArg(b, p + 3, 2, at)
    if (klen < 0 || at.pos + klen > b.length) return null
    const kStart = at.pos
    p = kStart + klen
    if (b[p] !== 0x61 || b[p + 1] !== 0x70) return null
    const prefix = fixedArg(b, p + 2, 0, at)
    if (prefix < 0 || prefix > prev.length || (i === 0 && prefix !== 0)) return null
    for (let j = kStart; j < p; j++) if (b[j]! >= 0x80) return null
    const key = (prefix > 0 ? prev.slice(0, prefix) : '') + latin1(b, kStart, p)
    // exact prefix compression: the shared prefix with the previous key is exactly `prefix` long
    if (i > 0 && prefix < prev.length && prefix < key.length && prev.charCodeAt(prefix) === key.charCodeAt(prefix)) return null
    if (!isValidMstKeyAscii(key) || (i > 0 && !(prev < key))) return null
    p = at.pos
    if (b[p] !== 0x61 || b[p + 1] !== 0x74) return null
    let t: Link | null = null
    if (b[p + 2] === 0xf6) {
      p += 3
    } else {
      if (!commonLinkAt(b, p + 2)) return null
      t = b.subarray(p + 7, p + 43)
      p += 43
    }
    if (b[p] !== 0x61 || b[p + 1] !== 0x76 || !commonLinkAt(b, p + 2)) return null
    keys[i] = key
    vals[i] = b.subarray(p + 7, p + 43)
    rights[i] = t
    at.pos = p + 43
    prev = key
  }
  // "l": link | null
  let p = at.pos
  if (b[p] !== 0x61 || b[p + 1] !== 0x6c) return null
  let left: Link | null = null
  if (b[p + 2] === 0xf6) {
    p += 3
  } else {
    if (!commonLinkAt(b, p + 2)) return null
    left = b.subarray(p + 7, p + 43)
    p += 43
  }
  return p === b.length ? { keys, vals, rights, left } : null
}

const isEmpty = (n: Node): boolean => n.keys.length === 0 && n.kids[0] === null

function hasSubtree(kids: (Node | Link | null)[]): boolean {
  for (let i = 0; i < kids.length; i++) if (kids[i] !== null) return true
  return false
}

/** Index of `key` in the sorted `keys`, or of the gap (subtree) where it would be. */
function search(keys: string[], key: string): { i: number; found: boolean } {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const k = keys[mid]!
    if (k === key) return { i: mid, found: true }
    if (k < key) lo = mid + 1
    else hi = mid
  }
  return { i: lo, found: false }
}

function sharedPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++
  return i
}

/**
 * Layers of keys met before, so a key's SHA-256 is taken once per thread, not once per commit: the nodes near an
 * account's root (and their first keys) are read again by each of its commits. Bounded: emptied when full.
 */
const layers = new Map<string, number>()
const MAX_CACHED_LAYERS = 20_000
/** longer keys are not kept (at most ~2.5 MB of keys per thread) */
const MAX_CACHED_KEY_LENGTH = 128

/** `mstKeyLayer` of a key (a record path), through the cache. */
function layerOf(key: string): number {
  if (key.length > MAX_CACHED_KEY_LENGTH) return mstKeyLayer(key)
  let layer = layers.get(key)
  if (layer === undefined) {
    layer = mstKeyLayer(key)
    if (layers.size >= MAX_CACHED_LAYERS) layers.clear()
    layers.set(key, layer)
  }
  return layer
}

/** The CID of an empty MST (one node, no entries, no subtree). */
const EMPTY_ROOT = cidForCbor({ e: [], l: null })

class PartialMst {
  root: Node | null

  constructor(
    private readonly src: LinkSource,
    rootCid: Link,
  ) {
    this.root = this.load(rootCid, null)
    if (this.root && isEmpty(this.root)) this.root = null
  }

  /** Decodes a node; `layer` is the layer its parent puts it on (null for the root). */
  private load(cid: Link, layer: number | null): Node {
    const bytes = this.src.getBytes(cid)
    if (!bytes) throw new InversionError('missing-block', `MST node ${linkStr(cid)} needed for inversion is not in the slice`)
    let keys: string[]
    let vals: Link[]
    let kids: (Node | Link | null)[]
    let left: Link | null
    const fixed = readNodeLinks(bytes)
    if (fixed) {
      keys = fixed.keys
      vals = fixed.vals
      left = fixed.left
      kids = new Array(keys.length + 1)
      kids[0] = left
      for (let i = 0; i < keys.length; i++) kids[i + 1] = fixed.rights[i]!
    } else {
      // the generic path: the verdict (and the message) of decodeMstNode
      const cidObj = CID.decode(cid)
      let decoded
      try {
        decoded = decodeMstNode(cidObj, bytes)
      } catch (err) {
        if (err instanceof MstWalkError) throw new InversionError('malformed', err.message)
        throw err
      }
      const entries = decoded.entries
      left = decoded.left ? decoded.left.bytes : null
      keys = new Array(entries.length)
      vals = new Array(entries.length)
      kids = new Array(entries.length + 1)
      kids[0] = left
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!
        keys[i] = e.keyStr
        vals[i] = e.value.bytes
        kids[i + 1] = e.right ? e.right.bytes : null
        if (i > 0 && !(keys[i - 1]! < e.keyStr)) throw new InversionError('malformed', `MST node ${cidObj}: keys out of order`)
      }
    }
    let nodeLayer: number
    if (keys.length > 0) {
      nodeLayer = layerOf(keys[0]!)
      if (layer !== null && nodeLayer !== layer) {
        throw new InversionError('malformed', `MST node ${linkStr(cid)} is on layer ${nodeLayer}, expected ${layer}`)
      }
    } else if (layer !== null) {
      if (left === null) throw new InversionError('malformed', `MST node ${linkStr(cid)} is empty`)
      nodeLayer = layer
    } else if (left === null) {
      nodeLayer = 0 // the empty tree
    } else {
      // a root without entries (not canonical, but readable): one layer above its only subtree
      const child = this.load(left, null)
      nodeLayer = child.layer + 1
      kids[0] = child
    }
    if (nodeLayer === 0 && hasSubtree(kids)) {
      throw new InversionError('malformed', `MST node ${linkStr(cid)} on layer 0 has subtrees`)
    }
    if (nodeLayer > 128) throw new InversionError('malformed', `MST node ${linkStr(cid)}: layer ${nodeLayer} is impossible`)
    return new Node(nodeLayer, keys, vals, kids, cid)
  }

  private child(n: Node, i: number): Node | null {
    const k = n.kids[i]
    if (k === null || k === undefined) return null
    if (k instanceof Node) return k
    const c = this.load(k, n.layer - 1)
    n.kids[i] = c
    return c
  }

  lookup(key: string): Link | null {
    let n = this.root
    while (n) {
      const { i, found } = search(n.keys, key)
      if (found) return n.vals[i]!
      if (n.layer === 0) return null
      n = this.child(n, i)
    }
    return null
  }

  /** Sets the value of a key that is in the tree. */
  update(key: string, val: Link): void {
    let n = this.root
    while (n) {
      n.cid = null
      const { i, found } = search(n.keys, key)
      if (found) {
        n.vals[i] = val
        return
      }
      n = this.child(n, i)
    }
    throw new InversionError('inversion-mismatch', `${key} is not in the tree`)
  }

  /** Removes a key that is in the tree. */
  remove(key: string): void {
    if (!this.root) throw new InversionError('inversion-mismatch', `${key} is not in the tree`)
    let root = this.removeFrom(this.root, key)
    // the root sits on the layer of the highest remaining key
    while (root && root.keys.length === 0) root = this.child(root, 0)
    this.root = root
  }

  private removeFrom(n: Node, key: string): Node | null {
    const { i, found } = search(n.keys, key)
    if (found) {
      const merged = n.layer > 0 ? this.merge(n.kids[i]!, n.kids[i + 1]!, n.layer - 1) : null
      n.keys.splice(i, 1)
      n.vals.splice(i, 1)
      n.kids.splice(i, 2, merged)
    } else {
      const c = this.child(n, i)
      if (!c) throw new InversionError('inversion-mismatch', `${key} is not in the tree`)
      n.kids[i] = this.removeFrom(c, key)
    }
    n.cid = null
    return isEmpty(n) ? null : n
  }

  /**
   * Joins two adjacent subtrees of layer `layer` (`a` entirely before `b`). A subtree is loaded only
   * when both sides exist (joining with nothing keeps the other side as it is, even unloaded).
   */
  private merge(a: Node | Link | null, b: Node | Link | null, layer: number): Node | Link | null {
    if (!a) return b
    if (!b) return a
    const an = a instanceof Node ? a : this.load(a, layer)
    const bn = b instanceof Node ? b : this.load(b, layer)
    const last = an.keys.length
    const mid = layer > 0 ? this.merge(an.kids[last]!, bn.kids[0]!, layer - 1) : null
    const kids = an.kids.slice(0, last)
    kids.push(mid)
    for (let j = 1; j < bn.kids.length; j++) kids.push(bn.kids[j]!)
    return new Node(layer, an.keys.concat(bn.keys), an.vals.concat(bn.vals), kids, null)
  }

  /** Inserts a key that is not in the tree. */
  insert(key: string, val: Link): void {
    const h = layerOf(key)
    let root = this.root
    if (root && root.layer < h) {
      // raise the tree: empty nodes above the old root up to the key's layer
      while (root.layer < h) root = new Node(root.layer + 1, [], [], [root], null)
    }
    this.root = this.insertInto(root, root ? root.layer : h, key, val, h)
  }

  private insertInto(n: Node | null, layer: number, key: string, val: Link, h: number): Node {
    if (!n) n = new Node(layer, [], [], [null], null)
    const { i, found } = search(n.keys, key)
    if (found) throw new InversionError('inversion-mismatch', `${key} is already in the tree`)
    if (h === layer) {
      const [l, r] = layer > 0 ? this.split(this.child(n, i), key) : [null, null]
      n.keys.splice(i, 0, key)
      n.vals.splice(i, 0, val)
      n.kids.splice(i, 1, l, r)
    } else {
      n.kids[i] = this.insertInto(this.child(n, i), layer - 1, key, val, h)
    }
    n.cid = null
    return n
  }

  /** Splits a subtree into the parts before and after `key` (which it does not hold). */
  private split(n: Node | null, key: string): [Node | null, Node | null] {
    if (!n) return [null, null]
    const { i } = search(n.keys, key)
    const [cl, cr] = n.layer > 0 ? this.split(this.child(n, i), key) : [null, null]
    const lkids = n.kids.slice(0, i)
    lkids.push(cl)
    const rkids: (Node | Link | null)[] = [cr]
    for (let j = i + 1; j < n.kids.length; j++) rkids.push(n.kids[j]!)
    const left = new Node(n.layer, n.keys.slice(0, i), n.vals.slice(0, i), lkids, null)
    const right = new Node(n.layer, n.keys.slice(i), n.vals.slice(i), rkids, null)
    return [isEmpty(left) ? null : left, isEmpty(right) ? null : right]
  }

  rootCid(): CID {
    return this.root ? CID.decode(this.cidOf(this.root)) : EMPTY_ROOT
  }

  /** A subtree's link: as it was (not loaded), or its node's CID (re-encoded if it changed); null for none. */
  private linkOf(k: Node | Link | null | undefined): Link | null {
    return k === null || k === undefined ? null : k instanceof Node ? this.cidOf(k) : k
  }

  /** Re-encodes the changed nodes under `n` (post-order) and returns n's CID (bytes). */
  private cidOf(n: Node): Link {
    if (n.cid) return n.cid
    const left = this.linkOf(n.kids[0])
    const rights: (Link | null)[] = new Array(n.keys.length)
    for (let i = 0; i < n.keys.length; i++) rights[i] = this.linkOf(n.kids[i + 1])
    // CIDv1 dag-cbor sha2-256
    const link = new Uint8Array(36)
    link[0] = 1
    link[1] = DAG_CBOR_CODEC
    link[2] = 0x12
    link[3] = 0x20
    sha256Into(encodeNodeTo(n.keys, n.vals, rights, left, true), link, 4)
    n.cid = link
    return link
  }
}

// ---------------------------------------------------------------------------------------------
// MST node encoding, written out for the one fixed shape (the generic DAG-CBOR encoder is most of the
// cost otherwise): {e: [{k: bytes, p: uint, t: CID|null, v: CID}...], l: CID|null}, map keys in
// DAG-CBOR order (e < l; k < p < t < v), CIDs as tag 42 over 0x00 + the CID bytes. The tests compare
// every root with @atproto/repo's MST and with nodes encoded by the generic encoder.

/** A link as a CID object or as its bytes. */
type CidLike = CID | Uint8Array

const linkBytes = (c: CidLike): Uint8Array => (c instanceof Uint8Array ? c : c.bytes)

/** bytes of a nullable CID value: null (1) or tag 42 (2) + byte-string head + 0x00 + CID bytes */
function cidLength(cid: CidLike | null): number {
  if (!cid) return 1
  const len = linkBytes(cid).length + 1
  return 2 + cborHeadLength(len) + len
}

function writeCid(out: Uint8Array, pos: number, cid: CidLike | null): number {
  if (!cid) {
    out[pos] = 0xf6
    return pos + 1
  }
  return writeCborCid(out, pos, linkBytes(cid))
}

const CHAR_E = 0x65
const CHAR_L = 0x6c
const CHAR_K = 0x6b
const CHAR_P = 0x70
const CHAR_T = 0x74
const CHAR_V = 0x76

/** DAG-CBOR bytes of an MST node (keys are ASCII record paths, checked when decoded); links as CIDs or CID bytes. */
export function encodeNode(keys: string[], vals: CidLike[], rights: (CidLike | null)[], left: CidLike | null): Uint8Array {
  return encodeNodeTo(keys, vals, rights, left, false)
}

/**
 * Where a node is encoded only to be hashed (the inversion's changed nodes): one buffer per thread, grown as
 * needed, so that each encoding is not an ArrayBuffer of its own (a native allocation, freed by the GC).
 */
let scratch = new Uint8Array(4096)

/** `encodeNode`, into the thread's scratch buffer when `transient` (a view valid until the next call). */
function encodeNodeTo(keys: string[], vals: CidLike[], rights: (CidLike | null)[], left: CidLike | null, transient: boolean): Uint8Array {
  const n = keys.length
  const prefix: number[] = new Array(n)
  let size = 1 + 2 + cborHeadLength(n) + 2 + cidLength(left)
  let prev = ''
  for (let i = 0; i < n; i++) {
    const key = keys[i]!
    const p = sharedPrefix(prev, key)
    prefix[i] = p
    const klen = key.length - p
    size += 1 + 2 + cborHeadLength(klen) + klen + 2 + cborHeadLength(p) + 2 + cidLength(rights[i]!) + 2 + cidLength(vals[i]!)
    prev = key
  }
  let out: Uint8Array
  if (!transient) out = new Uint8Array(size)
  else {
    if (scratch.length < size) scratch = new Uint8Array(Math.max(size, 2 * scratch.length))
    out = scratch
  }
  let pos = 0
  out[pos++] = 0xa2 // map(2)
  out[pos++] = 0x61 // "e"
  out[pos++] = CHAR_E
  pos = writeCborHead(out, pos, 4, n)
  for (let i = 0; i < n; i++) {
    const key = keys[i]!
    const p = prefix[i]!
    out[pos++] = 0xa4 // map(4)
    out[pos++] = 0x61
    out[pos++] = CHAR_K
    pos = writeCborHead(out, pos, 2, key.length - p)
    for (let j = p; j < key.length; j++) out[pos++] = key.charCodeAt(j)
    out[pos++] = 0x61
    out[pos++] = CHAR_P
    pos = writeCborHead(out, pos, 0, p)
    out[pos++] = 0x61
    out[pos++] = CHAR_T
    pos = writeCid(out, pos, rights[i]!)
    out[pos++] = 0x61
    out[pos++] = CHAR_V
    pos = writeCid(out, pos, vals[i]!)
  }
  out[pos++] = 0x61
  out[pos++] = CHAR_L
  pos = writeCid(out, pos, left)
  if (pos !== size) throw new Error(`MST node encoding: wrote ${pos} of ${size} bytes`)
  return transient ? out.subarray(0, size) : out
}

/**
 * Inverts `ops` on the partial MST rooted at `data`, reading nodes with `get` (by CID, or by CID bytes from
 * a LinkSource such as the CAR slice's CarBlocks), and returns the root before them: create → the key must hold `cid`, remove it; update → the
 * key must hold `cid`, set it back to `prev`; delete → the key must be absent, insert `prev`.
 * Synchronous; never throws for bad input.
 */
export function invertMstOps(
  get: BlockGetter | LinkSource,
  data: CID,
  ops: InversionOp[],
): FastInversionResult {
  // nothing to undo: the tree is unchanged (an empty commit's slice need not carry the root node)
  if (ops.length === 0) return { ok: true, root: data }
  try {
    const source: LinkSource = typeof get === 'function' ? { getBytes: (link) => get(CID.decode(link)) } : get
    const tree = new PartialMst(source, data.bytes)
    for (const op of ops) {
      if (typeof op.path !== 'string' || !/^[\x21-\x7e]{1,1024}$/.test(op.path)) {
        return { ok: false, reason: 'malformed', message: `op path ${JSON.stringify(op.path)} is not an MST key` }
      }
      const current = tree.lookup(op.path)
      if (op.action === 'create' || op.action === 'update') {
        if (!current || !op.cid || !linkEquals(current, op.cid.bytes)) {
          return {
            ok: false,
            reason: 'inversion-mismatch',
            message: `${op.action} ${op.path}: tree holds ${current ? linkStr(current) : 'nothing'}, op says ${op.cid}`,
          }
        }
        if (op.action === 'create') tree.remove(op.path)
        else {
          if (!op.prev) return { ok: false, reason: 'malformed', message: `update ${op.path} without prev` }
          tree.update(op.path, op.prev.bytes)
        }
      } else if (op.action === 'delete') {
        if (current) {
          return { ok: false, reason: 'inversion-mismatch', message: `delete ${op.path}: key still present in the tree` }
        }
        if (!op.prev) return { ok: false, reason: 'malformed', message: `delete ${op.path} without prev` }
        tree.insert(op.path, op.prev.bytes)
      } else {
        return { ok: false, reason: 'malformed', message: `unknown action ${op.action}` }
      }
    }
    return { ok: true, root: tree.rootCid() }
  } catch (err) {
    if (err instanceof InversionError) return { ok: false, reason: err.reason, message: err.message }
    return { ok: false, reason: 'malformed', message: `MST inversion failed: ${(err as Error).message}` }
  }
}
