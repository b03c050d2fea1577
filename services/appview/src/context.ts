/**
 * Builds the AppView's dependencies once: database (migrated), indexer, hydrator, views, identity
 * resolver, ingester, blob cache, signing key and auth verifiers.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { JtiReplayCache } from '@stratos/core/auth'
import { generateKeypair, importKeypair, type SigningKeypair } from '@stratos/core/crypto'
import { migrateToLatest, openPostgres, openSqlite, type Database } from '@stratos/core/db'
import { IdentityResolver, type IdentityResolverOptions } from '@stratos/core/identity'
import {
  AuthRequiredError,
  adminBasicAuth,
  optional,
  serviceJwtAuth,
  type AdminCredentials,
  type AuthVerifier,
  type ServiceCredentials,
} from '@stratos/core/xrpc'
import type { AppViewConfig } from './config.js'
import { didWebFor } from './config.js'
import { Hydrator } from './hydration/hydrator.js'
import { readDirectly } from './hydration/sql.js'
import { BlobCache } from './image/blob-cache.js'
import { Indexer } from './indexer/indexer.js'
import { appviewMigrations } from './indexer/migrations.js'
import type { DatabaseSchema } from './indexer/schema.js'
import { DbIdentityCache } from './ingest/identity-cache.js'
import { Ingester, type IngestSource, type IngesterOptions } from './ingest/ingester.js'
import { RepoFetcher } from './ingest/repo-fetcher.js'
import { CommitVerifier } from '@stratos/core/workers'
import { WalCheckpointer } from '@stratos/core/stream'
import { parseAcceptLabelers, type AcceptedLabeler } from './labels/labels.js'
import type { LabelSubscriptions } from './labels/subscriber.js'
import { Backfiller } from './ingest/backfill.js'
import { Views } from './views/views.js'
import { DEFAULT_CACHE_ROWS, READ_MMAP_BYTES, ReadPool } from './api/read-pool.js'
import { ChangeFeed } from './hydration/change-feed.js'

/** the SQLite writer connection's page cache, KiB */
export const WRITER_CACHE_KIB = 64 * 1024

export interface AppContextOptions {
  /** replaces the identity resolver built from the config (tests) */
  idResolver?: IdentityResolver
  /** extra IdentityResolver options (tests: resolveTxt, lookup...) */
  identityOptions?: Partial<IdentityResolverOptions>
  logger?: Logger
  /** indexer clock (tests) */
  now?: () => string
  /** reconnect backoff for the upstream streams */
  minBackoffMs?: number
  maxBackoffMs?: number
  /** ingest bounds and retry delays (tests make them small) */
  ingest?: Pick<IngesterOptions, 'maxInFlight' | 'maxPerAccount' | 'maxBuffered' | 'bufferStallMs' | 'identityRetryDelaysMs' | 'resyncRetryDelaysMs' | 'maxBatch' | 'batchBackfills' | 'rawFrames' | 'batchLingerMs'>
}

export interface AuthVerifiers {
  /** service JWT if present (a bad one is still a 401), else anonymous */
  optional: AuthVerifier<ServiceCredentials | null>
  required: AuthVerifier<ServiceCredentials>
  admin: AuthVerifier<AdminCredentials>
}

export class AppContext {
  /** set by AppViewServer once the public URL is known */
  publicUrl: string
  did: string
  /** the labelers applied when a request names none: APPVIEW_LABELERS and the moderation service */
  readonly defaultLabelers: AcceptedLabeler[]
  /** set by AppViewServer: the subscriptions to the labelers' streams */
  labelSubscriptions: LabelSubscriptions | null = null
  /** the read workers (APPVIEW_READ_WORKERS; SQLite files only), or null: reads in the main thread */
  readPool: ReadPool | null = null

  private constructor(
    readonly config: AppViewConfig,
    readonly database: Database<DatabaseSchema>,
    readonly indexer: Indexer,
    readonly hydrator: Hydrator,
    readonly views: Views,
    readonly idResolver: IdentityResolver,
    readonly ingester: Ingester,
    readonly backfiller: Backfiller,
    readonly blobs: BlobCache,
    readonly signingKey: SigningKeypair,
    readonly log: Logger,
    readonly auth: AuthVerifiers,
  ) {
    this.publicUrl = views.publicUrl
    this.did = config.did ?? didWebFor(this.publicUrl)
    const dids = [...config.labelers]
    if (config.modServiceDid && !dids.includes(config.modServiceDid)) dids.push(config.modServiceDid)
    this.defaultLabelers = dids.map((did) => ({ did, redact: did === config.modServiceDid }))
  }

