import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { SubscriptionServer } from '@stratos/core/stream'
import { networkServerOptions } from '@stratos/core/config'
import { createXrpcServer, type XrpcServer } from '@stratos/core/xrpc'
import { repoCursor } from './account/manager.js'
import { registerApi } from './api/index.js'
import { rateLimitOptions } from './rate-limits.js'
import type { PdsConfig } from './config.js'
import { closeContext, createContext, type AppContext } from './context.js'
import { Crawlers } from './crawlers.js'
import { registerOAuthRoutes } from './oauth/provider.js'
import { createProxyCatchall } from './proxy/index.js'
import { registerBasicRoutes } from './well-known.js'
import { validatesOutput } from './util/json-output.js'

const HOUR = 60 * 60 * 1000
/** How long close() lets in-flight requests finish before it cuts the remaining connections. */
const SHUTDOWN_GRACE_MS = 3000
/** Uploaded blobs never referenced by a record are removed after this long. */
const TEMP_BLOB_MAX_AGE_MS = 6 * HOUR

export interface PdsServerOptions {
  logger?: Logger
  /**
   * How the authorization server fetches client metadata documents and client JWKS (default: core's safe
   * fetch). For embedding the PDS where apps are reached another way than the public internet.
   */
  oauthFetch?: typeof globalThis.fetch
}

/**
 * The PDS: XRPC API, the repo event stream and the well-known routes on one fastify server.
 * `PdsServer.create(config)` builds everything (opening databases); `start()` listens; `close()` stops
 * background work, closes connections and databases.
 */
export class PdsServer {
  private timers: NodeJS.Timeout[] = []
  private boundUrl: string | null = null

  private constructor(
    readonly ctx: AppContext,
    readonly xrpc: XrpcServer,
    readonly subscriptions: SubscriptionServer,
    readonly crawlers: Crawlers,
  ) {}

  static async create(cfg: PdsConfig, opts: PdsServerOptions = {}): Promise<PdsServer> {
    const ctx = await createContext(cfg, opts)
    for (const warning of cfg.warnings ?? []) ctx.logger.warn(warning)
    const xrpc = createXrpcServer({
      logger: ctx.logger,
      version: cfg.service.version,
      bodyLimits: { raw: Math.max(cfg.service.blobUploadLimit, 5 * 1024 * 1024) },
      rateLimits: rateLimitOptions(cfg),
      ...networkServerOptions(cfg.network),
      // app.bsky.* / chat.bsky.* and atproto-proxy calls without a local handler go to their service
      catchall: createProxyCatchall(ctx),
      // responses are checked against their lexicons under test (vitest sets NODE_ENV=test), never in
      // production, where it would cost every request a walk of its output
      validateOutput: validatesOutput(),
      // a request with a DPoP proof gets a DPoP-Nonce header from the OAuth onRequest hook (registerOAuthRoutes)
      fastPathFilter: (req) => req.headers.dpop === undefined,
    })
    registerOAuthRoutes(xrpc.app, ctx, ctx.oauth)
    registerBasicRoutes(xrpc.app, ctx)
    const { subscriptions } = registerApi(xrpc, ctx)
    const crawlers = new Crawlers(new URL(cfg.service.publicUrl).host, cfg.crawlers, ctx.logger)
    ctx.sequencer.on('event', () => crawlers.notifyOfUpdate())
    const server = new PdsServer(ctx, xrpc, subscriptions, crawlers)
    await server.recoverUnsequencedCommits()
    return server
  }

  /**
   * A commit is stored in the account's store, then sequenced, then recorded as the head in the service
   * database. After a crash between the first and last step the two heads differ: the commit may never
   * have reached the firehose, so a #sync announces the repo's current state.
   */
  private async recoverUnsequencedCommits(): Promise<void> {
    const { accounts, actorStore, sequencer, logger } = this.ctx
    let cursor: string | undefined
    for (;;) {
      const page = await accounts.listRepos({ limit: 500, cursor })
      for (const acct of page) {
        const repo = actorStore.get(acct.did)
        const head = repo?.getHead()
        if (!repo || !head || head.cid.toString() === acct.head) continue
        // an inactive account announces nothing (activation sends a #sync with whatever it holds then)
        const active = !acct.deactivatedAt && !acct.takedownRef
        logger.warn({ did: acct.did, stored: head.rev, recorded: acct.rev, active }, 'repo head ahead of the service db')
        if (active) sequencer.sequenceSync(acct.did, head.cid, repo.storage.getBytesSync(head.cid)!, head.rev)
        await accounts.updateRepoRoot(acct.did, head.cid.toString(), head.rev)
      }
      if (page.length < 500) break
      const last = page[page.length - 1]!
      cursor = repoCursor(last.createdAt, last.did)
    }
  }

  get url(): string {
    if (!this.boundUrl) throw new Error('PdsServer is not started')
    return this.boundUrl
  }

  async start(): Promise<string> {
    const { cfg } = this.ctx
    await this.xrpc.app.listen({ port: cfg.service.port, host: cfg.service.bindHost })
    const addr = this.xrpc.app.server.address() as AddressInfo
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
    this.boundUrl = `http://${host}:${addr.port}`
    this.startBackgroundJobs()
    this.crawlers.notifyOfUpdate()
    this.ctx.logger.info({ url: this.boundUrl, publicUrl: cfg.service.publicUrl, did: cfg.service.did }, 'PDS started')
    return this.boundUrl
  }

  private startBackgroundJobs(): void {
    const { ctx } = this
    const hourly = setInterval(() => {
      void this.runMaintenance().catch((err) => ctx.logger.error({ err }, 'maintenance failed'))
    }, HOUR)
    hourly.unref()
    this.timers.push(hourly)
  }

  /** Prunes the event log to the backfill window and removes stale temporary blobs. */
  async runMaintenance(now = Date.now()): Promise<void> {
    const { ctx } = this
    ctx.sequencer.log.prune({ maxAgeMs: ctx.cfg.subscription.backfillLimitMs, now })
    const before = new Date(now - TEMP_BLOB_MAX_AGE_MS).toISOString()
    for (const did of ctx.actorStore.listDids()) {
      await ctx.actorStore.get(did)?.removeStaleTempBlobs(before)
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    await this.subscriptions.close()
    // in-flight requests get a grace period; a connection still open after it (a client that keeps a
    // socket busy without a request under way) is cut, so a shutdown never hangs
    const force = setTimeout(() => {
      this.ctx.logger.warn('connections still open after the shutdown grace period; closing them')
      this.xrpc.app.server.closeAllConnections()
    }, SHUTDOWN_GRACE_MS)
    try {
      await this.xrpc.close()
    } finally {
      clearTimeout(force)
    }
    await this.crawlers.settled()
    await this.ctx.idResolver.settled()
    await closeContext(this.ctx)
  }
}
