/**
 * Ingest: what the relay does with each upstream event, one function per message type. Events of one
 * account are processed one at a time, in the order they arrived (a queue per DID, shared by all hosts, so
 * an account that moves is still processed in order); different accounts run concurrently.
 *
 * Every #commit and #sync is verified (core's pure sync-1.1 checks) against the account's state and
 * its current identity before anything is stored or forwarded. An event that fails is dropped, counted
 * under its reason in `relay_events_dropped_total{reason}`, and never reaches a consumer.
 *
 * Pipelining: an account's next #commit does not wait for the previous one's verdict to be verified: it is
 * verified at once against the state it claims to follow (its since and prevData), and its verdict is used
 * once the previous one is acted on if that claim is the account's state then (otherwise it is verified again
 * against that state), so the verdicts are those of one commit after the other (see handleCommit). Nor does it
 * wait for the previous one to be durable: it is judged against the state the previous verified commit leads
 * to (kept in memory until its write is durable), instead of waiting for the group commit's fsync. The log is still written in the account's order and nothing
 * is forwarded before it is durable. Each write checks that the stored state is the one its commit was
 * verified against (compare-and-set): if an earlier write of the account failed, the in-memory state is reset
 * to the stored one and a commit that chained to the lost write is dropped (`chain-break`), never stored on
 * top of the wrong state. Every other event of the account (and a failed verification) first waits for the
 * account's writes in flight, so it sees the stored state as before.
 */
import { CID, cidString, scanCborItem } from '@stratos/core/data'
import type { RepoState, SyncEvent } from '@stratos/core/repo'
import { encodeMessageFrame, indexCommitFrame, messageHeaderBytes, type CommitFrame } from '@stratos/core/stream'
import type { CommitVerifier, VerifySummary } from '@stratos/core/workers'
import { isValidDid, isValidHandle } from '@stratos/core/syntax'
import { accountStatus, type Account, type AccountStore } from '../accounts/account-store.js'
import type { Logger } from '../logger.js'
import type { RelayMetrics } from '../metrics.js'
import type { Outbox } from '../outbox/outbox.js'
import type { CollectionIndex } from '../collections/collection-index.js'
import { KeyedQueue } from './did-queue.js'
import { IdentityLookupError, type Identities, type ResolvedIdentity } from './identities.js'
import { ResyncError, fetchVerifiedRepo } from './resync.js'

/** The host an event arrived from. */
export interface IngestHost {
  id: number
  hostname: string
}

export interface UpstreamEvent {
  /** frame type, e.g. `#commit` */
  t: string
  /** the decoded body (a #commit's is not read: see `frame`) */
  readonly body: Record<string, unknown>
  /**
   * The frame as received (checked as decodeFrame checks it) and where its body starts (default: after the
   * header). A #commit is read in place from it (core's CommitFrame), verified from its body's bytes, and
   * forwarded as those bytes with the relay's changes; without a frame its body is encoded first.
   */
  frame?: Uint8Array
  bodyStart?: number
}

/** The #commit of an upstream event, indexed in its frame's bytes. */
function commitFrameOf(evt: UpstreamEvent): CommitFrame {
  if (evt.frame) return indexCommitFrame(evt.frame, evt.bodyStart ?? scanCborItem(evt.frame, 0))
  return indexCommitFrame(encodeMessageFrame('#commit', evt.body), messageHeaderBytes('#commit').length)
}

export interface IngesterOptions {
  accounts: AccountStore
  identities: Identities
  outbox: Outbox
  /** #commit/#sync checks, in worker threads or in-thread (RELAY_VERIFY_WORKERS) */
  verifier: CommitVerifier
  metrics: RelayMetrics
  log: Logger
  /** the most accounts the relay takes from a host (null = no limit) */
  accountLimit: (hostId: number) => number | null
  /** outbound fetches (resync) may reach private addresses (development) */
  allowPrivateAddresses: boolean
  resyncMaxBytes: number
  /** a desynchronized account is not re-fetched more often than this (default 60 s) */
  resyncMinIntervalMs?: number
  now?: () => number
}

