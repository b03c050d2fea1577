import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { networkServerOptions } from '@stratos/core/config'
import { hardenFastify, hardenedFastifyOptions } from '@stratos/core/xrpc'
import type { PlcConfig } from './config.js'
import { formatDidDocument } from './document.js'
import { PlcMetrics } from './metrics.js'
import { HeadMismatchError, KeyedMutex, PlcStore, type StoredEntry } from './store.js'
import type { ExportedLogEntry } from './types.js'
import { isValidPlcDid, opToData, validateNextOp, type AcceptedOp, type PlcErrorCode } from './validate.js'

export const MAX_EXPORT_COUNT = 1000

/** An error with an HTTP status, rendered as `{"message": ...}` like the reference directory. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly code?: PlcErrorCode | string,
  ) {
    super(message)
    this.name = 'HttpError'
  }
}

export interface PlcServerOptions {
  /** milliseconds since the epoch; the time stamped on accepted operations (tests move it) */
  now?: () => number
}

const HOME_TEXT = (version: string) => `Stratos did:plc directory (spec v0.3.0), version ${version}

  GET  /:did             DID document (404 unknown, 410 tombstoned)
  GET  /:did/data        current DID state
  GET  /:did/log         valid operations
  GET  /:did/log/audit   every operation, with nullified flags and timestamps
  GET  /:did/log/last    latest valid operation
  POST /:did             submit a signed operation (JSON)
  GET  /export           JSON lines; ?after=<seq|ISO timestamp>&count=<1..1000>
  GET  /xrpc/_health     {"version"}
  GET  /metrics          Prometheus metrics
`

export class PlcServer {
  readonly metrics = new PlcMetrics()
  private readonly locks = new KeyedMutex()
  private readonly now: () => number
  private boundUrl: string | undefined

  private constructor(
    readonly config: PlcConfig,
    readonly store: PlcStore,
    readonly app: FastifyInstance,
    opts: PlcServerOptions,
  ) {
    this.now = opts.now ?? Date.now
  }

  /** Opens the database (creating its directory) and builds the HTTP app; call start() to listen. */
  static async create(config: PlcConfig, opts: PlcServerOptions = {}): Promise<PlcServer> {
    if (config.dbPath !== ':memory:') mkdirSync(dirname(config.dbPath), { recursive: true, mode: 0o700 })
    const store = await PlcStore.open(config.dbPath)
    const net = networkServerOptions(config.network)
    const hardening = { ...net.connections, trustedProxies: net.trustedProxies }
    const app = Fastify({
      ...hardenedFastifyOptions(hardening),
      logger: config.logLevel === 'silent' ? false : { level: config.logLevel },
      bodyLimit: 256 * 1024,
    })
    hardenFastify(app, hardening)
    const server = new PlcServer(config, store, app, opts)
    server.registerRoutes()
    return server
  }

  /** The base URL the server listens on (after start()). */
  get url(): string {
    if (!this.boundUrl) throw new Error('PlcServer is not started')
    return this.boundUrl
  }

  async start(): Promise<string> {
    await this.app.listen({ port: this.config.port, host: this.config.host })
    const addr = this.app.server.address() as AddressInfo
    const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address
    this.boundUrl = `http://${host}:${addr.port}`
    return this.boundUrl
  }

  async close(): Promise<void> {
    await this.app.close()
    await this.store.close()
  }

  /**
   * Validates and stores an operation for `did`. Submissions for one DID run one at a time, so two concurrent
   * updates are decided in order and never both appended to the same head.
   */
  async submitOperation(did: string, op: unknown): Promise<AcceptedOp> {
    if (!isValidPlcDid(did)) throw new HttpError(400, `not a valid did:plc identifier: ${did}`, 'malformed')
    return this.locks.run(did, async () => {
      const log = await this.store.getLog(did)
      let latest = 0
      let head: StoredEntry | undefined
      for (const e of log) {
        latest = Math.max(latest, Date.parse(e.createdAt))
        if (!e.nullified) head = e
      }
      // createdAt strictly increases within a DID's log, even if two operations arrive in the same millisecond
      const createdAt = new Date(Math.max(this.now(), latest + 1))
      const res = validateNextOp(did, log, op, createdAt, { mode: 'new' })
      if (!res.ok) {
        this.metrics.operations.inc({ result: 'rejected', kind: res.code })
        throw new HttpError(400, res.message, res.code)
      }
      try {
        await this.store.append(did, { cid: res.cid, operation: res.operation, createdAt, nullified: res.nullified }, head?.cid ?? null)
      } catch (err) {
        if (err instanceof HeadMismatchError) throw new HttpError(409, err.message)
        throw err
      }
      this.metrics.operations.inc({ result: 'accepted', kind: res.operation.type })
      if (res.nullified.length > 0) this.metrics.nullified.inc(res.nullified.length)
      return res
    })
  }

