/**
 * Builds the relay's dependencies once, from its configuration.
 */
import { publicOnlyLookup, type LookupAllFn } from '@stratos/core/identity'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { IdentityResolver, SqliteIdentityCache } from '@stratos/core/identity'
import { networkServerOptions } from '@stratos/core/config'
import { createXrpcServer, type XrpcServer } from '@stratos/core/xrpc'
import { CommitVerifier } from '@stratos/core/workers'
import { WalCheckpointer } from '@stratos/core/stream'
import { AccountStore } from './accounts/account-store.js'
import type { RelayConfig } from './config.js'
import { openRelayDb, type Db } from './db.js'
import { HostManager } from './hosts/host-manager.js'
import { HOST_STATUSES, HostStore } from './hosts/host-store.js'
import { HostRateLimiter } from './hosts/limits.js'
import { Slurper } from './hosts/slurper.js'
import { Identities, LayeredIdentityCache } from './ingest/identities.js'
import { Ingester } from './ingest/ingester.js'
import type { Logger } from './logger.js'
import { RelayMetrics } from './metrics.js'
import { CollectionIndex } from './collections/collection-index.js'
import { JetstreamHub } from './jetstream/hub.js'
import { Outbox } from './outbox/outbox.js'

export interface RelayContextOptions {
  /** replaces DNS for host connections (tests: a name that resolves to an internal address) */
  lookup?: LookupAllFn
  /** replaces the requestCrawl liveness probe (tests) */
  probe?: (baseUrl: string) => Promise<void>
  /** clock for verification (tests) */
  now?: () => number
  /** outbound ping interval for subscribers (default 30 s) */
  consumerPingIntervalMs?: number
  /** minimum time between two resyncs of one account (default 60 s) */
  resyncMinIntervalMs?: number
  /** minimum age of a cached DID document before an event can force a refetch (default 5 s) */
  identityMinRefreshMs?: number
  /**
   * Group commit of the outbound event log (see outbox.ts): `delayMs` 0 (default) batches the events of one
   * event-loop turn, > 0 waits that long after the first; `maxSize` caps a batch (default 1000; 1 = one
   * transaction per event).
   */
  eventLogBatch?: { delayMs?: number; maxSize?: number }
  /** replaces `process.exit(1)` after a fatal error (the event log's WAL sync failed) (tests) */
  onFatal?: (err: unknown) => void
  /** replaces the event log's WAL fdatasync (tests: injected failures) */
  eventLogSync?: () => Promise<void>
}

export class RelayContext {
  readonly metrics: RelayMetrics
  readonly hosts: HostStore
  readonly accounts: AccountStore
  readonly identities: Identities
  readonly outbox: Outbox
  readonly ingester: Ingester
  readonly limiter = new HostRateLimiter()
  readonly slurper: Slurper
  readonly hostManager: HostManager
  readonly log: Logger
  readonly collections: CollectionIndex
  /** #commit/#sync verification: RELAY_VERIFY_WORKERS worker threads, or in-thread (0) */
  readonly verifier: CommitVerifier
  /** GET /subscribe (null when RELAY_JETSTREAM_ENABLED=false) */
  jetstream: JetstreamHub | null = null
  /** checkpoints relay.sqlite's WAL off the event loop (null for an in-memory database) */
  private readonly walCheckpointer: WalCheckpointer | null