/** The stored state is not the one a commit was verified against (an earlier write of the account failed). */
class StaleChainError extends Error {}

/** An account's #commit writes in flight: the state the last verified commit leads to. */
interface InFlight {
  /** the state after the last verified commit; null after a failed write (use the stored state) */
  state: RepoState | null
  /** bumped when a failed write resets `state` (older writes' failures do not reset it again) */
  gen: number
  writes: number
  /** settles when every write queued so far has settled */
  settled: Promise<void>
}

/** An account's #commits taken for verification and not judged yet (their verdicts acted on in arrival order). */
interface Judging {
  count: number
  /** settles when the last of them is judged */
  tail: Promise<void>
}

/** A #commit verified at once against the state it claims to follow (its since and prevData): see handleCommit. */
interface EarlyVerdict {
  signingKey: string
  verdict: Promise<VerifySummary>
}

/** A #commit judged and queued for the event log. */
interface QueuedCommit {
  written: Promise<unknown>
  flight: InFlight
  gen: number
  /** false when the collection index could not apply it (read after `written`) */
  indexed: () => boolean
}

/** The verdict is the one for the state `prev`: verified against it (prevUsed: the state a claimed verification used). */
function judgedAgainst(res: VerifySummary, prev: RepoState | null): boolean {
  const used = res.prevUsed
  if (used === undefined) return false
  if (used === null || prev === null) return used === prev
  return used.rev === prev.rev && used.data.equals(prev.data)
}

function sameState(a: RepoState | null, rev: string | null, dataCid: string | null): boolean {
  if (a === null) return rev === null || dataCid === null
  return a.rev === rev && cidString(a.data) === dataCid
}

class Dropped {
  constructor(
    readonly reason: string,
    readonly message: string,
  ) {}
}

const drop = (reason: string, message: string) => new Dropped(reason, message)

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

function eventTime(body: Record<string, unknown>): string {
  const t = str(body.time)
  return t && !Number.isNaN(Date.parse(t)) ? t : new Date().toISOString()
}

/** The DID an upstream event is about (`repo` on #commit, `did` on the others). */
export function eventDid(evt: UpstreamEvent, commit?: CommitFrame): string | undefined {
  const did = evt.t === '#commit' ? (commit ?? commitFrameOf(evt)).repo : evt.body.did
  return typeof did === 'string' && isValidDid(did) ? did : undefined
}

export class Ingester {
  readonly queue = new KeyedQueue()
  /** listReposByCollection's index, kept in step with every stored commit (set by the context) */
  collections: CollectionIndex | null = null
  private readonly accountCounts: Map<number, number>
  private readonly lastResync = new Map<string, number>()
  private readonly inFlight = new Map<string, InFlight>()
  /** per account, its #commits whose verdict is not acted on yet (see handleCommit) */
  private readonly judging = new Map<string, Judging>()
  private readonly now: () => number

  constructor(private readonly o: IngesterOptions) {
    this.accountCounts = o.accounts.countByHost()
    this.now = o.now ?? Date.now
  }

  /** Accounts the relay holds for a host. */
  accountCount(hostId: number): number {
    return this.accountCounts.get(hostId) ?? 0
  }

  /**
   * Queues an event behind the account's earlier events. Resolves once it is processed (stored and
   * forwarded, or dropped); never rejects.
   */
  submit(host: IngestHost, evt: UpstreamEvent): Promise<void> {
    const type = evt.t
    this.o.metrics.received.inc({ type: typeLabel(type) })
    if (!KNOWN_TYPES.has(type)) return Promise.resolve() // unknown message types are ignored
    let commit: CommitFrame | undefined
    try {
      if (type === '#commit') commit = commitFrameOf(evt)
    } catch (err) {
      this.dropped(host, type, undefined, drop('malformed', `${type} that cannot be read: ${(err as Error).message}`))
      return Promise.resolve()
    }
    const did = eventDid(evt, commit)
    if (!did) {
      this.dropped(host, type, undefined, drop('malformed', `${type} without a valid DID`))
      return Promise.resolve()
    }
    return this.queue.run(did, (release) => this.process(host, evt, did, release, commit))
  }

