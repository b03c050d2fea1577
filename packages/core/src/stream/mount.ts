/**
 * mountSubscription: serves an XRPC subscription (WebSocket) endpoint on a fastify app.
 *
 * GET /xrpc/<nsid> with `Upgrade: websocket` → params parsed from the query string, then the WebSocket
 * handshake, then `onConnection(ws, req, params)`. Plain GET → 426, other methods → 405, bad params → 400,
 * all with XRPC error JSON. Several nsids can be mounted on one app: one `upgrade` listener per HTTP server
 * dispatches by path.
 */
import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { WebSocketServer, type WebSocket } from 'ws'
import { SubscriptionServer, type SubscriptionServerOptions } from './server.js'
import { clientIpOf } from '../xrpc/hardening.js'

/** Parsed query parameters. `cursor` is validated (integer ≥ 0); other keys are strings, or arrays when repeated. */
export interface SubscriptionParams {
  cursor?: number
  [key: string]: string | string[] | number | undefined
}

/** Throw from `parseParams` (or `authorize`) to refuse the upgrade with an XRPC error response. */
export class SubscriptionHttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message?: string,
  ) {
    super(message ?? error)
    this.name = 'SubscriptionHttpError'
  }
}

export interface MountOptions {
  /** replace the default query parsing; throw SubscriptionHttpError to refuse */
  parseParams?: (query: URLSearchParams) => SubscriptionParams
  /** checked before the handshake; throw SubscriptionHttpError(401/403, ...) to refuse */
  authorize?: (req: IncomingMessage) => void | Promise<void>
  /** largest message accepted from a client (servers ignore client frames; default 64 KiB) */
  maxPayload?: number
  /** serve at this path instead of `/xrpc/<nsid>` (e.g. a non-XRPC WebSocket API such as Jetstream's `/subscribe`) */
  path?: string
  /** open subscriptions from one client address (default 32; trusted proxies' X-Forwarded-For applies) */
  maxPerIp?: number
  /**
   * The WebSocket subprotocol to select from the client's `Sec-WebSocket-Protocol` offer (echoed in the 101
   * response), or false to select none. Without it, `ws`'s default applies: the first protocol offered.
   * Refuse an offer with a clear XRPC error from `authorize` (this runs during the handshake).
   */
  handleProtocols?: (offered: Set<string>, req: IncomingMessage) => string | false
}

export interface MountedSubscription {
  nsid: string
  path: string
  wss: WebSocketServer
  /** terminates this endpoint's sockets and stops accepting upgrades for it */
  close(): void
}

export type OnConnection = (ws: WebSocket, req: IncomingMessage, params: SubscriptionParams) => unknown

type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFastify = FastifyInstance<any, any, any, any, any>

const routers = new WeakMap<Server, Map<string, UpgradeHandler>>()

function xrpcErrorBody(error: string, message?: string): string {
  return JSON.stringify(message === undefined ? { error } : { error, message })
}

