/**
 * Network-level protections every service shares: which peers may set X-Forwarded-For (trusted proxies),
 * request / header / keep-alive timeouts, a cap on open connections (total and per client address), and
 * XRPC-shaped answers to the errors the HTTP parser and router raise (408, 414, 431, 400).
 */
import { readFileSync } from 'node:fs'
import { STATUS_CODES, type Server } from 'node:http'
import { BlockList, isIP, type Socket } from 'node:net'
import type { FastifyBaseLogger, FastifyInstance, FastifyServerOptions } from 'fastify'

/** Keywords accepted in a trusted-proxy list (as in proxy-addr, which fastify uses). */
const PROXY_KEYWORDS: Record<string, [string, number, 'ipv4' | 'ipv6'][]> = {
  loopback: [
    ['127.0.0.0', 8, 'ipv4'],
    ['::1', 128, 'ipv6'],
  ],
  linklocal: [
    ['169.254.0.0', 16, 'ipv4'],
    ['fe80::', 10, 'ipv6'],
  ],
  uniquelocal: [
    ['10.0.0.0', 8, 'ipv4'],
    ['172.16.0.0', 12, 'ipv4'],
    ['192.168.0.0', 16, 'ipv4'],
    ['fc00::', 7, 'ipv6'],
  ],
}

/**
 * Parses a trusted-proxy list: comma-separated IP addresses, CIDR ranges (10.0.0.0/8, fd00::/8) and the
 * keywords loopback, linklocal, uniquelocal. Empty or unset: no proxy is trusted. Throws an Error naming
 * the variable and the bad entry.
 */
export function parseTrustedProxies(value: string | undefined, name = 'TRUSTED_PROXIES'): string[] {
  const out: string[] = []
  for (const raw of (value ?? '').split(',')) {
    const entry = raw.trim().toLowerCase()
    if (!entry) continue
    if (entry in PROXY_KEYWORDS) {
      out.push(entry)
      continue
    }
    const slash = entry.indexOf('/')
    const addr = slash < 0 ? entry : entry.slice(0, slash)
    const family = isIP(addr)
    let ok = family !== 0
    if (ok && slash >= 0) {
      const bits = entry.slice(slash + 1)
      ok = /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)
    }
    if (!ok) throw new Error(`${name}: "${raw.trim()}" is not an IP address, a CIDR range or one of loopback, linklocal, uniquelocal`)
    out.push(entry)
  }
  return out
}

/** Strips the IPv4-mapped IPv6 prefix (::ffff:1.2.3.4 → 1.2.3.4). */
export function normalizeIp(ip: string | undefined): string {
  if (!ip) return 'unknown'
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip
}

/** A predicate for "this peer address is one of these trusted proxies". */
export function proxyMatcher(list: readonly string[]): (ip: string | undefined) => boolean {
  if (list.length === 0) return () => false
  const bl = new BlockList()
  for (const entry of list) {
    const ranges = PROXY_KEYWORDS[entry]
    if (ranges) {
      for (const [net, prefix, type] of ranges) bl.addSubnet(net, prefix, type)
      continue
    }
    const slash = entry.indexOf('/')
    const addr = slash < 0 ? entry : entry.slice(0, slash)
    const type = isIP(addr) === 4 ? 'ipv4' : 'ipv6'
    if (slash < 0) bl.addAddress(addr, type)
    else bl.addSubnet(addr, Number(entry.slice(slash + 1)), type)
  }
  return (ip) => {
    const n = normalizeIp(ip)
    const family = isIP(n)
    if (family === 0) return false
    return bl.check(n, family === 4 ? 'ipv4' : 'ipv6')
  }
}

const serverProxies = new WeakMap<object, (ip: string | undefined) => boolean>()

/**
 * The client address of a raw request on a server set up by {@link limitConnections}: the socket peer,
 * or, when that peer is a trusted proxy, the nearest untrusted address in X-Forwarded-For.
 */
export function clientIpOf(req: { socket: Socket; headers: Record<string, string | string[] | undefined> }): string {
  const peer = normalizeIp(req.socket.remoteAddress)
  const server = (req.socket as Socket & { server?: object }).server
  const trusted = server ? serverProxies.get(server) : undefined
  if (!trusted || !trusted(peer)) return peer
  const xff = req.headers['x-forwarded-for']
  const hops = (Array.isArray(xff) ? xff.join(',') : (xff ?? '')).split(',').map((s) => s.trim()).filter(Boolean)
  let ip = peer
  for (let i = hops.length - 1; i >= 0; i--) {
    ip = normalizeIp(hops[i])
    if (!trusted(ip)) return ip
  }
  return ip
}

/** Decides whether a peer is a trusted proxy, given its address and its distance from the server (0: the socket). */
export type TrustProxyFn = (addr: string | undefined, hop: number) => boolean