  private constructor(
    readonly config: RelayConfig,
    readonly db: Db,
    readonly xrpc: XrpcServer,
    private readonly identityCache: SqliteIdentityCache,
    opts: RelayContextOptions,
  ) {
    this.log = xrpc.app.log as unknown as Logger
    this.hosts = new HostStore(db)
    this.accounts = new AccountStore(db)
    const resolver = new IdentityResolver({
      plcUrl: config.plcUrl,
      allowPrivateAddresses: config.devMode,
      cache: new LayeredIdentityCache(identityCache),
      minForceRefreshIntervalMs: opts.identityMinRefreshMs ?? 5_000,
      onBackgroundError: (err, did) => this.log.debug({ did, err: (err as Error)?.message }, 'background DID refresh failed'),
    })
    this.identities = new Identities(resolver)

    let outbox: Outbox | undefined
    let slurper: Slurper | undefined
    this.metrics = new RelayMetrics(xrpc.metrics!.registry, {
      hostsByStatus: () => {
        const counts = new Map<string, number>(HOST_STATUSES.map((s) => [s, 0]))
        for (const h of this.hosts.all()) {
          const status = slurper?.statusOf(h.id) ?? h.status
          counts.set(status, (counts.get(status) ?? 0) + 1)
        }
        return counts
      },
      consumers: () => outbox?.server.consumers().length ?? 0,
      eventLog: () => outbox?.stats() ?? { count: 0, bytes: 0, lastSeq: 0 },
    })
    this.walCheckpointer = db.memory
      ? null
      : new WalCheckpointer({
          name: 'wal-checkpoint',
          onWorkerError: (err) => this.log.error({ err }, 'the WAL checkpoint worker died (restarted)'),
        })
    outbox = new Outbox(db, {
      checkpointer: this.walCheckpointer ?? undefined,
      replayWindowMs: config.replayWindowMs,
      replayMaxBytes: config.replayMaxBytes,
      maxQueuedBytes: config.consumerMaxQueuedBytes,
      maxQueuedFrames: config.consumerMaxQueuedFrames,
      pingIntervalMs: opts.consumerPingIntervalMs,
      onConsumerClose: (_c, reason) => this.metrics.consumerDisconnects.inc({ reason }),
      onError: (err) => this.log.debug({ err: (err as Error)?.message }, 'subscriber socket error'),
      batchDelayMs: opts.eventLogBatch?.delayMs,
      maxBatchSize: opts.eventLogBatch?.maxSize,
      onRollback: () => {
        this.accounts.forgetCached()
        this.collections.forgetCached()
      },
      syncWal: opts.eventLogSync,
      // crash-only: committed events may not be on disk and are never published; a restart resumes every host
      // from its saved cursor (which never passes an event that was not durable)
      onSyncError: (err) => {
        this.log.error({ err }, 'the event log\'s WAL fsync failed: exiting')
        if (opts.onFatal) opts.onFatal(err)
        else process.exit(1)
      },
    })
    this.outbox = outbox

    this.verifier = new CommitVerifier({
      workers: config.verifyWorkers,
      onWorkerError: (err, index) => this.log.error({ err, worker: index }, 'a verification worker died; restarted'),
    })
    let manager: HostManager | undefined
    this.ingester = new Ingester({
      accounts: this.accounts,
      identities: this.identities,
      outbox,
      verifier: this.verifier,
      metrics: this.metrics,
      log: this.log,
      accountLimit: (hostId) => {
        const host = this.hosts.getById(hostId)
        return host && manager ? manager.limitsFor(host).accounts : null
      },
      allowPrivateAddresses: config.devMode,
      resyncMaxBytes: config.resyncMaxBytes,
      resyncMinIntervalMs: opts.resyncMinIntervalMs,
      now: opts.now,
    })
    slurper = new Slurper({
      hosts: this.hosts,
      ingester: this.ingester,
      limiter: this.limiter,
      limitsFor: (host) => manager!.limitsFor(host),
      metrics: this.metrics,
      log: this.log,
      // the address is checked again when the WebSocket connects, not only when the host was probed
      lookup: publicOnlyLookup({ lookup: opts.lookup, allowPrivateAddresses: config.devMode }),
      reconnectMinMs: config.reconnectMinMs,
      reconnectMaxMs: config.reconnectMaxMs,
      maxFailures: config.hostMaxFailures,
      maxPendingPerHost: config.hostMaxPending,
    })
    this.slurper = slurper
    manager = new HostManager({
      store: this.hosts,
      slurper,
      limiter: this.limiter,
      config,
      log: this.log,
      probe: opts.probe,
      onNewHost: (host) => {
        const base = `${host.ssl ? 'https' : 'http'}://${host.hostname}`
        this.collections.backfillHost(host.hostname, base).then(
          (n) => this.log.info({ host: host.hostname, repos: n }, 'collection index: backfilling the repos of a new host'),
          (err) => this.log.warn({ host: host.hostname, err: (err as Error).message }, 'collection index: listing the repos of a new host failed'),
        )
      },
    })
    this.hostManager = manager
    this.collections = new CollectionIndex({
      db,
      log: this.log,
      identities: this.identities,
      runForAccount: (did, task) => this.ingester.runForAccount(did, task),
      backfill: config.collectionBackfill,
      allowPrivateAddresses: config.devMode,
      maxRepoBytes: config.resyncMaxBytes,
    })
    this.ingester.collections = this.collections
  }

  static async create(config: RelayConfig, opts: RelayContextOptions = {}): Promise<RelayContext> {
    mkdirSync(config.dataDirectory, { recursive: true, mode: 0o700 })
    const db = openRelayDb(join(config.dataDirectory, 'relay.sqlite'))
    const identityCache = await SqliteIdentityCache.open(join(config.dataDirectory, 'identity.sqlite'))
    const xrpc = createXrpcServer({
      version: config.version,
      logger: config.logLevel === 'silent' ? false : { level: config.logLevel },
      // frames of up to 5 MB are relayed; HTTP bodies stay small
      bodyLimits: { json: 64 * 1024 },
      ...networkServerOptions(config.network),
    })
    const ctx = new RelayContext(config, db, xrpc, identityCache, opts)
    if (config.jetstreamEnabled) {
      ctx.jetstream = await JetstreamHub.create({
        db,
        outbox: ctx.outbox,
        maxQueuedBytes: config.consumerMaxQueuedBytes,
        pingIntervalMs: opts.consumerPingIntervalMs,
        maxPerIp: config.jetstreamMaxPerIp,
        zstdDictionary: config.jetstreamZstdDictionary,
        zstdDictionaryV2: config.jetstreamZstdDictionaryV2,
        onError: (err) => ctx.log.debug({ err: (err as Error)?.message }, 'jetstream subscriber error'),
      })
      const v1 = config.jetstreamZstdDictionary
      const v2 = config.jetstreamZstdDictionaryV2
      ctx.log.info(
        v1
          ? `jetstream: /subscribe compress=true frames use the zstd dictionary ${v1.path} (id ${v1.id})`
          : 'jetstream: /subscribe compress=true frames are plain zstd (no dictionary: RELAY_JETSTREAM_ZSTD_DICTIONARY is not set)',
      )
      ctx.log.info(
        v2
          ? `jetstream: subscribeEvents zstdDictionary=${v2.id} uses ${v2.path}`
          : 'jetstream: subscribeEvents compression is off (RELAY_JETSTREAM_V2_ZSTD_DICTIONARY is not set)',
      )
    }
    return ctx
  }

  /** Closes what the context opened (after the server and subscriptions are stopped). */
  async closeStores(): Promise<void> {
    await this.verifier.close()
    await this.walCheckpointer?.close()
    await this.identityCache.close()
    if (this.db.open) this.db.close()
  }
}
