import type { CID } from 'multiformats/cid'
import { DAG_CBOR_CODEC, cidForBlock } from '@stratos/core/data'
import { decodeMstNode, encodeMstNode, mstKeyLayer } from '@stratos/core/repo'

/** A block: its CID and bytes. */
export interface Block {
  cid: CID
  bytes: Uint8Array
}

/** Reads a stored block (an MST node) synchronously; null when it is not there. */
export type NodeSource = (cid: CID) => Uint8Array | null | undefined

/**
 * A node of the account's MST. A node with a `cid` is stored (part of a committed tree, possibly shared by
 * several trees) and never changes; a node without one was made by the commit being built and may be
 * edited until the commit is encoded. `kids[i]` is the subtree before `keys[i]` (`kids[keys.length]`: after
 * the last key): a loaded node, the CID of one not loaded yet, or null.
 */
class Node {
  constructor(
    readonly layer: number,
    readonly keys: string[],
    readonly vals: CID[],
    readonly kids: (Node | CID | null)[],
    public cid: CID | null,
    public bytes: Uint8Array | null,
  ) {}
}

const isEmpty = (n: Node): boolean => n.keys.length === 0 && n.kids[0] === null

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

export class MstError extends Error {}

/** One change to the tree: `cid` null removes the key. */
export interface MstOp {
  key: string
  cid: CID | null
}

/** What applying ops to a tree gives: the new tree and the block-level difference from the old one. */
export interface MstUpdate {
  tree: RepoMst
  root: CID
  /** nodes of the new tree that are not in the old one */
  newNodes: Block[]
  /** nodes of the old tree that are not in the new one */
  removedNodes: CID[]
  /**
   * `newNodes` and the covering proofs (path to the key, and the subtrees next to it) of every op's key in
   * the new tree: the MST part of a `#commit`
   */
  sliceNodes: Block[]
}

/**
 * The repository's Merkle Search Tree (fanout 4, as the repository spec defines it), held as decoded nodes
 * loaded lazily from the account's block store, for the write path: {@link apply} builds the tree after a
 * commit's ops by copying only the nodes on the touched paths (the tree it is called on stays valid, so a
 * commit that fails to store leaves nothing to undo), encodes only the new nodes, and reports the new and
 * removed nodes and the covering proofs a `#commit` carries. Synchronous. @atproto/repo's MST is the
 * oracle in the differential tests (same roots, same new/removed/proof blocks).
 */
export class RepoMst {
  private constructor(
    private readonly source: NodeSource,
    private readonly root: Node,
  ) {}

  static load(source: NodeSource, rootCid: CID): RepoMst {
    const bytes = source(rootCid)
    if (!bytes) throw new MstError(`MST root ${rootCid} is not in the store`)
    return new RepoMst(source, decode(rootCid, bytes, null, source))
  }

  get rootCid(): CID {
    return this.root.cid!
  }

  /** The value of `key`, or null. */
  get(key: string): CID | null {
    let n: Node | null = this.root
    while (n) {
      const { i, found } = search(n.keys, key)
      if (found) return n.vals[i]!
      n = child(n, i, this.source)
    }
    return null
  }

  /** The tree after `ops` (each key at most once; creates of absent keys, updates and deletes of present ones). */
  apply(ops: MstOp[]): MstUpdate {
    const b = new Builder(this.source)
    let root: Node | null = this.root
    if (isEmpty(root)) {
      b.drop(root)
      root = null
    }
    for (const op of ops) {
      if (op.cid === null) root = b.remove(root, op.key)
      else if (this.has(root, op.key)) root = b.update(root!, op.key, op.cid)
      else root = b.insert(root, op.key, op.cid)
    }
    if (!root) root = new Node(0, [], [], [null], null, null)
    const made: Node[] = []
    b.encode(root, made)
    // a node made again exactly as it was (an update to the same value) is neither new nor removed
    const removed: CID[] = []
    for (const old of b.dropped) {
      const again = made.findIndex((n) => n.cid!.equals(old.cid!))
      if (again >= 0) made.splice(again, 1)
      else if (!removed.some((c) => c.equals(old.cid!))) removed.push(old.cid!)
    }
    const tree = new RepoMst(this.source, root)
    const slice = new Set<Node>(made)
    for (const op of ops) tree.coveringProof(op.key, slice)
    const block = (n: Node): Block => ({ cid: n.cid!, bytes: n.bytes! })
    return { tree, root: root.cid!, newNodes: made.map(block), removedNodes: removed, sliceNodes: [...slice].map(block) }
  }

