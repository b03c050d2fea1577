import type { CID } from 'multiformats/cid'
import type { SigningKeypair } from '@stratos/core/crypto'
import type { AccountManager } from '../account/manager.js'
import { workerCanCommit, type ActorStore, type CommitOutcome, type PreparedCreateOrUpdate, type PreparedWrite } from '../actor-store/index.js'
import { InvalidRequestError } from '../errors.js'
import type { Sequencer, SequencedEvent } from '../sequencer/index.js'

/** how long an account that had writes queued keeps committing on the main thread (ms) */
const MAIN_THREAD_HOLD_MS = 2_000

/** The output of createRecord and putRecord: the record written and the commit it is in. */
export function recordWriteOutput(write: PreparedCreateOrUpdate, outcome: CommitOutcome) {
  return {
    encoding: 'application/json',
    // strings only: sent without the lex-to-JSON walk
    plainJson: true,
    body: {
      uri: write.uri,
      cid: write.cid.toString(),
      commit: { cid: outcome.commit.cid.toString(), rev: outcome.commit.rev },
      validationStatus: write.validationStatus,
    },
  }
}

/**
 * The write path shared by createRecord, putRecord, deleteRecord and applyWrites: sign and store the
 * commit in the account's store, move the repo head in the service database, then sequence the #commit.
 */
export class RepoWriter {
  private readonly keys = new Map<string, SigningKeypair>()
  /** accounts whose commits stay on the main thread until then (performance.now()): see write */
  private readonly mainThreadUntil = new WeakMap<object, number>()
  /** the private keys of {@link keys} as commit workers take them */
  private readonly exported = new Map<string, { curve: SigningKeypair['curve']; priv: Uint8Array }>()

  constructor(
    private readonly accounts: AccountManager,
    private readonly actorStore: ActorStore,
    private readonly sequencer: Sequencer,
  ) {}

  async signingKey(did: string): Promise<SigningKeypair> {
    let key = this.keys.get(did)
    if (!key) {
      const found = await this.accounts.getSigningKey(did)
      if (!found) throw new InvalidRequestError(`No signing key for ${did}`, 'RepoNotFound')
      key = found
      if (this.keys.size > 1000) {
        this.keys.clear()
        this.exported.clear()
      }
      this.keys.set(did, key)
    }
    return key
  }

  forget(did: string): void {
    this.keys.delete(did)
    this.exported.delete(did)
  }

  private exportedKey(did: string, key: SigningKeypair): { curve: SigningKeypair['curve']; priv: Uint8Array } {
    let e = this.exported.get(did)
    if (!e) {
      e = { curve: key.curve, priv: key.export() }
      this.exported.set(did, e)
    }
    return e
  }

  async write(
    did: string,
    writes: PreparedWrite[],
    swapCommit?: CID,
  ): Promise<{ outcome: CommitOutcome; event: SequencedEvent }> {
    const repo = this.actorStore.get(did)
    if (!repo) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
    const key = this.keys.get(did) ?? (await this.signingKey(did))
    // sequenced under the account's lock: commits of one repo reach the firehose in commit order
    const { storeDurable, ...done } = await repo.lock.run(async () => {
      const workers = this.actorStore.commitWorkers
      let outcome: CommitOutcome
      // an account with writes waiting behind this one (many writers on one repo) commits on the main thread,
      // and keeps doing so until it has had no queue for a while: its commits are serial, each would wait for a
      // round trip to the worker with the lock held, and a switch between the two connections reloads the head.
      // So does an account whose handle was just opened for this write (more accounts writing than the handle
      // cache holds): the worker would open a connection of its own to the file too, two opens per write.
      const now = performance.now()
      if (repo.lock.queued > 1) this.mainThreadUntil.set(repo, now + MAIN_THREAD_HOLD_MS)
      if (workers && repo.reused && (this.mainThreadUntil.get(repo) ?? 0) <= now && workerCanCommit(writes)) {
        const made = await workers.commit(did, repo.db.name, this.exportedKey(did, key), writes, swapCommit)
        repo.committedElsewhere()
        outcome = made.outcome
        for (const cid of made.deletedBlobs) await this.actorStore.blobstore.deletePermanent(did, cid)
      } else outcome = await repo.applyWritesLocked(writes, key, swapCommit)
      // the store's WAL sync starts now (the commit is in it), in parallel with the event log's
      const storeDurable = repo.durable()
      const event = this.sequencer.sequenceCommit(outcome, storeDurable)
      await this.accounts.updateRepoRootSync(did, outcome.commit.cid.toString(), outcome.commit.rev)
      return { outcome, event, storeDurable }
    })
    // acknowledged once durable, in the account's store and in the event log: each a group commit (an
    // fdatasync on the thread pool shared by every write made meanwhile: the store's by this account's
    // next commits, which need not wait for it; the log's by every account's)
    await Promise.all([storeDurable, this.sequencer.durable()])
    return done
  }
}
