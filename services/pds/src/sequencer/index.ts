import { EventEmitter } from 'node:events'
import type { CID } from 'multiformats/cid'
import { writeCar } from '@stratos/core/repo'
import {
  encodeMessageFrame,
  SqliteEventLog,
  WalCheckpointSchedule,
  WriteHold,
  WalGroupSync,
  type AppendItem,
  type LoggedEvent,
  type WalCheckpointer,
} from '@stratos/core/stream'
import type { CommitOutcome } from '../actor-store/index.js'
import { encodeCommitFrame } from './commit-frame.js'

/** events appended between two checkpoints of the log's WAL (a #commit frame takes about half a page) */
const CHECKPOINT_EVERY_EVENTS = 500

export type AccountStatusName = 'takendown' | 'suspended' | 'deleted' | 'deactivated' | 'desynchronized' | 'throttled'

export interface SequencedEvent extends LoggedEvent {
  type: '#commit' | '#identity' | '#account' | '#sync'
  did: string
}

/**
 * The PDS's outgoing event log. Every repo and identity event gets the next seq (durable, gap-free: seqs
 * are assigned inside the SQLite write that stores the frame) and is stored as the exact frame bytes
 * subscribers receive, so replay never re-encodes.
 *
 * Durability is a group commit, twice over: an append gets its seq and frame at once, and is written to
 * the log with every other append of the same event-loop turn in one SQLite transaction (committed to the
 * WAL without an fsync, at `setImmediate`); {@link durable} resolves once that write and then an fdatasync
 * of the WAL that began after it have completed (on the thread pool, shared by every append made
 * meanwhile, whatever the account). Events reach subscribers (the `event` emit) only
 * once durable, and once the sync of the account store they describe has settled (the `storeDurable`
 * gate), in seq order. A write is acknowledged after `await durable()` and its store's sync.
 */
export class Sequencer extends EventEmitter<{ event: [SequencedEvent] }> {
  readonly log: SqliteEventLog
  private readonly walSync: WalGroupSync | null
  /** appended, not yet emitted (emitted in seq order once durable, and their `gate` settled) */
  private pending: { evt: SequencedEvent; gateOpen: boolean }[] = []
  /** every event up to this seq is durable in the log */
  private durableSeq = 0
  /** the last seq handed out (events up to it may still wait in `unwritten`) */
  private assignedSeq: number
  /** appended, not yet written to the log (written together at the end of the event-loop turn) */
  private unwritten: AppendItem[] = []
  /** the scheduled write of `unwritten`, settling once it is done */
  private writing: Promise<void> | null = null
  /** the log's checkpoints, in a worker thread when given a checkpointer (else SQLite's, in the COMMIT) */
  private readonly checkpoints: WalCheckpointSchedule | null
  /** {@link durable} of the last append (when it was the last one, a later durable() is that same wait) */
  private appendedDurable: Promise<void> | null = null
  private appendedDurableSeq = 0
  /** while set, the end-of-turn write of the appends waits for it (the end of a checkpoint of the log) */
  private readonly writeHold = new WriteHold()

  /**
   * `checkpointer`: checkpoints the log's WAL off the event loop (SQLite's automatic ones fsync on it),
   * every `checkpointEvery` events (default 500).
   */
  constructor(path: string, opts: { checkpointer?: WalCheckpointer; checkpointEvery?: number } = {}) {
    super()
    this.setMaxListeners(0)
    const file = path !== ':memory:' && path !== ''
    this.log = new SqliteEventLog(path, { synchronous: file ? 'normal' : 'full' })
    this.walSync = file ? new WalGroupSync(`${path}-wal`) : null
    this.checkpoints =
      file && opts.checkpointer
        ? new WalCheckpointSchedule(this.log.db, opts.checkpointer, {
            everyWrites: opts.checkpointEvery ?? CHECKPOINT_EVERY_EVENTS,
            // the end of each checkpoint with the end-of-turn writes held back (writeHold)
            exclusive: (fn) => this.writeHold.run(fn),
          })
        : null
    this.assignedSeq = this.log.lastAssignedSeq()
  }

  /** Writes the appends waiting for the end of the turn now (one transaction). */
  flush(): void {
    if (this.unwritten.length === 0) return
    const items = this.unwritten
    this.unwritten = []
    const first = this.assignedSeq - items.length + 1
    let written: LoggedEvent[]
    // the first write after a checkpoint of the whole WAL restarts it: SQLite would fsync the new header on
    // the event loop; durable() fdatasyncs it with the frames before anything relies on them
    const syncsOff = this.checkpoints?.restartPending ?? false
    if (syncsOff) this.log.db.pragma('synchronous = OFF')
    try {
      written = this.log.appendMany(items)
    } catch (err) {
      // nothing of the batch was stored (one transaction): its events are dropped, never emitted, and the
      // requests waiting for them fail; seqs continue from what the log holds
      this.assignedSeq = this.log.lastAssignedSeq()
      this.pending = this.pending.filter((p) => p.evt.seq < first)
      throw err
    } finally {
      if (syncsOff) this.log.db.pragma('synchronous = NORMAL')
    }
    this.checkpoints?.wrote(items.length)
    if (written[0]!.seq !== first) throw new Error(`event log at seq ${written[0]!.seq - 1}, expected ${first - 1}`)
  }