  /** Runs an operator action in the account's queue (so it is ordered with the account's events and writes). */
  runForAccount(did: string, task: () => Promise<void>): Promise<void> {
    return this.queue.run(did, async () => {
      await this.accountSettled(did)
      await task()
    })
  }

  /** Resolves when the account's #commit writes in flight have settled (stored or failed). */
  private writesSettled(did: string): Promise<void> {
    return this.inFlight.get(did)?.settled ?? Promise.resolve()
  }

  /**
   * Resolves when the account's #commits taken so far are judged (stored, failed or dropped): their verdicts
   * acted on, then their writes settled. What is not a #commit waits for this, so it sees the state they leave.
   */
  private async accountSettled(did: string): Promise<void> {
    const judging = this.judging.get(did)
    if (judging) await judging.tail
    await this.writesSettled(did)
  }

  private async process(host: IngestHost, evt: UpstreamEvent, did: string, release: () => void, commit?: CommitFrame): Promise<void> {
    const end = this.o.metrics.verifyDuration.startTimer({ type: evt.t })
    try {
      let outcome: Dropped | void = undefined
      switch (evt.t) {
        case '#commit':
          // a frame as received was checked by the frame reader (see UpstreamEvent.frame): the verification
          // does not scan it again
          outcome = await this.handleCommit(host, did, commit!, release, evt.frame !== undefined)
          break
        case '#sync':
          await this.accountSettled(did)
          outcome = await this.handleSync(host, did, evt.body)
          break
        case '#identity':
          await this.accountSettled(did)
          outcome = await this.handleIdentity(host, did, evt.body)
          break
        case '#account':
          await this.accountSettled(did)
          outcome = await this.handleAccount(host, did, evt.body)
          break
      }
      if (outcome instanceof Dropped) this.dropped(host, evt.t, did, outcome)
    } catch (err) {
      if (err instanceof IdentityLookupError) {
        this.dropped(host, evt.t, did, drop(err.reason, err.message))
      } else {
        this.o.log.error({ err, did, host: host.hostname, type: evt.t }, 'processing an upstream event failed')
        this.dropped(host, evt.t, did, drop('internal-error', (err as Error)?.message ?? String(err)))
      }
    } finally {
      end()
    }
  }

  private dropped(host: IngestHost, type: string, did: string | undefined, d: Dropped): void {
    this.o.metrics.dropped.inc({ reason: d.reason })
    this.o.log.debug({ host: host.hostname, type, did, reason: d.reason, detail: d.message }, 'dropped upstream event')
  }

  // -------------------------------------------------------------------------------------------------
  // shared checks

  /**
   * The account and its identity, if the event may come from this host: the DID document's #atproto_pds
   * must be this host (a stale cached document is fetched again once). A new account is created (within
   * the host's account limit); an account that moved here is moved.
   */
  private async accountOnHost(
    host: IngestHost,
    did: string,
  ): Promise<{ account: Account; ident: ResolvedIdentity } | Dropped> {
    let ident = await this.o.identities.resolve(did)
    if (ident.pdsHost !== host.hostname) {
      ident = await this.o.identities.resolve(did, true)
      if (ident.pdsHost !== host.hostname) {
        return drop('wrong-host', `${did} is hosted at ${ident.pdsHost ?? '(no PDS)'}, not ${host.hostname}`)
      }
    }
    return this.attachAccount(host, did, ident)
  }

  private attachAccount(host: IngestHost, did: string, ident: ResolvedIdentity): { account: Account; ident: ResolvedIdentity } | Dropped {
    let account = this.o.accounts.get(did)
    if (!account || account.hostId !== host.id) {
      const limit = this.o.accountLimit(host.id)
      if (limit !== null && this.accountCount(host.id) >= limit) {
        return drop('host-account-limit', `${host.hostname} is at its limit of ${limit} accounts`)
      }
      if (!account) {
        account = this.o.accounts.create(did, host.id)
      } else {
        if (account.hostId !== null) this.accountCounts.set(account.hostId, Math.max(0, this.accountCount(account.hostId) - 1))
        this.o.accounts.setHost(did, host.id)
        this.o.log.info({ did, from: account.hostId, to: host.id, host: host.hostname }, 'account moved to another host')
        account = { ...account, hostId: host.id }
      }
      this.accountCounts.set(host.id, this.accountCount(host.id) + 1)
    }
    return { account, ident }
  }

