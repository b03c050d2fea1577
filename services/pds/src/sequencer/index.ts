import { EventEmitter } from 'node:events'
import type { CID } from 'multiformats/cid'
import { commitSliceCar, writeCar } from '@stratos/core/repo'
import { encodeMessageFrame, SqliteEventLog, type LoggedEvent } from '@stratos/core/stream'
import type { CommitOutcome } from '../actor-store/index.js'

export type AccountStatusName = 'takendown' | 'suspended' | 'deleted' | 'deactivated' | 'desynchronized' | 'throttled'

export interface SequencedEvent extends LoggedEvent {
  type: '#commit' | '#identity' | '#account' | '#sync'
  did: string
}

/**
 * The PDS's outgoing event log. Every repo and identity event gets the next seq (durable, gap-free: seqs
 * are assigned inside the SQLite write that stores the frame) and is stored as the exact frame bytes
 * subscribers receive, so replay never re-encodes.
 */
export class Sequencer extends EventEmitter<{ event: [SequencedEvent] }> {
  readonly log: SqliteEventLog

  constructor(path: string) {
    super()
    this.setMaxListeners(0)
    this.log = new SqliteEventLog(path)
  }

  private append(type: SequencedEvent['type'], did: string, body: (seq: number) => Record<string, unknown>) {
    const evt = this.log.append(type, did, (seq) => encodeMessageFrame(type, body(seq)))
    const out: SequencedEvent = { ...evt, type, did }
    this.emit('event', out)
    return out
  }

  /** #commit: the diff CAR (new blocks + blocks needed to invert the ops), ops with their prev CIDs. */
  sequenceCommit(outcome: CommitOutcome): SequencedEvent {
    const { did, commit } = outcome
    const blocks = commitSliceCar(commit)
    const ops = outcome.ops.map((op) => {
      const o: Record<string, unknown> = { action: op.action, path: op.path, cid: op.cid }
      if (op.prev) o.prev = op.prev
      return o
    })
    const time = new Date().toISOString()
    return this.append('#commit', did, (seq) => {
      const body: Record<string, unknown> = {
        seq,
        rebase: false,
        tooBig: false,
        repo: did,
        commit: commit.cid,
        rev: commit.rev,
        since: commit.since,
        blocks,
        ops,
        blobs: [],
        time,
      }
      if (outcome.prevData) body.prevData = outcome.prevData
      return body
    })
  }

  /** #sync: the signed commit alone (the repo's state may have been reset). */
  sequenceSync(did: string, commitCid: CID, commitBytes: Uint8Array, rev: string): SequencedEvent {
    const blocks = writeCar(commitCid, [[commitCid, commitBytes]])
    const time = new Date().toISOString()
    return this.append('#sync', did, (seq) => ({ seq, did, blocks, rev, time }))
  }

  sequenceIdentity(did: string, handle?: string): SequencedEvent {
    const time = new Date().toISOString()
    return this.append('#identity', did, (seq) => {
      const body: Record<string, unknown> = { seq, did, time }
      if (handle) body.handle = handle
      return body
    })
  }

  sequenceAccount(did: string, active: boolean, status?: AccountStatusName): SequencedEvent {
    const time = new Date().toISOString()
    return this.append('#account', did, (seq) => {
      const body: Record<string, unknown> = { seq, did, time, active }
      if (status) body.status = status
      return body
    })
  }

  lastSeq(): number {
    return this.log.lastAssignedSeq()
  }

  close(): void {
    this.log.close()
  }
}