  private scheduleWrite(): Promise<void> {
    this.writing ??= new Promise<void>((resolve, reject) => {
      const write = () => {
        if (this.writeHold.held) {
          void this.writeHold.held.then(() => setImmediate(write))
          return
        }
        this.writing = null
        try {
          this.flush()
          resolve()
        } catch (err) {
          reject(err)
        }
      }
      setImmediate(write)
    })
    return this.writing
  }

  /**
   * `gate`: the event is not emitted before it settles (the durability of the actor-store changes the
   * event describes); events after it wait too, so subscribers keep seq order.
   */
  private append(
    type: SequencedEvent['type'],
    did: string,
    frameOf: (seq: number) => Uint8Array,
    gate?: Promise<void>,
  ) {
    const seq = ++this.assignedSeq
    const frame = frameOf(seq)
    this.unwritten.push({ type, did, frame: () => frame, time: Date.now() })
    void this.scheduleWrite().catch(() => undefined)
    const out: SequencedEvent = { seq, frame, type, did }
    const entry = { evt: out, gateOpen: !gate }
    this.pending.push(entry)
    if (gate) {
      const open = () => {
        entry.gateOpen = true
        this.emitReady()
      }
      // a failed sync fails the write's request; the event is in the log all the same (replay serves it)
      gate.then(open, open)
    }
    // emitted once durable (a caller need not wait for it); the same promise answers durable() until the next append
    const done = this.syncAppended()
    this.appendedDurable = done
    this.appendedDurableSeq = seq
    done.catch(() => {
      if (this.appendedDurable === done) this.appendedDurable = null
    })
    return out
  }

  /** fdatasyncs done by the group commit (fewer than appends under concurrent load). */
  get syncCount(): number {
    return this.walSync?.syncs ?? 0
  }

  /**
   * Resolves once every event appended before the call is on disk, and emitted to subscribers.
   * Rejects if the fdatasync fails (the write must then not be acknowledged).
   */
  durable(): Promise<void> {
    if (this.appendedDurable && this.appendedDurableSeq === this.assignedSeq) return this.appendedDurable
    return this.syncAppended()
  }

  private async syncAppended(): Promise<void> {
    const upTo = this.pending.length === 0 ? 0 : this.pending[this.pending.length - 1]!.evt.seq
    if (this.unwritten.length > 0) await this.scheduleWrite()
    if (this.walSync) await this.walSync.sync()
    if (upTo > this.durableSeq) this.durableSeq = upTo
    this.emitReady()
  }

  private emitReady(): void {
    let n = 0
    while (n < this.pending.length && this.pending[n]!.evt.seq <= this.durableSeq && this.pending[n]!.gateOpen) n++
    if (n === 0) return
    const ready = this.pending.slice(0, n)
    this.pending = this.pending.slice(n)
    for (const { evt } of ready) this.emit('event', evt)
  }

  /** #commit: the diff CAR (new blocks + blocks needed to invert the ops), ops with their prev CIDs. */
  /** `storeDurable`: the account store's sync of this commit (the event is emitted after it). */
  sequenceCommit(outcome: CommitOutcome, storeDurable?: Promise<void>): SequencedEvent {
    const { did, commit } = outcome
    const blocks = outcome.car ?? writeCar(commit.cid, commit.sliceBlocks)
    const time = new Date().toISOString()
    return this.append(
      '#commit',
      did,
      (seq) =>
        encodeCommitFrame({
          seq,
          repo: did,
          commit: commit.cid,
          rev: commit.rev,
          since: commit.since,
          blocks,
          ops: outcome.ops,
          time,
          prevData: outcome.prevData ?? undefined,
        }),
      storeDurable,
    )
  }

  /** #sync: the signed commit alone (the repo's state may have been reset). */
  sequenceSync(did: string, commitCid: CID, commitBytes: Uint8Array, rev: string, storeDurable?: Promise<void>): SequencedEvent {
    const blocks = writeCar(commitCid, [[commitCid, commitBytes]])
    const time = new Date().toISOString()
    return this.append('#sync', did, (seq) => encodeMessageFrame('#sync', { seq, did, blocks, rev, time }), storeDurable)
  }

  sequenceIdentity(did: string, handle?: string): SequencedEvent {
    const time = new Date().toISOString()
    return this.append('#identity', did, (seq) => {
      const body: Record<string, unknown> = { seq, did, time }
      if (handle) body.handle = handle
      return encodeMessageFrame('#identity', body)
    })
  }

  sequenceAccount(did: string, active: boolean, status?: AccountStatusName): SequencedEvent {
    const time = new Date().toISOString()
    return this.append('#account', did, (seq) => {
      const body: Record<string, unknown> = { seq, did, time, active }
      if (status) body.status = status
      return encodeMessageFrame('#account', body)
    })
  }

  /** The last seq handed out; every event up to it is written to the log (not necessarily synced). */
  lastSeq(): number {
    this.flush()
    return this.assignedSeq
  }

  /** Waits for the last group commit, then closes the log. */
  async close(): Promise<void> {
    this.flush()
    if (this.walSync) {
      await this.durable().catch(() => undefined)
      await this.walSync.close()
    }
    await this.checkpoints?.settled()
    this.log.close()
  }
}