/**
 * The client address of a raw request as fastify reports it (`request.ip`) when its `trustProxy` option is
 * `trust` (false: none): the socket peer; or, while the address reached is trusted, the next X-Forwarded-For
 * entry from the right (the last one when every hop is trusted). Entries are split on commas and stripped of
 * spaces and tabs, empty ones skipped, as @fastify/proxy-addr reads them, so XrpcServer's fast path keys rate
 * limits and logs requests exactly as fastify does on the regular path.
 */
export function fastifyClientIp(req: { socket?: { remoteAddress?: string } | null; headers: Record<string, string | string[] | undefined> }, trust: TrustProxyFn | false): string | undefined {
  const peer = req.socket ? req.socket.remoteAddress : undefined
  if (!trust) return peer
  const header = req.headers['x-forwarded-for']
  if (!header || typeof header !== 'string') return peer
  if (header.indexOf(',') === -1) {
    const only = header.trim()
    return only.length > 0 && trust(peer, 0) ? only : peer
  }
  const parts = header.split(',')
  let addr = peer
  let hop = 0
  for (let i = parts.length - 1; i >= 0; i--) {
    const entry = trimSpaceTab(parts[i]!)
    if (entry.length === 0) continue
    if (!trust(addr, hop)) return addr
    addr = entry
    hop++
  }
  return addr
}

/** The Host of a raw request as fastify reports it (`request.host`) when its `trustProxy` is `trust`. */
export function fastifyHost(req: { socket?: { remoteAddress?: string } | null; headers: Record<string, string | string[] | undefined> }, trust: TrustProxyFn | false): string {
  const forwarded = req.headers['x-forwarded-host']
  if (trust && typeof forwarded === 'string' && forwarded && req.socket && trust(req.socket.remoteAddress, 0)) {
    const comma = forwarded.lastIndexOf(',')
    return comma === -1 ? forwarded.trim() : forwarded.slice(comma + 1).trim()
  }
  const host = req.headers.host ?? req.headers[':authority']
  return (Array.isArray(host) ? host[0] : host) ?? ''
}

function trimSpaceTab(s: string): string {
  let a = 0
  let b = s.length
  while (a < b && (s[a] === ' ' || s[a] === '\t')) a++
  while (b > a && (s[b - 1] === ' ' || s[b - 1] === '\t')) b--
  return a === 0 && b === s.length ? s : s.slice(a, b)
}

/**
 * The predicate XrpcServer gives fastify as `trustProxy` (false for an empty list): the {@link proxyMatcher} of
 * the list, so fastify's `request.ip`, the fast path's {@link fastifyClientIp}, the connection caps and
 * {@link clientIpOf} agree on who is a proxy.
 */
export function trustProxyFn(list: readonly string[]): TrustProxyFn | false {
  if (list.length === 0) return false
  const trusted = proxyMatcher(list)
  return (addr) => trusted(addr)
}

/** The soft limit on open files of this process (Linux /proc), or undefined when unknown. */
export function openFileLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'))
    const soft = line?.split(/\s{2,}/)[1]
    const n = Number(soft)
    return Number.isSafeInteger(n) && n > 0 ? n : undefined
  } catch {
    return undefined
  }
}

export interface ConnectionOptions {
  /**
   * Open connections the server accepts at once (default: 80% of the open-file limit, at most 16,384,
   * leaving room for databases, logs and outgoing sockets). Further connections are closed on accept.
   */
  maxConnections?: number
  /** Open connections from one client address (default 256). Trusted proxies are exempt. */
  maxConnectionsPerIp?: number
  /** Time to receive a whole request, headers and body (default 120 s; 0 = none). */
  requestTimeoutMs?: number
  /** Time to receive the request headers (default 20 s). */
  headersTimeoutMs?: number
  /** Idle time of a kept-alive connection between requests (default 30 s). */
  keepAliveTimeoutMs?: number
  /** How often timeouts are checked (default: a quarter of the shortest timeout, 250 ms to 30 s). */
  checkIntervalMs?: number
}

export interface HardeningOptions extends ConnectionOptions {
  /** Peers whose X-Forwarded-For is believed (see parseTrustedProxies). Default: none. */
  trustedProxies?: readonly string[]
}

export const DEFAULT_MAX_CONNECTIONS_PER_IP = 256
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000
export const DEFAULT_HEADERS_TIMEOUT_MS = 20_000
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 30_000

export function defaultMaxConnections(): number {
  const files = openFileLimit()
  if (!files) return 4096
  return Math.max(16, Math.min(16_384, Math.floor(files * 0.8) - 32))
}