  private static repoState(account: Account): RepoState | null {
    if (!account.rev || !account.dataCid) return null
    return { rev: account.rev, data: CID.parse(account.dataCid) }
  }

  // -------------------------------------------------------------------------------------------------
  // #commit

  /**
   * A #commit. Verification is pipelined per account: once this commit's verification is under way the account's
   * queue moves on (release), so its next #commit is verified at once too, before this one's verdict is known,
   * against the state that commit claims to follow (its since and prevData; `prev: 'claimed'`). Verdicts are
   * acted on in arrival order (each waits for the account's earlier #commits to be judged); a verdict reached
   * against a claim that is not the account's state at that point (or with another signing key) is reached
   * again against that state, so every verdict is the one the commits would get one after the other.
   */
  private async handleCommit(host: IngestHost, did: string, cf: CommitFrame, release: () => void, checked: boolean): Promise<Dropped | void> {
    const judging = this.judging.get(did) ?? { count: 0, tail: Promise.resolve() }
    const pipelined = judging.count > 0
    const earlier = judging.tail
    let judged!: () => void
    judging.tail = new Promise<void>((resolve) => (judged = resolve))
    judging.count++
    this.judging.set(did, judging)
    let queued: QueuedCommit | Dropped
    try {
      let early: EarlyVerdict | undefined
      if (pipelined) {
        // an earlier #commit of the account is being judged: verify this one now against its claim (lookup errors
        // are the regular path's to report)
        const ident = await this.o.identities.resolve(did).catch(() => null)
        if (ident?.signingKey) {
          const verdict = this.o.verifier.verifyCommitBytes(did, cf.body, { signingKey: ident.signingKey, prev: 'claimed', now: this.now(), checked })
          verdict.catch(noop) // (awaited below, unless the commit is dropped before)
          early = { signingKey: ident.signingKey, verdict }
        }
        release()
      }
      await earlier
      queued = await this.judgeCommit(host, did, cf, release, checked, early)
    } finally {
      // (after the earlier ones, even if this one failed before waiting for them)
      void earlier.then(judged)
      if (--judging.count === 0 && this.judging.get(did) === judging) this.judging.delete(did)
    }
    if (queued instanceof Dropped) return queued
    const { flight: f, gen } = queued
    try {
      await queued.written
    } catch (err) {
      if (f.gen === gen) {
        // the stored state is behind the in-memory one: the account's next commits are judged against it
        f.gen++
        f.state = null
      }
      if (err instanceof StaleChainError) return drop('chain-break', err.message)
      throw err
    } finally {
      f.writes--
      if (f.writes === 0 && this.inFlight.get(did) === f) this.inFlight.delete(did)
    }
    this.o.metrics.emitted.inc({ type: '#commit' })
    if (!queued.indexed()) this.collections?.backfill(did)
  }