/** Writes a complete HTTP response on a not-yet-upgraded socket and closes it. */
export function rejectUpgrade(socket: Duplex, status: number, error: string, message?: string): void {
  if (socket.destroyed) return
  const body = xrpcErrorBody(error, message)
  socket.once('finish', () => socket.destroy())
  socket.once('error', () => socket.destroy())
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      'Connection: close\r\n' +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n` +
      body,
  )
}

/** Default params parser: `cursor` must be a non-negative safe integer. */
export function parseSubscriptionParams(query: URLSearchParams): SubscriptionParams {
  const params: SubscriptionParams = {}
  for (const key of new Set(query.keys())) {
    const all = query.getAll(key)
    if (key === 'cursor') {
      if (all.length !== 1) throw new SubscriptionHttpError(400, 'InvalidRequest', 'cursor must be given once')
      const raw = all[0]!
      if (!/^[0-9]+$/.test(raw)) throw new SubscriptionHttpError(400, 'InvalidRequest', 'cursor must be an integer >= 0')
      const n = Number(raw)
      if (!Number.isSafeInteger(n)) throw new SubscriptionHttpError(400, 'InvalidRequest', 'cursor is out of range')
      params.cursor = n
    } else {
      params[key] = all.length === 1 ? all[0]! : all
    }
  }
  return params
}

function routerFor(server: Server): Map<string, UpgradeHandler> {
  let routes = routers.get(server)
  if (routes) return routes
  const table = new Map<string, UpgradeHandler>()
  routes = table
  routers.set(server, table)
  const dispatch = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '/').split('?', 1)[0]!
    const handler = table.get(path)
    if (handler) return handler(req, socket, head)
    // someone else may serve this path on the same server; only answer when we are the only listener
    if (server.listenerCount('upgrade') > 1) return
    rejectUpgrade(socket, 404, 'NotFound', 'no WebSocket endpoint at this path')
  }
  server.on('upgrade', dispatch)
  return table
}

/**
 * Mounts a subscription endpoint. Call before `app.listen()` / `app.ready()` (it adds routes and hooks).
 */
export function mountSubscription(
  app: AnyFastify,
  nsid: string,
  onConnection: OnConnection,
  opts: MountOptions = {},
): MountedSubscription {
  const path = opts.path ?? `/xrpc/${nsid}`
  const server = app.server as Server
  const table = routerFor(server)
  if (table.has(path)) throw new Error(`a subscription is already mounted at ${path}`)

  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: opts.maxPayload ?? 64 * 1024,
    ...(opts.handleProtocols ? { handleProtocols: opts.handleProtocols } : {}),
  })
  const parse = opts.parseParams ?? parseSubscriptionParams
  const maxPerIp = opts.maxPerIp ?? 32
  const perIp = new Map<string, number>()
  let closed = false

  const onUpgrade: UpgradeHandler = (req, socket, head) => {
    socket.on('error', () => socket.destroy())
    if (closed) return rejectUpgrade(socket, 503, 'ServiceUnavailable', 'endpoint is shutting down')
    if (req.method !== 'GET') return rejectUpgrade(socket, 405, 'InvalidRequest', 'subscriptions only accept GET')
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      return rejectUpgrade(socket, 426, 'InvalidRequest', 'expected a WebSocket upgrade')
    }
    let params: SubscriptionParams
    try {
      params = parse(new URL(req.url ?? '/', 'http://localhost').searchParams)
    } catch (err) {
      return refuse(socket, err)
    }
    const ip = clientIpOf(req)
    if ((perIp.get(ip) ?? 0) >= maxPerIp) {
      return rejectUpgrade(socket, 429, 'RateLimitExceeded', `too many open subscriptions from this address (limit ${maxPerIp})`)
    }
    Promise.resolve(opts.authorize?.(req))
      .then(() => {
        if (socket.destroyed) return
        if ((perIp.get(ip) ?? 0) >= maxPerIp) {
          return rejectUpgrade(socket, 429, 'RateLimitExceeded', `too many open subscriptions from this address (limit ${maxPerIp})`)
        }
        perIp.set(ip, (perIp.get(ip) ?? 0) + 1)
        let counted = true
        const release = () => {
          if (!counted) return
          counted = false
          const left = (perIp.get(ip) ?? 1) - 1
          if (left <= 0) perIp.delete(ip)
          else perIp.set(ip, left)
        }
        socket.once('close', release)
        wss.handleUpgrade(req, socket, head, (ws) => {
          ws.once('close', release)
          Promise.resolve()
            .then(() => onConnection(ws, req, params))
            .catch((err) => {
              app.log?.error?.({ err, nsid }, 'subscription connection handler failed')
              if (ws.readyState === ws.OPEN) ws.close(1011, 'internal error')
            })
        })
      })
      .catch((err) => refuse(socket, err))
  }
  table.set(path, onUpgrade)

  const notUpgraded = {
    error: 'InvalidRequest',
    message: 'this is a WebSocket subscription endpoint: send GET with Upgrade: websocket',
  }
  app.route({
    method: 'GET',
    url: path,
    handler: async (_req, reply) => {
      reply.code(426).header('upgrade', 'websocket').header('connection', 'Upgrade')
      return notUpgraded
    },
  })
  app.route({
    method: ['POST', 'PUT', 'PATCH', 'DELETE'],
    url: path,
    // answer before any body parsing
    onRequest: async (_req, reply) => {
      reply.code(405).header('allow', 'GET').send({ error: 'InvalidRequest', message: 'subscriptions only accept GET' })
      return reply
    },
    handler: async () => undefined,
  })

  const close = () => {
    if (closed) return
    closed = true
    for (const ws of wss.clients) ws.terminate()
    wss.close()
  }
  app.addHook('preClose', async () => {
    // fastify waits for open connections: a WebSocket that is never closed would hang app.close()
    for (const ws of wss.clients) {
      ws.close(1001, 'server shutting down')
      setTimeout(() => ws.terminate(), 2_000).unref()
    }
  })
  app.addHook('onClose', async () => close())

  return { nsid, path, wss, close }
}

function refuse(socket: Duplex, err: unknown): void {
  if (err instanceof SubscriptionHttpError) return rejectUpgrade(socket, err.status, err.error, err.message)
  rejectUpgrade(socket, 500, 'InternalServerError', 'internal error')
}

/**
 * One call for a service: a {@link SubscriptionServer} replaying from `serverOpts.log`, mounted at
 * /xrpc/<nsid>. Then `server.publish(seq, frame)` after each append to the log.
 */
export function mountEventStream(
  app: AnyFastify,
  nsid: string,
  serverOpts: SubscriptionServerOptions,
  mountOpts: MountOptions = {},
): { server: SubscriptionServer; mounted: MountedSubscription } {
  const server = new SubscriptionServer(serverOpts)
  const mounted = mountSubscription(
    app,
    nsid,
    (ws, req, params) => server.attach(ws, { cursor: params.cursor, remoteAddress: req.socket.remoteAddress }),
    mountOpts,
  )
  app.addHook('preClose', async () => {
    await server.close()
  })
  return { server, mounted }
}