  private has(root: Node | null, key: string): boolean {
    let n = root
    while (n) {
      const { i, found } = search(n.keys, key)
      if (found) return true
      n = child(n, i, this.source)
    }
    return false
  }

  /**
   * The nodes a reader needs to check `key`'s presence or absence and to undo a change at it: the path
   * from the root to the key (or to the gap where it would be) and, where the key is found, the rightmost
   * path of the subtree before it and the leftmost path of the subtree after it.
   */
  private coveringProof(key: string, out: Set<Node>): void {
    let n: Node | null = this.root
    while (n) {
      out.add(n)
      const { i, found } = search(n.keys, key)
      if (found) {
        for (let l = child(n, i, this.source); l; l = child(l, l.keys.length, this.source)) out.add(l)
        for (let r = child(n, i + 1, this.source); r; r = child(r, 0, this.source)) out.add(r)
        return
      }
      n = child(n, i, this.source)
    }
  }
}

function decode(cid: CID, bytes: Uint8Array, layer: number | null, source: NodeSource): Node {
  const { left, entries } = decodeMstNode(cid, bytes)
  const keys: string[] = new Array(entries.length)
  const vals: CID[] = new Array(entries.length)
  const kids: (Node | CID | null)[] = new Array(entries.length + 1)
  kids[0] = left
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    keys[i] = e.keyStr
    vals[i] = e.value
    kids[i + 1] = e.right
  }
  let nodeLayer: number
  if (keys.length > 0) nodeLayer = mstKeyLayer(keys[0]!)
  else if (layer !== null) nodeLayer = layer
  else if (left === null) nodeLayer = 0
  else {
    const below = source(left)
    if (!below) throw new MstError(`MST node ${left} is not in the store`)
    const c = decode(left, below, null, source)
    kids[0] = c
    nodeLayer = c.layer + 1
  }
  if (layer !== null && nodeLayer !== layer) throw new MstError(`MST node ${cid} is on layer ${nodeLayer}, expected ${layer}`)
  return new Node(nodeLayer, keys, vals, kids, cid, bytes)
}

/** Loads (once) and returns subtree `i` of `n`. */
function child(n: Node, i: number, source: NodeSource): Node | null {
  const k = n.kids[i]
  if (k === null || k === undefined) return null
  if (k instanceof Node) return k
  const bytes = source(k)
  if (!bytes) throw new MstError(`MST node ${k} is not in the store`)
  const c = decode(k, bytes, n.layer - 1, source)
  n.kids[i] = c
  return c
}

/** The tree operations (as in core's MST inversion), copying stored nodes before changing them. */
class Builder {
  /** stored nodes no longer in the tree being built */
  readonly dropped: Node[] = []

  constructor(private readonly source: NodeSource) {}

  drop(n: Node | CID | null): void {
    if (n && n instanceof Node && n.cid) this.dropped.push(n)
  }

  /** `n` itself when made by this build, else a copy (the stored one is dropped). */
  private own(n: Node): Node {
    if (!n.cid) return n
    this.dropped.push(n)
    return new Node(n.layer, n.keys.slice(), n.vals.slice(), n.kids.slice(), null, null)
  }

  private child(n: Node, i: number): Node | null {
    return child(n, i, this.source)
  }

  update(root: Node, key: string, val: CID): Node {
    const top = this.own(root)
    let n = top
    for (;;) {
      const { i, found } = search(n.keys, key)
      if (found) {
        n.vals[i] = val
        return top
      }
      const c = this.child(n, i)
      if (!c) throw new MstError(`${key} is not in the tree`)
      const owned = this.own(c)
      n.kids[i] = owned
      n = owned
    }
  }

  remove(root: Node | null, key: string): Node | null {
    if (!root) throw new MstError(`${key} is not in the tree`)
    let r = this.removeFrom(root, key)
    // the root sits on the layer of the highest remaining key
    while (r && r.keys.length === 0) {
      const below = this.child(r, 0)
      this.drop(r)
      r = below
    }
    return r
  }

