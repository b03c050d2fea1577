/**
 * AppViewServer: the XRPC server (app.bsky.*), the did:web document, image and video URLs, the admin
 * backfill route, and the ingester following the relay / PDSes.
 */
import { formatMultikey, parseDidKey } from '@stratos/core/crypto'
import { networkServerOptions } from '@stratos/core/config'
import { XRPCError, createXrpcServer, type XrpcServer } from '@stratos/core/xrpc'
import { createReadStream } from 'node:fs'
import { CID } from 'multiformats/cid'
import { isValidDid } from '@stratos/core/syntax'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { Gauge } from 'prom-client'
import { registerMethods } from './api/index.js'
import type { AppViewConfig } from './config.js'
import { AppContext, type AppContextOptions } from './context.js'
import { BlobNotFoundError } from './image/blob-cache.js'
import { LabelSubscriptions } from './labels/subscriber.js'

export type AppViewServerOptions = AppContextOptions

function isValidBlobCid(s: string): boolean {
  if (!/^[a-z0-9]+$/.test(s) || s.length > 128) return false
  try {
    return CID.parse(s).toString() === s
  } catch {
    return false
  }
}

const IMAGE_PRESETS = new Set(['avatar', 'banner', 'feed_thumbnail', 'feed_fullsize', 'avatar_thumbnail'])

function sendError(reply: FastifyReply, status: number, error: string, message: string): FastifyReply {
  return reply.code(status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify({ error, message }))
}

export class AppViewServer {
  private started = false

  private constructor(
    readonly ctx: AppContext,
    readonly xrpc: XrpcServer,
  ) {}

  get app() {
    return this.xrpc.app
  }

  get log(): Logger {
    return this.ctx.log
  }

  /** Opens and migrates the database, builds the app; call start() to listen and to follow upstream. */
  static async create(config: AppViewConfig, opts: AppViewServerOptions = {}): Promise<AppViewServer> {
    const ctx = await AppContext.create(config, opts)
    const xrpc = createXrpcServer({
      validateOutput: config.validateOutput,
      ...networkServerOptions(config.network),
      version: config.version,
      logger: config.logLevel === 'silent' ? false : (ctx.log as never),
      healthCheck: async () => {
        // a cheap query proves the database answers
        await ctx.db.selectFrom('ingest_cursor').select('source').limit(1).execute()
        return {}
      },
    })
    ctx.labelSubscriptions = new LabelSubscriptions({
      db: ctx.db,
      idResolver: ctx.idResolver,
      log: ctx.log.child({ component: 'labels' }),
      configured: ctx.defaultLabelers.map((l) => l.did),
      refreshMs: config.labelerRefreshMs,
      registry: xrpc.metrics?.registry,
      minBackoffMs: opts.minBackoffMs,
      maxBackoffMs: opts.maxBackoffMs,
    })
    const server = new AppViewServer(ctx, xrpc)
    if (xrpc.metrics) registerIngestMetrics(xrpc.metrics.registry, ctx)
    registerMethods(xrpc, ctx)
    server.registerRoutes()
    return server
  }

  get url(): string {
    return this.xrpc.url
  }

  get did(): string {
    return this.ctx.did
  }

  /** Listens, fixes the public URL (and did:web) if they were not configured, starts ingesting. */
  async start(): Promise<string> {
    const url = await this.xrpc.listen({ port: this.ctx.config.port, host: this.ctx.config.host })
    if (!this.ctx.config.publicUrl) this.ctx.setPublicUrl(url)
    this.ctx.ingester.start()
    this.ctx.labelSubscriptions?.start()
    this.started = true
    if (this.ctx.config.backfillOnStart) void this.startBackfill()
    return url
  }

  /** First start (or an unfinished backfill): once the live stream is open, so no event falls between. */
  private async startBackfill(): Promise<void> {
    const deadline = Date.now() + 10_000
    while (this.started && !this.ctx.ingester.connected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    if (!this.started) return
    try {
      if (await this.ctx.backfiller.startIfNeeded()) this.log.info('backfill of the upstream repos started')
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'backfill could not start')
    }
  }