  /**
   * The verdict on a #commit (the account's earlier #commits are judged): dropped, or queued for the event log.
   * `early`: its verification against its claim, used when that claim is the account's state.
   */
  private async judgeCommit(
    host: IngestHost,
    did: string,
    cf: CommitFrame,
    release: () => void,
    checked: boolean,
    early: EarlyVerdict | undefined,
    retried = false,
  ): Promise<QueuedCommit | Dropped> {
    const existing = this.o.accounts.get(did)
    if (existing?.takedown) return drop('account-takendown', `${did} is taken down by the relay operator`)
    const found = await this.accountOnHost(host, did)
    if (found instanceof Dropped) return found
    const { account } = found
    let { ident } = found
    if (!account.upstreamActive) {
      return drop('account-inactive', `${did} is not active (${account.upstreamStatus ?? 'inactive'})`)
    }
    if (!ident.signingKey) {
      ident = await this.o.identities.resolve(did, true)
      if (!ident.signingKey) return drop('no-signing-key', `${did} has no #atproto signing key`)
    }

    // the state after the account's last verified commit (in memory while its write is in flight)
    const flight = this.inFlight.get(did)
    const gen = flight?.gen ?? 0
    const prev = flight?.state ?? Ingester.repoState(account)
    const ctx = { signingKey: ident.signingKey, prev, now: this.now(), checked }
    let res: VerifySummary
    if (early && early.signingKey === ctx.signingKey) {
      res = await early.verdict
      // verified against its claim: the verdict for this state only if the claim is this state
      if (!judgedAgainst(res, prev)) res = await this.o.verifier.verifyCommitBytes(did, cf.body, ctx)
    } else {
      const verdict = this.o.verifier.verifyCommitBytes(did, cf.body, ctx)
      release() // the account's next #commit is verified meanwhile (see handleCommit)
      res = await verdict
    }
    if (!res.ok && res.reason === 'bad-signature') {
      // the key may have been rotated: look again (once)
      const fresh = await this.o.identities.resolve(did, true)
      if (fresh.pdsHost !== host.hostname) return drop('wrong-host', `${did} is now hosted at ${fresh.pdsHost ?? '(no PDS)'}`)
      if (fresh.signingKey && fresh.signingKey !== ctx.signingKey) {
        ident = fresh
        res = await this.o.verifier.verifyCommitBytes(did, cf.body, { ...ctx, signingKey: fresh.signingKey })
      }
    }
    if (!res.ok) {
      if (flight && flight.writes > 0) {
        // judged against a state not yet stored: wait for it; if a write failed meanwhile, judge again
        // against the stored state (as if the commits had been processed one after the other)
        await this.writesSettled(did)
        const stored = this.o.accounts.get(did)
        if (!retried && stored && !sameState(prev, stored.rev, stored.dataCid)) {
          return this.judgeCommit(host, did, cf, release, checked, undefined, true)
        }
      }
      if (res.reason === 'chain-break') {
        await this.chainBreak(host, this.o.accounts.get(did) ?? account, ident, res.message)
      }
      return drop(res.reason, res.message)
    }

    if (flight && flight.gen !== gen && !retried) {
      // a write of the account failed while this commit was verified against its state: judge it again
      // against the stored state
      return this.judgeCommit(host, did, cf, release, checked, undefined, true)
    }

    // the outbound #commit, from the upstream body's bytes (see core's CommitFrame.outbound: rebase and
    // tooBig false, blobs empty, ops reduced to action/path/cid/prev, an invalid time replaced)
    const out = cf.outbound()
    let indexed = true
    const expectRev = prev?.rev ?? null
    const expectData = prev ? cidString(prev.data) : null
    const ok = res
    const written = this.o.outbox.emitCommitFrame(did, out, () => {
      const stored = this.o.accounts.get(did)
      if (!stored || stored.rev !== expectRev || stored.dataCid !== expectData) {
        throw new StaleChainError(`${did} is stored at rev ${stored?.rev ?? '(none)'}, not at rev ${expectRev ?? '(none)'} this commit chains to`)
      }
      this.o.accounts.setRepoState(did, {
        rev: ok.rev,
        commitCid: cidString(ok.commitCid),
        dataCid: cidString(ok.newData),
        syncStatus: 'synchronized',
      })
      if (this.collections) indexed = this.collections.applyCommit(did, ok.rev, cf.since(), cf.opsActionPath())
    })
    // the account's next commit is verified against this one's state from now on (see the module comment)
    const f: InFlight = flight ?? { state: null, gen, writes: 0, settled: Promise.resolve() }
    f.state = { rev: ok.rev, data: ok.newData }
    f.writes++
    f.settled = Promise.all([f.settled, written.then(noop, noop)]).then(noop)
    this.inFlight.set(did, f)
    release()
    return { written, flight: f, gen, indexed: () => indexed }
  }