  private removeFrom(node: Node, key: string): Node | null {
    const { i, found } = search(node.keys, key)
    let n: Node
    if (found) {
      n = this.own(node)
      const merged = n.layer > 0 ? this.merge(n.kids[i]!, n.kids[i + 1]!, n.layer - 1) : null
      n.keys.splice(i, 1)
      n.vals.splice(i, 1)
      n.kids.splice(i, 2, merged)
    } else {
      const c = this.child(node, i)
      if (!c) throw new MstError(`${key} is not in the tree`)
      n = this.own(node)
      n.kids[i] = this.removeFrom(c, key)
    }
    return isEmpty(n) ? null : n
  }

  private load(k: Node | CID, layer: number): Node {
    if (k instanceof Node) return k
    const bytes = this.source(k)
    if (!bytes) throw new MstError(`MST node ${k} is not in the store`)
    return decode(k, bytes, layer, this.source)
  }

  /** Joins two adjacent subtrees on `layer` (`a` before `b`); joining with nothing keeps the other as is. */
  private merge(a: Node | CID | null, b: Node | CID | null, layer: number): Node | CID | null {
    if (!a) return b
    if (!b) return a
    const an = this.load(a, layer)
    const bn = this.load(b, layer)
    this.drop(an)
    this.drop(bn)
    const last = an.keys.length
    const mid = layer > 0 ? this.merge(an.kids[last]!, bn.kids[0]!, layer - 1) : null
    const kids = an.kids.slice(0, last)
    kids.push(mid)
    for (let j = 1; j < bn.kids.length; j++) kids.push(bn.kids[j]!)
    return new Node(layer, an.keys.concat(bn.keys), an.vals.concat(bn.vals), kids, null, null)
  }

  insert(root: Node | null, key: string, val: CID): Node {
    const h = mstKeyLayer(key)
    let r = root
    // raise the tree: nodes without keys above the old root, up to the key's layer
    if (r && r.layer < h) while (r.layer < h) r = new Node(r.layer + 1, [], [], [r], null, null)
    return this.insertInto(r, r ? r.layer : h, key, val, h)
  }

  private insertInto(node: Node | null, layer: number, key: string, val: CID, h: number): Node {
    const n = node ? this.own(node) : new Node(layer, [], [], [null], null, null)
    const { i, found } = search(n.keys, key)
    if (found) throw new MstError(`${key} is already in the tree`)
    if (h === layer) {
      const [l, r] = layer > 0 ? this.split(this.child(n, i), key) : [null, null]
      n.keys.splice(i, 0, key)
      n.vals.splice(i, 0, val)
      n.kids.splice(i, 1, l, r)
    } else {
      n.kids[i] = this.insertInto(this.child(n, i), layer - 1, key, val, h)
    }
    return n
  }

  /** Splits a subtree into the parts before and after `key` (which it does not hold). */
  private split(n: Node | null, key: string): [Node | null, Node | null] {
    if (!n) return [null, null]
    this.drop(n)
    const { i } = search(n.keys, key)
    const [cl, cr] = n.layer > 0 ? this.split(this.child(n, i), key) : [null, null]
    const lkids = n.kids.slice(0, i)
    lkids.push(cl)
    const rkids: (Node | CID | null)[] = [cr]
    for (let j = i + 1; j < n.kids.length; j++) rkids.push(n.kids[j]!)
    const left = new Node(n.layer, n.keys.slice(0, i), n.vals.slice(0, i), lkids, null, null)
    const right = new Node(n.layer, n.keys.slice(i), n.vals.slice(i), rkids, null, null)
    return [isEmpty(left) ? null : left, isEmpty(right) ? null : right]
  }

  /** Encodes the nodes made by this build under `n` (post-order), collecting them. */
  encode(n: Node, out: Node[]): CID {
    if (n.cid) return n.cid
    const sub = (k: Node | CID | null | undefined): CID | null =>
      k === null || k === undefined ? null : k instanceof Node ? this.encode(k, out) : k
    const left = sub(n.kids[0])
    const rights: (CID | null)[] = new Array(n.keys.length)
    for (let i = 0; i < n.keys.length; i++) rights[i] = sub(n.kids[i + 1])
    const bytes = encodeMstNode(n.keys, n.vals, rights, left)
    n.cid = cidForBlock(bytes, DAG_CBOR_CODEC)
    n.bytes = bytes
    out.push(n)
    return n.cid
  }
}