  async close(): Promise<void> {
    const backfill = this.ctx.backfiller.stop()
    if (this.started) {
      await this.ctx.labelSubscriptions?.stop()
      await this.ctx.ingester.stop()
    }
    await backfill
    await this.ctx.ingester.verifier?.close()
    await this.ctx.readPool?.close()
    this.started = false
    await this.xrpc.close()
    await this.ctx.indexer.close()
    await this.ctx.database.close()
  }

  /** The did:web document: #atproto key and #bsky_appview (and #bsky_notif) service. */
  didDocument(): Record<string, unknown> {
    const did = this.ctx.did
    const { curve, publicKey } = parseDidKey(this.ctx.signingKey.did())
    return {
      '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
      id: did,
      verificationMethod: [{ id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: formatMultikey(curve, publicKey) }],
      service: [
        { id: '#bsky_appview', type: 'BskyAppView', serviceEndpoint: this.ctx.publicUrl },
        { id: '#bsky_notif', type: 'BskyNotificationService', serviceEndpoint: this.ctx.publicUrl },
      ],
    }
  }

  private registerRoutes(): void {
    const app = this.xrpc.app
    const ctx = this.ctx

    app.get('/', async (_req, reply) => {
      reply.header('content-type', 'text/plain; charset=utf-8')
      return `Stratos AppView ${ctx.config.version}\n\nXRPC: /xrpc/app.bsky.*   DID: ${ctx.did}\n`
    })

    app.get('/.well-known/did.json', async (_req, reply) => {
      if (!ctx.did.startsWith('did:web:')) return sendError(reply, 404, 'NotFound', 'this AppView does not use a did:web')
      return this.didDocument()
    })

    const serveBlob = async (reply: FastifyReply, did: string, cid: string, kind: 'image' | 'video') => {
      const actor = await ctx.db.selectFrom('actor').select('upstreamStatus').where('did', '=', did).executeTakeFirst()
      if (!actor || actor.upstreamStatus) return sendError(reply, 404, 'NotFound', 'blob not found')
      try {
        const blob = await ctx.blobs.get(did, cid, kind)
        const type = blob.mimeType.startsWith(`${kind}/`) ? blob.mimeType : 'application/octet-stream'
        reply
          .header('content-type', type)
          .header('content-length', String(blob.size))
          .header('cache-control', 'public, max-age=31536000, immutable')
          .header('x-content-type-options', 'nosniff')
          .header('content-security-policy', "default-src 'none'; sandbox")
        if (blob.file) return reply.send(createReadStream(blob.file))
        const bytes = blob.bytes!
        return reply.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      } catch (err) {
        if (err instanceof BlobNotFoundError) return sendError(reply, 404, 'NotFound', err.message)
        throw err
      }
    }

    app.get('/img/:preset/plain/:did/:file', async (req: FastifyRequest<{ Params: { preset: string; did: string; file: string } }>, reply) => {
      const { preset, did, file } = req.params
      if (!IMAGE_PRESETS.has(preset)) return sendError(reply, 400, 'InvalidRequest', `unknown image preset ${preset}`)
      return serveBlob(reply, did, file.replace(/@[a-z]+$/, ''), 'image')
    })

    app.get('/vid/:did/:cid/playlist.m3u8', async (req: FastifyRequest<{ Params: { did: string; cid: string } }>, reply) => {
      const { did, cid } = req.params
      // only a valid DID and CID go into the playlist (no CR/LF or other injected lines), URL-encoded
      if (!isValidDid(did)) return sendError(reply, 400, 'InvalidRequest', 'not a valid DID')
      if (!isValidBlobCid(cid)) return sendError(reply, 400, 'InvalidRequest', 'not a valid CID')
      reply.header('content-type', 'application/vnd.apple.mpegurl')
      // no transcoding: one segment, the uploaded file as is
      return ['#EXTM3U', '#EXT-X-VERSION:7', '#EXT-X-TARGETDURATION:3600', '#EXT-X-PLAYLIST-TYPE:VOD', '#EXTINF:3600.0,', `/vid/${encodeURIComponent(did)}/${encodeURIComponent(cid)}/video`, '#EXT-X-ENDLIST', ''].join('\n')
    })

    app.get('/vid/:did/:cid/video', async (req: FastifyRequest<{ Params: { did: string; cid: string } }>, reply) => {
      return serveBlob(reply, req.params.did, req.params.cid, 'video')
    })

    const adminAuth = async (req: FastifyRequest, reply: FastifyReply): Promise<boolean> => {
      try {
        await ctx.auth.admin({ req })
        return true
      } catch (err) {
        if (err instanceof XRPCError) {
          await sendError(reply, err.status, err.error ?? 'AuthRequired', err.message)
          return false
        }
        throw err
      }
    }

    // admin: ingest and backfill state
    app.get('/admin/status', async (req, reply) => {
      if (!(await adminAuth(req, reply))) return reply
      const cursors: Record<string, number | null> = {}
      for (const source of [...(ctx.config.relayUrl ? [ctx.config.relayUrl] : []), ...ctx.config.pdsUrls]) {
        cursors[source] = (await ctx.ingester.getCursor(source)) ?? null
      }
      return {
        ingest: { connected: ctx.ingester.connected, eventsInFlight: ctx.ingester.eventsInFlight, cursors, ...ctx.ingester.stats },
        backfill: await ctx.backfiller.status(),
        repoFetch: { ...ctx.ingester.fetcher.stats, hosts: ctx.ingester.fetcher.hostStats() },
      }
    })

    // admin: index (or re-index) an account now; without ?did, backfill every upstream repo again
    app.post('/admin/backfill', async (req: FastifyRequest<{ Querystring: { did?: string } }>, reply) => {
      if (!(await adminAuth(req, reply))) return reply
      const did = req.query.did
      if (did === undefined) {
        const already = ctx.backfiller.isRunning
        if ((ctx.config.relayUrl ? 1 : 0) + ctx.config.pdsUrls.length === 0) {
          return sendError(reply, 400, 'InvalidRequest', 'no upstream to backfill from (APPVIEW_RELAY_URL or APPVIEW_PDS_URLS)')
        }
        if (!already) void ctx.backfiller.start({ restart: true })
        return reply.code(202).send({ started: !already, status: await ctx.backfiller.status() })
      }
      if (!did.startsWith('did:')) return sendError(reply, 400, 'InvalidRequest', 'did must be a DID')
      const ok = await ctx.ingester.resync(did)
      if (!ok) return sendError(reply, 502, 'UpstreamFailure', `could not fetch and verify the repo of ${did}`)
      return { did, ok: true }
    })
  }
}