/** The fastify server options that carry the hardening settings (trustProxy, timeouts, error shapes). */
export function hardenedFastifyOptions(opts: HardeningOptions = {}): FastifyServerOptions {
  const requestTimeout = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
  const headersTimeout = Math.min(opts.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS, requestTimeout || Infinity)
  const keepAlive = opts.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS
  const shortest = Math.min(headersTimeout, requestTimeout || Infinity)
  const checkInterval = opts.checkIntervalMs ?? Math.max(250, Math.min(30_000, Math.floor(shortest / 4)))
  const trusted = opts.trustedProxies ?? []
  return {
    trustProxy: trusted.length > 0 ? [...trusted] : false,
    requestTimeout,
    keepAliveTimeout: keepAlive,
    http: { headersTimeout, requestTimeout, connectionsCheckingInterval: checkInterval, keepAliveTimeout: keepAlive },
    clientErrorHandler: clientErrorHandler,
    frameworkErrors: (err: Error, _req: unknown, reply: { code(n: number): { header(k: string, v: string): { send(b: string): unknown } } }) => {
      const known = frameworkErrorStatus(err as { code?: string }) ?? { status: 400, error: 'InvalidRequest', message: 'Invalid request' }
      reply.code(known.status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify({ error: known.error, message: known.message }))
    },
  } as FastifyServerOptions
}

function xrpcBody(error: string, message: string): string {
  return JSON.stringify({ error, message })
}

/** Answers errors of the HTTP parser (bad request line, headers too large, request timeout) in XRPC shape. */
function clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  let status = 400
  let error = 'InvalidRequest'
  let message = 'Malformed HTTP request'
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408
    error = 'RequestTimeout'
    message = 'The request was not received in time'
  } else if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431
    error = 'RequestHeaderFieldsTooLarge'
    message = 'The request headers are too large'
  } else if (err.code === 'HPE_URI_TOO_LONG') {
    status = 414
    error = 'URITooLong'
    message = 'The request URI is too long'
  }
  // a client that stalls or sends garbage is not the service's failure: info, once, without a stack
  this.log.info({ remoteAddress: socket.remoteAddress, code: err.code, status }, 'client error')
  if (socket.writable) {
    const body = xrpcBody(error, message)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}

/**
 * Caps the open connections of `server`: in total (server.maxConnections, refused by Node on accept) and
 * per client address (closed at once). Trusted proxies are exempt from the per-address cap.
 */
export function limitConnections(
  server: Server | import('node:net').Server,
  opts: ConnectionOptions & { trustedProxies?: readonly string[]; log?: FastifyBaseLogger } = {},
): void {
  const max = opts.maxConnections ?? defaultMaxConnections()
  const perIp = opts.maxConnectionsPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP
  server.maxConnections = max
  const exempt = proxyMatcher(opts.trustedProxies ?? [])
  serverProxies.set(server, exempt)
  const open = new Map<string, number>()
  const warned = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const ip = normalizeIp(socket.remoteAddress)
    if (exempt(ip)) return
    const n = open.get(ip) ?? 0
    if (n >= perIp) {
      const now = Date.now()
      if ((warned.get(ip) ?? 0) < now - 60_000) {
        warned.set(ip, now)
        if (warned.size > 10_000) warned.clear()
        opts.log?.warn({ remoteAddress: ip, limit: perIp }, 'too many connections from one address; closing new ones')
      }
      socket.destroy()
      return
    }
    open.set(ip, n + 1)
    socket.once('close', () => {
      const left = (open.get(ip) ?? 1) - 1
      if (left <= 0) open.delete(ip)
      else open.set(ip, left)
    })
  })
}

/**
 * The error handler for fastify's router errors (URL param too long → 414, bad URL encoding → 400), in
 * XRPC shape. Pass as `frameworkErrors`.
 */
export function frameworkErrorStatus(err: { code?: string }): { status: number; error: string; message: string } | undefined {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') return { status: 414, error: 'URITooLong', message: 'The request URI is too long' }
  if (err.code === 'FST_ERR_BAD_URL') return { status: 400, error: 'InvalidRequest', message: 'The request URL is malformed' }
  return undefined
}

/**
 * For fastify apps not built by XrpcServer (the PLC directory): the same timeouts, connection caps,
 * trusted proxies and XRPC-shaped 408 / 413 / 414 / 431 bodies. Call before `listen`.
 */
export function hardenFastify(app: FastifyInstance, opts: HardeningOptions = {}): void {
  limitConnections(app.server, { ...opts, log: app.log })
}

/** True for errors that mean the client went away mid-request (nothing to answer, nothing to alarm about). */
export function isClientAbort(err: unknown, raw?: { aborted?: boolean; destroyed?: boolean; complete?: boolean }): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNABORTED' || code === 'EPIPE') return true
  if ((err as Error | null)?.message === 'aborted') return true
  return Boolean(raw && (raw.aborted || (raw.destroyed && !raw.complete)))
}
