/**
 * Bench fixtures: accounts with real @atproto/repo repos signing real commits, and the `#commit` event
 * bodies a sync-1.1 host emits for them (ops with prev CIDs, prevData, the CAR slice).
 * Not a benchmark itself (bench/run.ts only runs the top-level bench/*.ts files).
 */
import { randomBytes } from 'node:crypto'
import { generateKeypair, type SigningKeypair } from '../../packages/core/src/crypto/index.js'
import { CID, cidForCbor } from '../../packages/core/src/data/index.js'
import {
  MemoryBlockstore,
  Repo,
  WriteOpAction,
  commitSliceCar,
  type CommitEvent,
  type CommitEventOp,
} from '../../packages/core/src/repo/index.js'
import { decodeFrame, encodeMessageFrame } from '../../packages/core/src/stream/index.js'

export const COLLECTION = 'app.bsky.feed.post'

type Write =
  | { action: 'create' | 'update'; rkey: string; record: Record<string, unknown> }
  | { action: 'delete'; rkey: string }

const toCid = (c: { bytes: Uint8Array }) => CID.decode(c.bytes)
const now = () => new Date().toISOString()

export function randomPlcDid(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let s = ''
  for (const b of randomBytes(24)) s += alphabet[b % 32]
  return `did:plc:${s}`
}

let textCounter = 0
export function post(): Record<string, unknown> {
  textCounter++
  return {
    $type: COLLECTION,
    text: `bench post ${textCounter}: the quick brown fox jumps over the lazy dog`,
    langs: ['en'],
    createdAt: now(),
  }
}

function toRepoWrites(writes: Write[]) {
  return writes.map((w) =>
    w.action === 'delete'
      ? { action: WriteOpAction.Delete, collection: COLLECTION, rkey: w.rkey }
      : { action: w.action === 'create' ? WriteOpAction.Create : WriteOpAction.Update, collection: COLLECTION, rkey: w.rkey, record: w.record },
  ) as never
}

/** One account: a did:plc, a k256 key and a repo on a MemoryBlockstore. */
export class BenchAccount {
  /** rkeys held by the repo, oldest first */
  readonly rkeys: string[] = []
  private rkeyCounter = 0

  private constructor(
    readonly did: string,
    readonly keypair: SigningKeypair,
    readonly storage: MemoryBlockstore,
    public repo: Repo,
    /** the #commit of the first commit (since null, no prevData) */
    readonly initEvent: CommitEvent,
  ) {}

  nextRkey(): string {
    this.rkeyCounter++
    return `3l${String(this.rkeyCounter).padStart(11, '0')}`
  }

  /** A new repo; with `records`, the first commit creates that many posts. */
  static async create(records = 0): Promise<BenchAccount> {
    const did = randomPlcDid()
    const keypair = await generateKeypair('k256')
    const storage = new MemoryBlockstore()
    const seed = { rkeyCounter: 0 }
    const rkeys: string[] = []
    const initial: Write[] = []
    for (let i = 0; i < records; i++) {
      seed.rkeyCounter++
      const rkey = `3k${String(seed.rkeyCounter).padStart(11, '0')}`
      rkeys.push(rkey)
      initial.push({ action: 'create', rkey, record: post() })
    }
    const init = await Repo.formatInitCommit(storage, did, keypair as never, toRepoWrites(initial))
    const repo = await Repo.createFromCommit(storage, init)
    const ops: CommitEventOp[] = initial.map((w) => ({
      action: 'create',
      path: `${COLLECTION}/${w.rkey}`,
      cid: cidForCbor((w as { record: unknown }).record),
    }))
    const initEvent: CommitEvent = {
      rebase: false,
      tooBig: false,
      repo: did,
      commit: toCid(init.cid),
      rev: init.rev,
      since: null,
      blocks: commitSliceCar(init),
      ops: ops.length <= 200 ? ops : [],
      blobs: [],
      time: now(),
    }
    const account = new BenchAccount(did, keypair, storage, repo, initEvent)
    account.rkeys.push(...rkeys)
    return account
  }

  /** Commits `writes` and returns the #commit body (ops with prev, prevData, CAR slice). */
  async commit(writes: Write[]): Promise<CommitEvent> {
    const ops: CommitEventOp[] = []
    for (const w of writes) {
      const path = `${COLLECTION}/${w.rkey}`
      const prevCid = await this.repo.data.get(path)
      const prev = prevCid ? toCid(prevCid) : null
      if (w.action === 'create') ops.push({ action: 'create', path, cid: cidForCbor(w.record) })
      else if (w.action === 'update') ops.push({ action: 'update', path, cid: cidForCbor(w.record), prev })
      else ops.push({ action: 'delete', path, cid: null, prev })
    }
    const prevData = toCid(this.repo.commit.data)
    const data = await this.repo.formatCommit(toRepoWrites(writes), this.keypair as never)
    this.repo = await this.repo.applyCommit(data)
    for (const w of writes) {
      if (w.action === 'create') this.rkeys.push(w.rkey)
      else if (w.action === 'delete') this.rkeys.splice(this.rkeys.indexOf(w.rkey), 1)
    }
    return {
      rebase: false,
      tooBig: false,
      repo: this.did,
      commit: toCid(data.cid),
      rev: data.rev,
      since: data.since,
      blocks: commitSliceCar(data),
      ops,
      blobs: [],
      prevData,
      time: now(),
    }
  }

  /** A commit creating one post. */
  createOne(): Promise<CommitEvent> {
    return this.commit([{ action: 'create', rkey: this.nextRkey(), record: post() }])
  }

  /** A 5-op commit: 3 creates, an update and a delete of older records. */
  fiveOps(): Promise<CommitEvent> {
    const [u, d] = [this.rkeys[this.rkeys.length >> 1]!, this.rkeys[0]!]
    return this.commit([
      { action: 'create', rkey: this.nextRkey(), record: post() },
      { action: 'create', rkey: this.nextRkey(), record: post() },
      { action: 'create', rkey: this.nextRkey(), record: post() },
      { action: 'update', rkey: u, record: post() },
      { action: 'delete', rkey: d },
    ])
  }
}

/** The event as a consumer sees it: encoded in a frame with `seq`, then decoded. */
export function overTheWire(evt: CommitEvent, seq = 1): CommitEvent {
  const frame = decodeFrame(encodeMessageFrame('#commit', { ...evt, seq }))
  if (frame.op !== 1) throw new Error('not a message frame')
  return frame.body as unknown as CommitEvent
}