  /**
   * The commit does not chain to the state the relay holds (spec: mark the account desynchronized and
   * resync). The repo is fetched from the account's PDS and verified; its commit becomes the account's
   * state and is announced downstream with #sync.
   */
  private async chainBreak(host: IngestHost, account: Account, ident: ResolvedIdentity, why: string): Promise<void> {
    const did = account.did
    if (account.syncStatus !== 'desynchronized') {
      this.o.accounts.setSyncStatus(did, 'desynchronized')
      this.o.log.warn({ did, host: host.hostname, why }, 'commit chain broken: account desynchronized')
    }
    const last = this.lastResync.get(did)
    const now = this.now()
    if (last !== undefined && now - last < (this.o.resyncMinIntervalMs ?? 60_000)) return
    this.lastResync.set(did, now)
    if (!ident.pdsEndpoint || !ident.signingKey) return
    try {
      const repo = await fetchVerifiedRepo(ident.pdsEndpoint, did, ident.signingKey, {
        allowPrivateAddresses: this.o.allowPrivateAddresses,
        maxBytes: this.o.resyncMaxBytes,
      })
      if (account.rev && repo.rev <= account.rev) {
        throw new ResyncError(`the repo served for ${did} (rev ${repo.rev}) is not newer than rev ${account.rev}`)
      }
      await this.o.outbox.emit('#sync', did, { did, blocks: repo.commitCar, rev: repo.rev, time: new Date(now).toISOString() }, () => {
        this.o.accounts.setRepoState(did, {
          rev: repo.rev,
          commitCid: repo.commitCid.toString(),
          dataCid: repo.data.toString(),
          syncStatus: 'synchronized',
        })
        this.collections?.replace(did, repo.rev, repo.collections)
      })
      this.lastResync.delete(did)
      this.o.metrics.emitted.inc({ type: '#sync' })
      this.o.metrics.resyncs.inc({ result: 'ok' })
      this.o.log.info({ did, rev: repo.rev }, 'account resynchronized')
    } catch (err) {
      this.o.metrics.resyncs.inc({ result: 'failed' })
      this.o.log.warn({ did, err: (err as Error).message }, 'account resync failed; it stays desynchronized')
    }
  }

  // -------------------------------------------------------------------------------------------------
  // #sync

  private async handleSync(host: IngestHost, did: string, body: Record<string, unknown>): Promise<Dropped | void> {
    const existing = this.o.accounts.get(did)
    if (existing?.takedown) return drop('account-takendown', `${did} is taken down by the relay operator`)
    const found = await this.accountOnHost(host, did)
    if (found instanceof Dropped) return found
    const { account } = found
    let { ident } = found
    if (!account.upstreamActive) {
      return drop('account-inactive', `${did} is not active (${account.upstreamStatus ?? 'inactive'})`)
    }
    if (!ident.signingKey) {
      ident = await this.o.identities.resolve(did, true)
      if (!ident.signingKey) return drop('no-signing-key', `${did} has no #atproto signing key`)
    }
    const evt = body as unknown as SyncEvent
    const ctx = { signingKey: ident.signingKey, prev: Ingester.repoState(account), now: this.now() }
    let res = await this.o.verifier.verifySync(did, evt, ctx)
    if (!res.ok && res.reason === 'bad-signature') {
      const fresh = await this.o.identities.resolve(did, true)
      if (fresh.signingKey && fresh.signingKey !== ctx.signingKey && fresh.pdsHost === host.hostname) {
        res = await this.o.verifier.verifySync(did, evt, { ...ctx, signingKey: fresh.signingKey })
      }
    }
    if (!res.ok) return drop(res.reason, res.message)
    if (!res.changed) return // the state the relay already holds: nothing to announce
    const ok = res
    await this.o.outbox.emit('#sync', did, { did, blocks: evt.blocks, rev: ok.rev, time: eventTime(body) }, () => {
      this.o.accounts.setRepoState(did, {
        rev: ok.rev,
        commitCid: ok.commitCid.toString(),
        dataCid: ok.newData.toString(),
        syncStatus: 'synchronized',
      })
    })
    this.o.metrics.emitted.inc({ type: '#sync' })
    this.collections?.invalidate(did)
    this.collections?.backfill(did)
  }

