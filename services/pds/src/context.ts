import fs from 'node:fs'
import { KeyVault } from './account/key-vault.js'
import { secureDir, secureFile } from './util/secure-fs.js'
import path from 'node:path'
import { pino, type Logger } from 'pino'
import type { OAuthProvider } from '@atproto/oauth-provider/provider'
import { importKeypair, type SigningKeypair } from '@stratos/core/crypto'
import type { Database } from '@stratos/core/db'
import { IdentityResolver, SqliteIdentityCache } from '@stratos/core/identity'
import { WalCheckpointer } from '@stratos/core/stream'
import { openAccountDb, type AccountDbSchema } from './account/db.js'
import { AccountManager } from './account/manager.js'
import { PlcClient } from './account/plc.js'
import { AccountSettings } from './account/settings.js'
import { SessionTokens } from './account/tokens.js'
import { ActorStore, CommitWorkers } from './actor-store/index.js'
import { PdsAuth } from './auth.js'
import { DiskBlobStore, S3BlobStore } from './blobstore.js'
import type { PdsConfig } from './config.js'
import { createMailer, type Mailer } from './mailer.js'
import { createOAuthProvider } from './oauth/provider.js'
import { RepoWriter } from './repo/writer.js'
import { Sequencer } from './sequencer/index.js'

/** Everything the handlers need, built once at start-up. */
export interface AppContext {
  cfg: PdsConfig
  logger: Logger
  accountDb: Database<AccountDbSchema>
  tokens: SessionTokens
  accounts: AccountManager
  auth: PdsAuth
  blobstore: DiskBlobStore
  actorStore: ActorStore
  sequencer: Sequencer
  /** checkpoints the actor stores' and the event log's WALs in a worker thread */
  walCheckpointer: WalCheckpointer
  repoWriter: RepoWriter
  plc: PlcClient
  /** the PDS's did:plc rotation key (PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX) */
  plcRotationKey: SigningKeypair
  idResolver: IdentityResolver
  /** DID documents the resolver fetched, kept across restarts (PDS_DID_CACHE_DB_LOCATION) */
  didCache: SqliteIdentityCache
  /** account settings and life cycle on the service database (email tokens, handle, takedown, deletion) */
  settings: AccountSettings
  /** SMTP when PDS_EMAIL_SMTP_URL is set, else the log */
  mailer: Mailer
  /** the OAuth authorization server (set right after the context is built: it needs the context) */
  oauth: OAuthProvider
}

export async function createContext(
  cfg: PdsConfig,
  opts: { logger?: Logger; oauthFetch?: typeof globalThis.fetch } = {},
): Promise<AppContext> {
  const logger = opts.logger ?? pino({ level: cfg.logLevel, base: { service: 'pds' } })
  // secrets at rest: data directories 0700, database files 0600
  secureDir(cfg.db.directory)
  secureDir(cfg.db.actorStoreDirectory)
  secureDir(cfg.blobstore.location)
  secureDir(cfg.blobstore.tempLocation)
  for (const file of [cfg.db.accountDbPath, cfg.db.sequencerDbPath, cfg.db.didCacheDbPath]) {
    secureDir(path.dirname(file))
    secureFile(file)
  }
  const vault = new KeyVault(cfg.signingKeyEncryptionKey ?? null)

  const blobstore = cfg.blobstore.s3
    ? new S3BlobStore(cfg.blobstore.tempLocation, cfg.blobstore.s3)
    : new DiskBlobStore(cfg.blobstore.location, cfg.blobstore.tempLocation)
  await blobstore.init()

  const accountDb = await openAccountDb(cfg.db.accountDbPath)
  const tokens = new SessionTokens(cfg.secrets.jwtSecret, cfg.service.did, cfg.auth.accessTokenTtlSec, cfg.auth.refreshTokenTtlSec)
  const accounts = new AccountManager(accountDb.db, tokens, {
    refreshGraceMs: cfg.auth.refreshGraceMs,
    hostname: cfg.service.hostname,
    vault,
    sqlite: accountDb.sqlite,
  })
  const walCheckpointer = new WalCheckpointer({
    name: 'wal-checkpoint',
    onWorkerError: (err) => logger.error({ err }, 'WAL checkpoint worker died (restarted)'),
  })
  const actorStore = new ActorStore(cfg.db.actorStoreDirectory, blobstore, cfg.db.actorStoreCacheSize, walCheckpointer)
  if (cfg.db.writeWorkers > 0) {
    actorStore.commitWorkers = new CommitWorkers(cfg.db.writeWorkers, (err) => logger.error({ err }, 'commit worker died (restarted)'))
    // loaded before the server serves (a first write does not wait for it, nor is its memory counted later)
    await actorStore.commitWorkers.ready()
  }
  const sequencer = new Sequencer(cfg.db.sequencerDbPath, { checkpointer: walCheckpointer })
  const plcRotationKey = await importKeypair(cfg.secrets.plcRotationKeyHex, 'k256')
  const didCache = await SqliteIdentityCache.open(cfg.db.didCacheDbPath)
  const idResolver = new IdentityResolver({
    plcUrl: cfg.identity.plcUrl,
    cache: didCache,
    allowPrivateAddresses: cfg.identity.allowPrivateAddresses,
    onBackgroundError: (err, did) => logger.warn({ err, did }, 'background DID refresh failed'),
  })

  const ctx: AppContext = {
    cfg,
    logger,
    accountDb,
    tokens,
    accounts,
    auth: new PdsAuth(tokens, accounts, cfg.secrets.adminPassword, {
      did: cfg.service.did,
      publicUrl: cfg.service.publicUrl,
      oauth: () => ctx.oauth ?? null,
    }),
    blobstore,
    actorStore,
    sequencer,
    walCheckpointer,
    repoWriter: new RepoWriter(accounts, actorStore, sequencer),
    plc: new PlcClient(cfg.identity.plcUrl),
    plcRotationKey,
    idResolver,
    didCache,
    settings: new AccountSettings(accountDb.db, vault),
    mailer: createMailer(cfg, logger),
    oauth: null as unknown as OAuthProvider,
  }
  ctx.oauth = await createOAuthProvider(ctx, opts.oauthFetch)
  return ctx
}

export async function closeContext(ctx: AppContext): Promise<void> {
  ctx.mailer.close()
  await ctx.actorStore.close()
  await ctx.sequencer.close()
  await ctx.walCheckpointer.close()
  ctx.accounts.flushRepoRoots()
  await ctx.accountDb.close()
  await ctx.didCache.close()
}