/** Ingest and backfill gauges next to the HTTP metrics (/metrics). */
function registerIngestMetrics(registry: import('prom-client').Registry, ctx: AppContext): void {
  const registers = [registry]
  const gauge = (name: string, help: string, read: () => number | null) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const v = read()
        if (v !== null) this.set(v)
      },
    })
  gauge('appview_backfill_repos_total', 'Repos listed by the upstreams for the backfill', () => ctx.backfiller.metrics().total)
  gauge('appview_backfill_repos_done', 'Repos backfilled', () => ctx.backfiller.metrics().done)
  gauge('appview_backfill_repos_failed', 'Repos whose backfill failed', () => ctx.backfiller.metrics().failed)
  gauge('appview_backfill_records_per_second', 'Records indexed per second by the running backfill', () => ctx.backfiller.metrics().recordsPerSec)
  gauge('appview_backfill_eta_seconds', 'Estimated seconds until the running backfill ends', () => ctx.backfiller.metrics().etaSeconds)
  gauge('appview_backfill_running', '1 while a backfill runs', () => (ctx.backfiller.metrics().running ? 1 : 0))
  gauge('appview_ingest_events_in_flight', 'Stream events being handled or waiting behind their account', () => ctx.ingester.eventsInFlight)
  gauge('appview_ingest_commits', 'Commits received since start', () => ctx.ingester.stats.commits)
  gauge('appview_ingest_resyncs', 'Repo resyncs (getRepo) since start', () => ctx.ingester.stats.resyncs)
  gauge('appview_ingest_resync_failures', 'Failed resyncs since start', () => ctx.ingester.stats.resyncFailures)
  gauge('appview_repo_fetch_too_slow', 'getRepo answers aborted by the byte-rate floor', () => ctx.ingester.fetcher.stats.tooSlow)
  gauge('appview_repo_fetch_refused', 'getRepo fetches refused by a per-host budget', () => ctx.ingester.fetcher.stats.refused)
}