  private registerRoutes(): void {
    const { app, store, config, metrics } = this

    app.setErrorHandler((err: { statusCode?: number; message?: string }, req, reply) => {
      const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
      if (status >= 500) req.log.error({ err }, 'request failed')
      void reply.status(status).send({ message: status >= 500 ? 'Internal Server Error' : (err.message ?? 'Bad Request') })
    })
    app.setNotFoundHandler((req, reply) => {
      void reply.status(404).send({ message: `Not found: ${req.method} ${req.url.split('?')[0]}` })
    })
    app.addHook('onSend', async (_req, reply, payload) => {
      reply.header('access-control-allow-origin', '*')
      return payload
    })
    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? 'unmatched'
      metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) })
      metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000)
    })

    app.get('/', async (_req, reply) => {
      return reply.type('text/plain; charset=utf-8').send(HOME_TEXT(config.version))
    })

    const health = async (_req: unknown, reply: import('fastify').FastifyReply) => {
      try {
        await store.healthCheck()
      } catch {
        return reply.status(503).send({ version: config.version, error: 'Service Unavailable' })
      }
      return reply.send({ version: config.version })
    }
    app.get('/xrpc/_health', health)
    app.get('/_health', health)

    app.get('/metrics', async (_req, reply) => {
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
    })

    app.get<{ Querystring: Record<string, unknown> }>('/export', async (req, reply) => {
      const { count: countRaw, after: afterRaw } = req.query
      let count = MAX_EXPORT_COUNT
      if (countRaw !== undefined) {
        if (typeof countRaw !== 'string' || !/^\d+$/.test(countRaw) || Number(countRaw) < 1) {
          throw new HttpError(400, 'Invalid count parameter: expected an integer from 1 to 1000')
        }
        count = Math.min(Number(countRaw), MAX_EXPORT_COUNT)
      }
      let lines: unknown[]
      if (afterRaw !== undefined && typeof afterRaw !== 'string') {
        throw new HttpError(400, 'Invalid after parameter: give it once')
      }
      if (afterRaw !== undefined && /^\d+$/.test(afterRaw)) {
        const after = Number(afterRaw)
        if (!Number.isSafeInteger(after)) throw new HttpError(400, 'Invalid after parameter: seq out of range')
        lines = await store.exportAfterSeq(after, count)
      } else {
        let after: Date | undefined
        if (afterRaw !== undefined && afterRaw !== '') {
          after = new Date(afterRaw)
          if (Number.isNaN(after.getTime())) {
            throw new HttpError(400, 'Invalid after parameter: expected a sequence number or an ISO 8601 timestamp')
          }
        }
        lines = await store.exportAfterTime(after, count)
      }
      return reply.type('application/jsonlines').send(lines.map((l) => JSON.stringify(l)).join('\n'))
    })

    type DidParams = { Params: { did: string } }

    const current = async (did: string) => {
      const last = await store.lastActive(did)
      if (!last) throw new HttpError(404, `DID not registered: ${did}`)
      const data = opToData(did, last.operation)
      if (!data) throw new HttpError(410, `DID not available: ${did}`)
      return data
    }

    app.get<DidParams>('/:did', async (req, reply) => {
      const data = await current(req.params.did)
      return reply.type('application/did+ld+json').send(JSON.stringify(formatDidDocument(data)))
    })

    app.get<DidParams>('/:did/data', async (req) => current(req.params.did))

    app.get<DidParams>('/:did/log', async (req) => {
      const log = await store.getLog(req.params.did)
      if (log.length === 0) throw new HttpError(404, `DID not registered: ${req.params.did}`)
      return log.filter((e) => !e.nullified).map((e) => e.operation)
    })

    app.get<DidParams>('/:did/log/audit', async (req) => {
      const log = await store.getLog(req.params.did)
      if (log.length === 0) throw new HttpError(404, `DID not registered: ${req.params.did}`)
      return log.map(
        (e): ExportedLogEntry => ({
          did: e.did,
          operation: e.operation,
          cid: e.cid,
          nullified: e.nullified,
          createdAt: e.createdAt,
        }),
      )
    })

    app.get<DidParams>('/:did/log/last', async (req) => {
      const last = await store.lastActive(req.params.did)
      if (!last) throw new HttpError(404, `DID not registered: ${req.params.did}`)
      return last.operation
    })

    app.post<DidParams & { Body: unknown }>('/:did', async (req, reply) => {
      await this.submitOperation(req.params.did, req.body)
      return reply.type('text/plain; charset=utf-8').send('OK')
    })
  }
}