  /** The labelers a request accepts: its `atproto-accept-labelers` header, else the defaults. */
  acceptedLabelers(header: string | string[] | undefined): AcceptedLabeler[] {
    const parsed = parseAcceptLabelers(header)
    if (!parsed) return this.defaultLabelers
    const mod = this.config.modServiceDid
    if (mod && !parsed.some((l) => l.did === mod)) parsed.push({ did: mod, redact: true })
    return parsed
  }

  get db() {
    return this.database.db
  }

  /** Audiences a service JWT may name: our DID, bare or with the #bsky_appview service id. */
  get audiences(): string[] {
    return [this.did, `${this.did}#bsky_appview`]
  }

  setPublicUrl(url: string): void {
    this.publicUrl = url.replace(/\/+$/, '')
    this.views.publicUrl = this.publicUrl
    if (!this.config.did) this.did = didWebFor(this.publicUrl)
  }

  static async create(config: AppViewConfig, opts: AppContextOptions = {}): Promise<AppContext> {
    const log = opts.logger ?? pino({ level: config.logLevel, base: { service: 'appview' } })
    if (config.dataDirectory) mkdirSync(config.dataDirectory, { recursive: true, mode: 0o700 })

    const isPg = /^postgres(ql)?:\/\//.test(config.dbUrl)
    const database = isPg
      ? await openPostgres<DatabaseSchema>(config.dbUrl, config.dbSchema ? { schema: config.dbSchema } : {})
      : openSqlite<DatabaseSchema>(config.dbUrl, { statementCache: 1000 })
    // the writer's statement journals in memory (set first: a change drops the connection's TEMP objects).
    // Every multi-row statement of a batch keeps one; on a temp file past 64 KiB, its page writes (a pwrite
    // each) were ~15 % of the main thread's CPU in live ingest.
    database.sqlite?.pragma('temp_store = MEMORY')
    // the writer reads the pages it changes (index leaves at random keys: a backfill batch lands on thousands)
    // through a memory map as the read workers do, not with a pread and a copy each, and keeps up to 64 MiB of
    // them across transactions (SQLite's default cache: 2 MiB). 1M-record backfill, two loaded pairs run side
    // by side: main thread 64 / 64 against 68 / 68 µs per record (system 12 / 11 against 16 / 16), bytes read
    // per record 6.4 / 6.6 KB against 11.3 / 10.5
    if (database.sqlite && !database.sqlite.memory) {
      database.sqlite.pragma(`mmap_size = ${READ_MMAP_BYTES}`)
      database.sqlite.pragma(`cache_size = -${WRITER_CACHE_KIB}`)
    }
    try {
      await migrateToLatest(database.db, appviewMigrations(database.dialect))
    } catch (err) {
      await database.close()
      throw err
    }

    if (database.sqlite) readDirectly(database.db, database.sqlite)
    // SQLite files: WAL checkpoints in a worker thread, not inside the COMMIT of a batch on the event loop
    const checkpointer =
      database.sqlite && !database.sqlite.memory
        ? new WalCheckpointer({ name: 'appview-wal', onWorkerError: (err) => log.error({ err }, 'the WAL checkpoint worker died; restarted') })
        : undefined
    const indexer = new Indexer(database, { ...(opts.now ? { now: opts.now } : {}), ...(checkpointer ? { checkpointer } : {}) })
    const hydrator = new Hydrator(database.db, config.modServiceDid ? { modServiceDid: config.modServiceDid } : {})
    const publicUrl = config.publicUrl ?? `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${config.port}`
    const views = new Views({ publicUrl })
    const idResolver =
      opts.idResolver ??
      new IdentityResolver({
        plcUrl: config.plcUrl,
        cache: new DbIdentityCache(database.db),
        allowPrivateAddresses: config.devMode,
        // (a backfill resolves every account's DID: one connection to the directory, not one per DID)
        plcKeepAlive: true,
        handleResolverHttpBase: config.handleResolverUrl,
        onBackgroundError: (err, did) => log.debug({ did, err: String(err) }, 'background DID refresh failed'),
        ...opts.identityOptions,
      })
    const sources: IngestSource[] = []
    if (config.relayUrl) sources.push({ kind: 'relay', url: config.relayUrl })
    for (const url of config.pdsUrls) sources.push({ kind: 'pds', url })
    const fetcher = new RepoFetcher({ ...config.repoFetch, allowPrivateAddresses: config.devMode })
    const verifier = new CommitVerifier({
      workers: config.verifyWorkers ?? 0,
      // (#commit records are decoded and lexicon-checked in the workers)
      preloadLexicons: true,
      onWorkerError: (err, index) => log.error({ err, worker: index }, 'a verification worker died; restarted'),
    })
    const ingester = new Ingester({
      indexer,
      idResolver,
      log: log.child({ component: 'ingest' }),
      sources,
      fetcher,
      verifier,
      minBackoffMs: opts.minBackoffMs,
      maxBackoffMs: opts.maxBackoffMs,
      ...opts.ingest,
    })
    const backfiller = new Backfiller({
      db: database.db,
      ingester,
      log: log.child({ component: 'backfill' }),
      upstreams: config.relayUrl ? [config.relayUrl] : config.pdsUrls,
      concurrency: config.backfillConcurrency,
      maxBytesInFlight: config.backfillMaxBytes,
    })
    const blobs = new BlobCache({
      dir: config.dataDirectory && config.dbUrl !== ':memory:' ? join(config.dataDirectory, 'blob-cache') : null,
      idResolver,
      allowPrivateAddresses: config.devMode,
      maxCacheBytes: config.imageCacheMaxBytes,
      // the detail (addresses, causes) goes to the log; the client is told "not found"
      onFetchError: (err, did, cid) => log.info({ err: (err as Error).message, did, cid }, 'blob fetch failed'),
    })
    const signingKey = await loadSigningKey(config, log)

    const replayCache = new JtiReplayCache()
    // the audience is read per request: the DID may only be known once the server listens
    const self: { ctx?: AppContext } = {}
    const serviceAuth: AuthVerifier<ServiceCredentials> = (authCtx) =>
      serviceJwtAuth({
        audience: self.ctx!.audiences,
        getSigningKey: (iss, forceRefresh) => idResolver.getSigningKey(iss, forceRefresh),
        replayCache,
      })(authCtx)
    const adminPassword = config.adminPassword
    const admin: AuthVerifier<AdminCredentials> = adminPassword
      ? adminBasicAuth(adminPassword)
      : async () => {
          throw new AuthRequiredError('Admin endpoints are disabled (APPVIEW_ADMIN_PASSWORD is not set)')
        }
    const auth: AuthVerifiers = { optional: optional(serviceAuth), required: serviceAuth, admin }
    self.ctx = new AppContext(config, database, indexer, hydrator, views, idResolver, ingester, backfiller, blobs, signingKey, log, auth)
    if (!isPg && config.dbUrl !== ':memory:' && (config.readWorkers ?? 0) > 0) {
      // what each write touches, told to the workers so that their kept results survive unrelated writes
      let changes: ChangeFeed | undefined
      if ((config.readCacheRows ?? DEFAULT_CACHE_ROWS) > 0) {
        changes = new ChangeFeed()
        changes.attach(database.sqlite!)
      }
      self.ctx.readPool = new ReadPool({
        size: config.readWorkers!,
        ...(changes ? { changes } : {}),
        ...(config.readCacheRows !== undefined ? { cacheRows: config.readCacheRows } : {}),
        dbPath: config.dbUrl,
        ...(config.modServiceDid ? { modServiceDid: config.modServiceDid } : {}),
        onWorkerError: (err, index) => log.error({ err, worker: index }, 'a read worker died'),
      })
    }
    return self.ctx
  }
}

/** The #atproto key of the DID document: from the config, else generated and kept in the data dir. */
async function loadSigningKey(config: AppViewConfig, log: Logger): Promise<SigningKeypair> {
  if (config.signingKeyHex) return importKeypair(config.signingKeyHex, 'k256')
  const persist = config.dataDirectory && config.dbUrl !== ':memory:'
  const file = persist ? join(config.dataDirectory!, 'signing-key.k256.hex') : null
  if (file && existsSync(file)) return importKeypair(readFileSync(file, 'utf8').trim(), 'k256')
  const key = await generateKeypair('k256')
  if (file) {
    writeFileSync(file, Buffer.from(key.export()).toString('hex'), { mode: 0o600 })
    log.warn({ file }, 'APPVIEW_SIGNING_KEY_K256_PRIVATE_KEY_HEX is not set; generated a signing key')
  }
  return key
}