  // -------------------------------------------------------------------------------------------------
  // #identity

  private async handleIdentity(host: IngestHost, did: string, body: Record<string, unknown>): Promise<Dropped | void> {
    let ident: ResolvedIdentity | null
    try {
      ident = await this.o.identities.refresh(did)
    } catch (err) {
      if (!(err instanceof IdentityLookupError) || err.reason !== 'identity-not-found') throw err
      ident = null
    }
    const handle = str(body.handle)
    const out: Record<string, unknown> = { did, time: eventTime(body) }
    if (handle !== undefined && (handle === 'handle.invalid' || isValidHandle(handle))) out.handle = handle

    if (ident === null) {
      // tombstoned / deleted DID: pass the hint on if the account was on this host
      const account = this.o.accounts.get(did)
      if (!account || account.hostId !== host.id) return drop('identity-not-found', `DID not found: ${did}`)
      if (account.takedown) return drop('account-takendown', `${did} is taken down by the relay operator`)
      delete out.handle
    } else {
      if (ident.pdsHost !== host.hostname) {
        return drop('wrong-host', `${did} is hosted at ${ident.pdsHost ?? '(no PDS)'}, not ${host.hostname}`)
      }
      const attached = this.attachAccount(host, did, ident)
      if (attached instanceof Dropped) return attached
      if (attached.account.takedown) return drop('account-takendown', `${did} is taken down by the relay operator`)
    }
    await this.o.outbox.emit('#identity', did, out)
    this.o.metrics.emitted.inc({ type: '#identity' })
  }

  // -------------------------------------------------------------------------------------------------
  // #account

  private async handleAccount(host: IngestHost, did: string, body: Record<string, unknown>): Promise<Dropped | void> {
    if (typeof body.active !== 'boolean') return drop('malformed', '#account without a boolean `active`')
    const active = body.active
    const status = active ? null : (str(body.status) ?? null)
    let found: { account: Account } | Dropped
    try {
      found = await this.accountOnHost(host, did)
    } catch (err) {
      // a deleted account's DID may be tombstoned already: accept the news from the host that had it
      if (!(err instanceof IdentityLookupError) || err.reason !== 'identity-not-found') throw err
      const account = this.o.accounts.get(did)
      if (!account || account.hostId !== host.id) throw err
      found = { account }
    }
    if (found instanceof Dropped) return found
    const { account } = found
    this.o.accounts.setUpstreamStatus(did, active, status)
    if (status === 'deleted') this.collections?.remove(did)
    if (account.takedown) return // the operator's takedown stands; consumers were told already
    const next = accountStatus({ takedown: false, upstreamActive: active, upstreamStatus: status })
    await this.o.outbox.emit('#account', did, { did, time: eventTime(body), ...next })
    this.o.metrics.emitted.inc({ type: '#account' })
  }

  // -------------------------------------------------------------------------------------------------
  // operator actions

  /** Takes an account down (or restores it) and tells consumers with #account. Creates unknown accounts. */
  async setTakedown(did: string, takedown: boolean): Promise<Account> {
    let result: Account | undefined
    await this.runForAccount(did, async () => {
      const account = this.o.accounts.get(did) ?? this.o.accounts.create(did, null)
      if (account.takedown !== takedown) {
        const next = accountStatus({ ...account, takedown })
        await this.o.outbox.emit('#account', did, { did, time: new Date(this.now()).toISOString(), ...next }, () => {
          this.o.accounts.setTakedown(did, takedown)
        })
        this.o.metrics.emitted.inc({ type: '#account' })
      }
      result = this.o.accounts.get(did)
    })
    return result!
  }
}

function noop(): void {}

const KNOWN_TYPES = new Set(['#commit', '#sync', '#identity', '#account'])

/** The metric label for an upstream message type (unknown types share one label, so hosts cannot grow the label set). */
export function typeLabel(t: string): string {
  return KNOWN_TYPES.has(t) ? t : 'other'
}
