import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import cors, { type FastifyCorsOptions } from '@fastify/cors'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify'
import type { LoggerOptions } from 'pino'
import { Counter } from 'prom-client'
import { isValidNsid } from '@atproto/syntax'
import {
  LexiconValidationError,
  encodingMatches,
  getMethodDef,
  isJsonEncoding,
  lexToJson,
  lexicons as defaultLexicons,
  validateInput,
  validateOutput,
  validateParams,
  type Lexicons,
  type MethodDef,
} from '../lexicon/index.js'
import type { AuthResult, AuthVerifier } from './auth.js'
import { limitStream, readBody } from './body.js'
import {
  InternalServerError,
  InvalidRequestError,
  MethodNotImplementedError,
  PayloadTooLargeError,
  XRPCError,
  toXrpcError,
} from './errors.js'
import {
  fastifyClientIp,
  fastifyHost,
  frameworkErrorStatus,
  hardenedFastifyOptions,
  isClientAbort,
  limitConnections,
  trustProxyFn,
  type ConnectionOptions,
  type TrustProxyFn,
} from './hardening.js'
import { createHttpMetrics, type HttpMetrics, type MetricsOptions } from './metrics.js'
import {
  MemoryRateLimitStore,
  consumeAll,
  consumeAllNow,
  rateLimitError,
  rateLimitHeaders,
  tightest,
  type CheckedLimit,
  type MethodRateLimit,
  type RateLimitContext,
  type RateLimitRule,
  type RateLimitStatus,
  type RateLimitStore,
} from './rate-limit.js'

export type Params = Record<string, unknown>

export interface HandlerInput {
  /** The request Content-Type. */
  encoding: string
  /**
   * JSON encodings: the validated body in lex form (CIDs, BlobRefs, Uint8Arrays). `text/*`: a string.
   * Anything else (blobs, CAR files): a Buffer, or a Readable when the method has `rawInput: 'stream'`.
   */
  body: unknown
}

export interface HandlerContext<A = unknown, P extends Params = Params> extends RateLimitContext {
  nsid: string
  params: P
  input: HandlerInput | undefined
  /** The verifier's result; `{ credentials: null }` when the method has no `auth`. */
  auth: AuthResult<A>
  req: FastifyRequest
  reply: FastifyReply
  /** Refills this request's route buckets (e.g. after a successful login). */
  resetRouteRateLimits(): Promise<void>
}

export interface HandlerOutput {
  /** `application/json` (or the alias `json`) bodies are lex values, sent as JSON. */
  encoding: string
  body: unknown
  headers?: Record<string, string>
  /**
   * The JSON body holds plain JSON values only (no CID or byte values; e.g. views built from records
   * stored as JSON): it is serialized as it is, without the lex-to-JSON walk (a copy of the whole body).
   */
  plainJson?: boolean
}

export type MethodHandler<A = unknown, P extends Params = Params> = (
  ctx: HandlerContext<A, P>,
) => Promise<HandlerOutput | void> | HandlerOutput | void

/**
 * A hot query answered without fastify's routing, hooks and reply object (see {@link MethodConfig.fastQuery}):
 * the JSON text of a 200 response, or undefined to leave the request to the regular path, which then answers
 * it as always (errors included). It must have no side effects: whatever it declines or throws is answered
 * from scratch by the regular handler. Its params are frozen: requests with the same query string share them.
 */
export type FastQueryHandler<P extends Params = Params> = (
  params: P,
  req: IncomingMessage,
) => { body: string; headers?: Record<string, string> } | undefined

/** What a handler that needs neither fastify's request nor its reply gets (see {@link MethodConfig.fastProcedure}). */
export interface PlainHandlerContext<A = unknown, P extends Params = Params> {
  nsid: string
  params: P
  input: HandlerInput | undefined
  auth: AuthResult<A>
  /** the request's headers (fastify's request on the regular path, Node's on the fast path) */
  req?: { readonly headers: IncomingHttpHeaders }
}

export type PlainMethodHandler<A = unknown, P extends Params = Params> = (
  ctx: PlainHandlerContext<A, P>,
) => Promise<HandlerOutput | void> | HandlerOutput | void

export interface MethodConfig<A = unknown, P extends Params = Params> {
  auth?: AuthVerifier<A>
  rateLimit?: MethodRateLimit<HandlerContext<A, P>> | MethodRateLimit<HandlerContext<A, P>>[]
  /** Body size limit in bytes for this method (overrides the server's json / text / raw limit). */
  bodyLimit?: number
  /** How non-JSON, non-text bodies reach the handler (default 'buffer'). */
  rawInput?: 'buffer' | 'stream'
  /** Overrides the server's `validateOutput` for this method. */
  validateOutput?: boolean
  handler: MethodHandler<A, P>
  /**
   * For a query without `auth`: a synchronous handler for its successful answers, run from the HTTP server's
   * request event before fastify sees the request. The request is plain (GET, the canonical `/xrpc/<nsid>`
   * path, no body) and its params are validated as on the regular path; the response gets the same CORS
   * headers, content type, metrics, rate limits (the same buckets charged once, the same RateLimit-* headers;
   * a refused request is handed to the regular path, which answers the 429 without charging again) and request
   * log lines (at level info: "incoming request" and "request completed" with the same reqId sequence and
   * serializers). Not used with custom CORS or fastify options, with a rate-limit store other than the
   * in-memory one, or when a rate limit of the method computes its key or cost (they get the whole handler
   * context). Hooks a service adds to `app` do not run for it: the handler declines requests they would
   * answer differently.
   */
  fastQuery?: FastQueryHandler<P>
  /**
   * For a procedure with a JSON input, or a query: the method's handler when it uses nothing but the nsid,
   * params, input, auth and the request's headers (usually the same function as `handler`). Run from the HTTP
   * server's request event ahead of fastify for a plain request (a procedure: POST to the canonical
   * `/xrpc/<nsid>`, a JSON Content-Type, a Content-Length within the body limit, not chunked; a query: GET to
   * it without a body, its params frozen and shared by the requests with the same query string, as
   * {@link fastQuery}'s; let through by {@link XrpcServerOptions.fastPathFilter}) while no rate
   * limit applies to the method, or {@link fastProcedureLimits} is set: the same checks in the same order
   * (global rate limits, params, auth, body, input validation, the method's rate limits), the same output
   * validation, the same responses and XRPC errors (429s and RateLimit-* headers included), CORS headers,
   * metrics, request ids and request log lines. Any other request takes the regular path.
   * Not used with custom CORS or fastify options. Hooks a service adds to `app` do not run for it.
   */
  fastProcedure?: PlainMethodHandler<A, P>
  /**
   * The method's rate limit rules (`calcKey`, `calcPoints`, the shared rules' too) read nothing of their
   * context but `nsid`, `params`, `input`, `auth` and `req.ip` / `req.headers`: {@link fastProcedure} then
   * serves while rate limits apply, charging them with such a context (no fastify request or reply).
   */
  fastProcedureLimits?: boolean
}

export interface CatchallContext {
  nsid: string
  /** The lexicon def, when the NSID is known. */
  def: MethodDef | undefined
  req: FastifyRequest
  reply: FastifyReply
  /** The unread request body, when there is one (to forward as is). */
  rawBody: Readable | undefined
}

/**
 * Called for queries and procedures that have no handler, known to the registry or not (after the HTTP
 * verb check), e.g. a PDS proxying app.bsky.* to an AppView. It may send the reply itself, return an
 * output, or throw; returning nothing without replying declines (→ 501 MethodNotImplemented).
 */
export type CatchallHandler = (ctx: CatchallContext) => Promise<HandlerOutput | void> | HandlerOutput | void

export interface RateLimitsOptions {
  /** Master switch (default true). */
  enabled?: boolean
  /** Limits on every XRPC request, before auth (default key: client IP). */
  global?: RateLimitRule[]
  /** Named limits that methods share by naming them (e.g. repo writes per account per hour). */
  shared?: (RateLimitRule<HandlerContext> & { name: string })[]
  /** Requests for which no limit applies (e.g. carrying a bypass secret). */
  bypass?: (req: RateLimitContext['req']) => boolean
  store?: RateLimitStore
}

export interface BodyLimits {
  /** application/json bodies (default 1 MiB). */
  json?: number
  /** text/* bodies (default 1 MiB). */
  text?: number
  /** Anything else: blobs, CAR files (default 5 MiB). */
  raw?: number
}

export interface XrpcServerOptions {
  lexicons?: Lexicons
  /** Validate handler output against the lexicon; an invalid output is a 500 naming the problem. */
  validateOutput?: boolean
  /** Put the message of unexpected errors in 500 responses (default false: "Internal Server Error"). */
  exposeInternalErrors?: boolean
  /** Version reported by `GET /xrpc/_health` (default: $STRATOS_VERSION or the core package version). */
  version?: string
  /** Extra health check: throw to answer 503; a returned object is merged into the response. */
  healthCheck?: () => unknown
  /**
   * pino logging through fastify: false (off), true / pino options, or a logger instance. Default: off
   * under test runners, else `{ level: $LOG_LEVEL || 'info' }`.
   */
  logger?: boolean | LoggerOptions | FastifyBaseLogger
  bodyLimits?: BodyLimits
  rateLimits?: RateLimitsOptions
  /** CORS (default on: every origin, atproto headers exposed). */
  cors?: boolean | FastifyCorsOptions
  /** Prometheus metrics (default on at /metrics). */
  metrics?: boolean | MetricsOptions
  /**
   * Peers whose X-Forwarded-For is believed when taking the client IP (rate limits, logs): IPs, CIDRs,
   * `loopback`... (see parseTrustedProxies). Default: none, the socket address is the client.
   */
  trustedProxies?: readonly string[]
  /** Timeouts and connection caps (defaults in ./hardening.ts). */
  connections?: ConnectionOptions
  catchall?: CatchallHandler
  /** Use the methods' {@link MethodConfig.fastQuery} and {@link MethodConfig.fastProcedure} handlers where they apply (default true). */
  fastQueries?: boolean
  /**
   * Requests the fast paths may answer (default: all): false leaves a request to fastify, e.g. one an
   * `onRequest` hook of the service answers or adds headers to.
   */
  fastPathFilter?: (req: IncomingMessage) => boolean
  /** Further fastify options. */
  fastify?: Omit<FastifyServerOptions, 'logger' | 'loggerInstance'>
}

/** Response headers a browser client may read. */
export const EXPOSED_HEADERS = [
  'atproto-repo-rev',
  'atproto-content-labelers',
  'atproto-proxy',
  'dpop-nonce',
  'www-authenticate',
  'retry-after',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'ratelimit-policy',
]

const DEFAULT_LIMITS: Required<BodyLimits> = { json: 1024 * 1024, text: 1024 * 1024, raw: 5 * 1024 * 1024 }
const XRPC_VERBS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const

interface RegisteredMethod {
  def: MethodDef
  config: MethodConfig<any, any>
  rules: { id: string; rule: RateLimitRule<HandlerContext> }[]
}

/**
 * Query strings whose validated params a fast query keeps (per method, the oldest dropped first), and the
 * longest one kept: a hot read repeats its query strings, and the check (URLSearchParams and the lexicon's
 * params) cost ~8 % of a fast getRecord's server CPU.
 */
const FAST_PARAMS_MAX = 4096
const FAST_PARAMS_KEY_MAX = 1024

/** A method answered by {@link XrpcServer.tryFastQuery}. */
interface FastMethod {
  handler: FastQueryHandler<any>
  validate: boolean
  /** the method's own rate limits (plain: keyed by client IP, one point each) */
  rules: { id: string; rule: RateLimitRule<RateLimitContext> }[]
  /** validated params by raw query string (see {@link FAST_PARAMS_MAX}): frozen, shared by the requests */
  params: Map<string, Params>
  /** fast 200s not yet added to {@link counted} and {@link served} (see {@link XrpcServer.flushFastCounts}) */
  pending: number
  counted?: { inc(n?: number): void }
  timed?: { observe(v: number): void }
  served?: { inc(n?: number): void }
}

/** A method answered by {@link XrpcServer.tryFastProcedure}. */
interface FastProcedure {
  handler: PlainMethodHandler<any, any>
  /** the method's rate limit rules (charged when rate limits apply) */
  rules: { id: string; rule: RateLimitRule<RateLimitContext> }[]
  auth: AuthVerifier<any> | undefined
  /** the input's encoding (a JSON one; '' for a query, which has none) */
  encoding: string
  /** a query (GET, no body) */
  query: boolean
  /** a query's validated params by raw query string, as {@link FastMethod.params} */
  params: Map<string, Params>
  bodyLimit: number
  validate: boolean
  counted: Map<number, { inc(): void }>
  timed: Map<number, { observe(v: number): void }>
  served?: { inc(): void }
}

/** The limits the fast path charged for a request it then handed to fastify (refused): not charged again. */
interface ChargedEarly {
  global: CheckedLimit[]
  method: CheckedLimit[]
}

/**
 * Response headers as the flat name/value list Node's `writeHead` takes, with what an object spread of `base`
 * and `parts` would give: a later value replaces an earlier one of the same name, in its place. An object
 * literal with names added after spreads costs V8 a map transition per name on each response (4 % of a fast
 * getRecord's on-CPU samples), and `writeHead` then enumerates its keys.
 */
export function headerList(base: readonly (string | number)[], ...parts: (Readonly<Record<string, string | number>> | undefined)[]): (string | number)[] {
  const list = base.slice()
  for (const part of parts) {
    if (!part) continue
    for (const name of Object.keys(part)) setListedHeader(list, name, part[name]!)
  }
  return list
}

/** Sets `name` in a {@link headerList} list: replaced where it is, else added at the end. */
export function setListedHeader(list: (string | number)[], name: string, value: string | number): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === name) {
      list[i + 1] = value
      return
    }
  }
  list.push(name, value)
}

/** Lower-case RateLimit-* headers (as fastify sends the ones the regular path sets). */
function fastRateLimitHeaders(status: RateLimitStatus): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(rateLimitHeaders(status))) out[k.toLowerCase()] = v
  return out
}

function coreVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }
    return pkg.version ?? '0.0.0'
  } catch {
    return '0.0.0'
  }
}

function isLoggerInstance(v: unknown): v is FastifyBaseLogger {
  return typeof v === 'object' && v !== null && typeof (v as { child?: unknown }).child === 'function' && typeof (v as { info?: unknown }).info === 'function'
}

function underTest(): boolean {
  return Boolean(process.env.VITEST) || process.env.NODE_ENV === 'test'
}

function refuseProtoKey(key: string, value: unknown): unknown {
  if (key === '__proto__') throw new InvalidRequestError('Invalid request body: the key "__proto__" is not allowed')
  return value
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * An XRPC server on fastify: `/xrpc/<nsid>` for the methods registered with {@link XrpcServer.method},
 * checked against the lexicon registry; `GET /xrpc/_health`; `GET /metrics`. `app` is the fastify
 * instance, for other routes and for WebSocket subscriptions.
 */
export class XrpcServer {
  readonly app: FastifyInstance
  readonly lexicons: Lexicons
  readonly metrics: HttpMetrics | undefined
  readonly rateLimitStore: RateLimitStore
  readonly version: string

  private readonly opts: XrpcServerOptions
  private readonly methods = new Map<string, RegisteredMethod>()
  private readonly limits: Required<BodyLimits>
  private readonly rateLimitsEnabled: boolean
  private readonly globalRules: { id: string; rule: RateLimitRule }[]
  private readonly sharedRules = new Map<string, RateLimitRule<HandlerContext>>()
  private readonly metricLabels = new WeakMap<FastifyRequest, string>()
  /** the methods answered by {@link tryFastQuery}, by NSID */
  private readonly fastQueries = new Map<string, FastMethod>()
  /** the methods answered by {@link tryFastProcedure}, by NSID */
  private readonly fastProcedures = new Map<string, FastProcedure>()
  /** whether {@link listenFirst} has put the fast paths ahead of fastify */
  private fastListening = false
  /** {@link close} was called: requests go to fastify (which answers 503 while closing) */
  private closing = false
  /** requests the fast path charged and then left to fastify (see {@link ChargedEarly}) */
  private readonly chargedEarly = new WeakMap<IncomingMessage, ChargedEarly>()
  /** fastify's trustProxy: who may set X-Forwarded-For (the fast path reads the client IP with it too) */
  private readonly trust: TrustProxyFn | false
  /** fastify has a logger (false: its null logger) */
  private readonly hasLogger: boolean
  /** `xrpc_fast_path_requests_total{nsid}`: requests answered by {@link tryFastQuery} and {@link tryFastProcedure} */
  private readonly fastServed: { labels(labels: { nsid: string }): { inc(n?: number): void } } | undefined
  /** response headers of the fast path: what the CORS hook sets on every XRPC response (null: no fast path) */
  private readonly fastHeaders: Record<string, string> | null
  /** {@link fastHeaders} as a {@link headerList} list */
  private readonly fastHeaderList: readonly string[]

  constructor(opts: XrpcServerOptions = {}) {
    this.opts = opts
    this.lexicons = opts.lexicons ?? defaultLexicons
    this.version = opts.version ?? process.env.STRATOS_VERSION ?? coreVersion()
    this.limits = { ...DEFAULT_LIMITS, ...(opts.bodyLimits ?? {}) }
    this.rateLimitStore = opts.rateLimits?.store ?? new MemoryRateLimitStore()
    this.rateLimitsEnabled = opts.rateLimits?.enabled !== false
    this.globalRules = (opts.rateLimits?.global ?? []).map((rule, i) => ({ id: `global:${rule.name ?? i}`, rule }))
    for (const rule of opts.rateLimits?.shared ?? []) {
      if (this.sharedRules.has(rule.name)) throw new Error(`shared rate limit ${rule.name} is defined twice`)
      this.sharedRules.set(rule.name, rule)
    }

    const logger = opts.logger ?? (underTest() ? false : { level: process.env.LOG_LEVEL || 'info' })
    this.hasLogger = logger !== false
    this.trust = trustProxyFn(opts.trustedProxies ?? [])
    const fastifyOpts: FastifyServerOptions = {
      ...hardenedFastifyOptions({ ...(opts.connections ?? {}), trustedProxies: opts.trustedProxies }),
      // the same predicate as the connection caps and the fast path (which reads the client IP without fastify)
      trustProxy: this.trust,
      frameworkErrors: (err, req, reply) => {
        const known = frameworkErrorStatus(err as { code?: string })
        this.sendError(req, reply, known ? new XRPCError(known.status, known.error, known.message) : err)
      },
      ...(opts.fastify ?? {}),
    }
    this.app = isLoggerInstance(logger)
      ? Fastify({ ...fastifyOpts, loggerInstance: logger })
      : Fastify({ ...fastifyOpts, logger: logger as boolean | LoggerOptions })

    limitConnections(this.app.server, { ...(opts.connections ?? {}), trustedProxies: opts.trustedProxies, log: this.app.log })

    this.metrics = opts.metrics === false ? undefined : createHttpMetrics(opts.metrics === true ? {} : opts.metrics)
    this.fastServed = this.metrics
      ? new Counter({
          name: `${(typeof opts.metrics === 'object' ? opts.metrics.prefix : undefined) ?? ''}xrpc_fast_path_requests_total`,
          help: 'XRPC requests answered by a fastQuery or fastProcedure handler ahead of fastify, by method',
          labelNames: ['nsid'] as const,
          registers: [this.metrics.registry],
          collect: () => this.flushFastCounts(),
        })
      : undefined
    this.metrics?.flushers.push(() => this.flushFastCounts())

    this.app.setErrorHandler((err, req, reply) => this.sendError(req, reply, err))
    this.app.setNotFoundHandler((req, reply) => {
      const path = req.url.split('?')[0]
      this.sendError(req, reply, new XRPCError(404, 'NotFound', `Not found: ${req.method} ${path}`))
    })

    if (this.metrics) {
      const metrics = this.metrics
      this.app.addHook('onResponse', async (req, reply) => {
        const label = this.metricLabels.get(req) ?? req.routeOptions?.url ?? '_unmatched'
        const status = String(reply.statusCode)
        metrics.requests.inc({ nsid: label, method: req.method, status })
        metrics.duration.observe({ nsid: label, status }, reply.elapsedTime / 1000)
      })
      this.app.get(metrics.path, async (_req, reply) => {
        reply.header('content-type', metrics.registry.contentType)
        return metrics.registry.metrics()
      })
    }

    if (opts.cors !== false) {
      const corsOpts: FastifyCorsOptions = opts.cors === true || opts.cors === undefined ? {} : opts.cors
      this.app.register(cors, { origin: '*', exposedHeaders: EXPOSED_HEADERS, maxAge: 86400, ...corsOpts })
    }

    // the fast path adds the headers @fastify/cors adds with the default options (origin '*'); custom options
    // are left to the plugin alone
    this.fastHeaders =
      opts.fastQueries === false || opts.fastify !== undefined || (opts.cors !== undefined && opts.cors !== true && opts.cors !== false)
        ? null
        : opts.cors === false
          ? {}
          : { 'access-control-allow-origin': '*', 'access-control-expose-headers': EXPOSED_HEADERS.join(', ') }
    this.fastHeaderList = Object.entries(this.fastHeaders ?? {}).flat()

    this.app.get('/xrpc/_health', async (req, reply) => {
      this.metricLabels.set(req, '_health')
      let extra: unknown
      try {
        extra = await opts.healthCheck?.()
      } catch (err) {
        req.log.warn({ err }, 'health check failed')
        reply.code(503)
        return { version: this.version, error: 'Service Unavailable' }
      }
      return { version: this.version, ...(typeof extra === 'object' && extra !== null ? extra : {}) }
    })

    // The XRPC routes live in their own context, where every body arrives unparsed (as the request
    // stream): parsing, limits and validation depend on the method and happen in the handler.
    this.app.register(async (scope) => {
      scope.removeAllContentTypeParsers()
      scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload))
      scope.route({
        method: [...XRPC_VERBS],
        url: '/xrpc/:nsid',
        handler: (req, reply) => this.handle(req, reply),
      })
    })
  }

  /** Registers the handler of a query or procedure defined in the registry. */
  method<A = unknown, P extends Params = Params>(nsid: string, configOrHandler: MethodConfig<A, P> | MethodHandler<A, P>): this {
    const config: MethodConfig<A, P> = typeof configOrHandler === 'function' ? { handler: configOrHandler } : configOrHandler
    const def = getMethodDef(nsid, this.lexicons)
    if (!def || def.type === 'subscription') {
      throw new Error(`${nsid} is not a query or procedure in the lexicon registry`)
    }
    if (this.methods.has(nsid)) throw new Error(`${nsid} already has a handler`)
    const limits = config.rateLimit === undefined ? [] : Array.isArray(config.rateLimit) ? config.rateLimit : [config.rateLimit]
    const rules = limits.map((limit, i) => {
      if ('points' in limit && 'durationMs' in limit) {
        return { id: limit.name ? `shared:${limit.name}` : `${nsid}:${i}`, rule: limit as unknown as RateLimitRule<HandlerContext> }
      }
      const shared = this.sharedRules.get(limit.name)
      if (!shared) throw new Error(`${nsid}: unknown shared rate limit ${limit.name}`)
      const rule: RateLimitRule<HandlerContext> = {
        ...shared,
        calcKey: (limit.calcKey ?? shared.calcKey) as RateLimitRule<HandlerContext>['calcKey'],
        calcPoints: (limit.calcPoints ?? shared.calcPoints) as RateLimitRule<HandlerContext>['calcPoints'],
      }
      return { id: `shared:${limit.name}`, rule }
    })
    this.methods.set(nsid, { def, config, rules })
    const rateLimited = this.rateLimitsEnabled && (rules.length > 0 || this.globalRules.length > 0)
    // the fast path charges limits synchronously, with the client IP as key and one point: a store that may
    // answer later, or a method limit that needs the handler context, keeps the regular path
    const limitsFast =
      !rateLimited || (this.rateLimitStore instanceof MemoryRateLimitStore && rules.every(({ rule }) => !rule.calcKey && !rule.calcPoints))
    if (config.fastQuery && def.type === 'query' && !config.auth && limitsFast && this.fastHeaders) {
      const validate = config.validateOutput ?? this.opts.validateOutput ?? false
      if (!this.listenFirst()) return this
      this.fastQueries.set(nsid, { handler: config.fastQuery, validate, rules: rules as unknown as FastMethod['rules'], params: new Map(), pending: 0 })
    }
    const input = def.type === 'procedure' ? def.input : undefined
    const fastInput = def.type === 'query' || (input?.schema !== undefined && isJsonEncoding(input.encoding))
    if (config.fastProcedure && fastInput && (!rateLimited || config.fastProcedureLimits) && this.fastHeaders) {
      if (!this.listenFirst()) return this
      this.fastProcedures.set(nsid, {
        handler: config.fastProcedure,
        rules: rules as unknown as FastProcedure['rules'],
        auth: config.auth,
        encoding: input?.encoding ?? '',
        query: def.type === 'query',
        params: new Map(),
        bodyLimit: config.bodyLimit ?? this.limits.json,
        validate: config.validateOutput ?? this.opts.validateOutput ?? false,
        counted: new Map(),
        timed: new Map(),
      })
    }
    return this
  }

  /**
   * Puts {@link tryFastQuery} ahead of fastify's request listener (the server stays fastify's, with its
   * options and timeouts). False when the server does not have the one listener expected.
   */
  private listenFirst(): boolean {
    if (this.fastListening) return true
    const server = this.app.server
    const listeners = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[]
    if (listeners.length !== 1) return false
    const fastifyHandler = listeners[0]!
    server.removeAllListeners('request')
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (this.closing || (!this.tryFastQuery(req, res) && !this.tryFastProcedure(req, res))) fastifyHandler.call(server, req, res)
    })
    this.fastListening = true
    return true
  }

  /** fastify logs each request (its level is info or lower) */
  private logsRequests(): boolean {
    const log = this.app.log as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean }
    return typeof log.isLevelEnabled === 'function' ? log.isLevelEnabled('info') : this.hasLogger
  }

  /** A fast query's validated params, kept by query string (throws the lexicon's error for bad ones, never kept). */
  private keptParams(kept: Map<string, Params>, nsid: string, query: string): Params {
    let params = kept.get(query)
    if (params === undefined) {
      // a pure function of the query string (the server's lexicons are fixed): checked once per string, frozen
      // with its arrays (a handler changing them would change what later requests get)
      params = validateParams(nsid, new URLSearchParams(query), this.lexicons)
      for (const value of Object.values(params)) if (Array.isArray(value)) Object.freeze(value)
      Object.freeze(params)
      if (query.length <= FAST_PARAMS_KEY_MAX) {
        if (kept.size >= FAST_PARAMS_MAX) kept.delete(kept.keys().next().value!)
        kept.set(query, params)
      }
    }
    return params
  }

  /**
   * Takes a request for a method with a {@link MethodConfig.fastProcedure} handler when it applies (then
   * answers it, errors included); false leaves the request to fastify (nothing read or written).
   */
  private tryFastProcedure(req: IncomingMessage, res: ServerResponse): boolean {
    if ((req.method !== 'POST' && req.method !== 'GET') || this.fastProcedures.size === 0) return false
    const url = req.url ?? ''
    const nsid = xrpcPathNsid(url)
    if (nsid === undefined) return false
    const fast = this.fastProcedures.get(nsid)
    if (!fast || req.method !== (fast.query ? 'GET' : 'POST')) return false
    const q = url.indexOf('?')
    const h = req.headers
    const contentLength = h['content-length']
    const contentType = h['content-type']
    if (fast.query) {
      // a body where none is expected: the regular path's error
      if ((contentLength !== undefined && contentLength !== '0') || h['transfer-encoding'] !== undefined) return false
    } else {
      if (contentLength === undefined || h['transfer-encoding'] !== undefined || contentType === undefined) return false
      // an empty, too large or mistyped body: the regular path's errors
      const length = Number(contentLength)
      if (!(length > 0 && length <= fast.bodyLimit) || !encodingMatches(fast.encoding, contentType)) return false
    }
    if (this.opts.fastPathFilter && !this.opts.fastPathFilter(req)) return false
    const genReqId = (this.app as unknown as { genReqId?: (req: IncomingMessage) => string }).genReqId
    if (typeof genReqId !== 'function') return false
    const start = performance.now()
    // fastify takes a request id for every request, logged or not
    const reqId = genReqId.call(this.app, req)
    const reqLog = this.logsRequests() ? this.logIncoming(req, res, reqId, start) : undefined
    void this.answerFastProcedure(req, res, nsid, q < 0 ? '' : url.slice(q + 1), contentType ?? '', fast, reqId, start, reqLog)
    return true
  }

  /**
   * The request log lines fastify writes for a request the fast path answers: "incoming request" now,
   * "request completed" (or "request errored") when the response is done. Returns the request's logger.
   */
  private logIncoming(req: IncomingMessage, res: ServerResponse, reqId: string, start: number, ip?: string): FastifyBaseLogger {
    const reqLog = this.app.childLoggerFactory.call(this.app, this.app.log, { reqId }, {}, req)
    // what fastify's req serializer reads of its request object
    const view = {
      id: reqId,
      raw: req,
      method: req.method,
      url: req.url,
      headers: req.headers,
      host: fastifyHost(req, this.trust),
      ip: ip ?? fastifyClientIp(req, this.trust),
      socket: req.socket,
    }
    reqLog.info({ req: view }, 'incoming request')
    const done = (err?: Error) => {
      res.removeListener('finish', done)
      res.removeListener('error', done)
      const responseTime = performance.now() - start
      if (err) reqLog.error({ res, err, responseTime }, 'request errored')
      else reqLog.info({ res, responseTime }, 'request completed')
    }
    res.on('finish', done)
    res.on('error', done)
    return reqLog
  }

  /**
   * Charges `rules` as the regular path's applyLimits does: throws the 429 of a refusal, else returns the
   * RateLimit-* headers of the tightest limit (undefined when no rule charged the request).
   */
  private async chargeForFastProcedure(rules: { id: string; rule: RateLimitRule<RateLimitContext> }[], ctx: RateLimitContext): Promise<Record<string, string> | undefined> {
    const status = tightest(await consumeAll(this.rateLimitStore, rules, ctx))
    if (!status) return undefined
    if (!status.allowed) throw rateLimitError(status)
    return fastRateLimitHeaders(status)
  }

  /** {@link handle} for a request {@link tryFastProcedure} took: params, auth, input, handler, response. */
  private async answerFastProcedure(
    req: IncomingMessage,
    res: ServerResponse,
    nsid: string,
    query: string,
    contentType: string,
    fast: FastProcedure,
    reqId: string,
    start: number,
    reqLog: FastifyBaseLogger | undefined,
  ): Promise<void> {
    let status: number
    // the RateLimit-* headers set so far (sent on errors too, as fastify's reply keeps them)
    let limitHeaders: Record<string, string> | undefined
    try {
      let limitReq: RateLimitContext['req'] | undefined
      if (this.rateLimitsEnabled && (this.globalRules.length > 0 || fast.rules.length > 0)) {
        const candidate = { ip: fastifyClientIp(req, this.trust), headers: req.headers }
        if (!(this.opts.rateLimits?.bypass?.(candidate) ?? false)) limitReq = candidate
      }
      if (limitReq && this.globalRules.length > 0) {
        limitHeaders = (await this.chargeForFastProcedure(this.globalRules, { req: limitReq, nsid })) ?? limitHeaders
      }
      let params: Params
      try {
        // a query's params are kept by query string, as fastQuery's (frozen)
        params = fast.query ? this.keptParams(fast.params, nsid, query) : validateParams(nsid, new URLSearchParams(query), this.lexicons)
      } catch (err) {
        throw new InvalidRequestError((err as Error).message, undefined, { cause: err })
      }
      const auth: AuthResult = fast.auth ? await fast.auth({ req, nsid, params }) : { credentials: null }
      let input: HandlerInput | undefined
      if (!fast.query) {
        let bytes: Buffer
        try {
          bytes = await readBody(req, fast.bodyLimit)
        } catch (err) {
          if (err instanceof PayloadTooLargeError) res.setHeader('connection', 'close')
          throw err
        }
        input = this.jsonInput(nsid, contentType, bytes)
      }
      if (limitReq && fast.rules.length > 0) {
        const ctx = { nsid, params, input, auth, req: limitReq }
        limitHeaders = (await this.chargeForFastProcedure(fast.rules, ctx)) ?? limitHeaders
      }
      const output = (await fast.handler({ nsid, params, input, auth, req })) ?? undefined
      const encoding = output ? (output.encoding === 'json' ? 'application/json' : output.encoding) : undefined
      if (fast.validate) {
        try {
          validateOutput(nsid, encoding, output?.body, this.lexicons)
        } catch (err) {
          throw new InternalServerError(`Invalid output for ${nsid}: ${(err as Error).message}`, undefined, { cause: err })
        }
      }
      const headers = headerList(this.fastHeaderList, limitHeaders, output?.headers)
      const payload = outputPayload(encoding, output?.body, output?.plainJson ?? false)
      if (payload) {
        setListedHeader(headers, 'content-type', payload.contentType)
        setListedHeader(headers, 'content-length', Buffer.byteLength(payload.body))
      } else {
        setListedHeader(headers, 'content-length', 0)
      }
      status = 200
      res.writeHead(200, headers)
      res.end(payload?.body)
    } catch (err) {
      const answer = this.errorAnswer(err, req, () => reqLog ?? this.app.childLoggerFactory.call(this.app, this.app.log, { reqId }, {}, req))
      if (!answer) {
        if (!res.headersSent && !req.socket.destroyed) req.socket.destroy()
        return
      }
      status = answer.status
      if (res.headersSent) return
      const headers = headerList(this.fastHeaderList, limitHeaders, answer.headers)
      // with its length, as fastify sends it (not chunked)
      setListedHeader(headers, 'content-length', Buffer.byteLength(answer.body))
      res.writeHead(answer.status, headers)
      res.end(answer.body)
    }
    if (this.metrics) {
      let counted = fast.counted.get(status)
      if (!counted) fast.counted.set(status, (counted = this.metrics.requests.labels({ nsid, method: fast.query ? 'GET' : 'POST', status: String(status) })))
      let timed = fast.timed.get(status)
      if (!timed) fast.timed.set(status, (timed = this.metrics.duration.labels({ nsid, status: String(status) })))
      fast.served ??= this.fastServed!.labels({ nsid })
      counted.inc()
      timed.observe((performance.now() - start) / 1000)
      fast.served.inc()
    }
  }

  /**
   * Answers a request for a method with a {@link MethodConfig.fastQuery} handler when it applies; false
   * leaves the request to fastify (nothing has been read or written; rate limits charged for a refused
   * request are recorded in {@link chargedEarly} for the regular path, which answers the 429).
   */
  private tryFastQuery(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'GET' || this.fastQueries.size === 0) return false
    const url = req.url ?? ''
    const nsid = xrpcPathNsid(url)
    if (nsid === undefined) return false
    const fast = this.fastQueries.get(nsid)
    if (!fast) return false
    const q = url.indexOf('?')
    const h = req.headers
    if ((h['content-length'] !== undefined && h['content-length'] !== '0') || h['transfer-encoding'] !== undefined) return false
    if (this.opts.fastPathFilter && !this.opts.fastPathFilter(req)) return false
    // fastify logs each request at info: the fast path writes the same lines through the same logger
    const logs = this.logsRequests()
    const genReqId = (this.app as unknown as { genReqId?: (req: IncomingMessage) => string }).genReqId
    if (typeof genReqId !== 'function') return false
    const start = performance.now()
    let out: { body: string; headers?: Record<string, string> } | undefined
    try {
      const query = q < 0 ? '' : url.slice(q + 1)
      out = fast.handler(this.keptParams(fast.params, nsid, query), req)
      if (!out) return false
      if (fast.validate) validateOutput(nsid, 'application/json', JSON.parse(out.body), this.lexicons)
    } catch {
      // the regular path answers (a 400 for bad params, a 500 for an invalid output, ...)
      return false
    }
    let ip: string | undefined
    let limitHeaders: Record<string, string> | undefined
    if (this.rateLimitsEnabled && (this.globalRules.length > 0 || fast.rules.length > 0)) {
      ip = fastifyClientIp(req, this.trust)
      const limitReq = { ip, headers: h }
      if (!(this.opts.rateLimits?.bypass?.(limitReq) ?? false)) {
        const status = this.chargeFast(req, nsid, fast, limitReq)
        if (status === false) return false
        if (status) limitHeaders = fastRateLimitHeaders(status)
      }
    }
    // fastify takes a request id for every request, logged or not
    const reqId = genReqId.call(this.app, req)
    if (logs) this.logIncoming(req, res, reqId, start, ip)
    const headers = headerList(this.fastHeaderList, limitHeaders, out.headers)
    setListedHeader(headers, 'content-type', 'application/json; charset=utf-8')
    setListedHeader(headers, 'content-length', Buffer.byteLength(out.body))
    res.writeHead(200, headers)
    res.end(out.body)
    if (this.metrics) {
      fast.timed ??= this.metrics.duration.labels({ nsid, status: '200' })
      fast.timed.observe((performance.now() - start) / 1000)
      // counted when the counters are read
      fast.pending++
    }
    return true
  }

  /** Adds the fast queries' {@link FastMethod.pending} answers to the request counters. */
  private flushFastCounts(): void {
    if (!this.metrics) return
    for (const [nsid, fast] of this.fastQueries) {
      if (fast.pending === 0) continue
      fast.counted ??= this.metrics.requests.labels({ nsid, method: 'GET', status: '200' })
      fast.served ??= this.fastServed!.labels({ nsid })
      fast.counted.inc(fast.pending)
      fast.served.inc(fast.pending)
      fast.pending = 0
    }
  }

  /**
   * Charges the global and the method's limits as {@link handle} does (the method's only when the global
   * ones allow the request). Returns the status for the RateLimit-* headers (undefined: no limit applied),
   * or false when a limit refuses the request: what was charged is kept for the regular path.
   */
  private chargeFast(req: IncomingMessage, nsid: string, fast: FastMethod, limitReq: RateLimitContext['req']): RateLimitStatus | undefined | false {
    const store = this.rateLimitStore as MemoryRateLimitStore
    const ctx: RateLimitContext = { req: limitReq, nsid }
    const global = this.globalRules.length > 0 ? consumeAllNow(store, this.globalRules, ctx) : []
    let status = tightest(global)
    if (status && !status.allowed) {
      this.chargedEarly.set(req, { global, method: [] })
      return false
    }
    if (fast.rules.length > 0) {
      const method = consumeAllNow(store, fast.rules, ctx)
      const own = tightest(method)
      if (own && !own.allowed) {
        this.chargedEarly.set(req, { global, method })
        return false
      }
      status = own ?? status
    }
    return status
  }

  hasMethod(nsid: string): boolean {
    return this.methods.has(nsid)
  }

  /** Starts listening (default 127.0.0.1, an ephemeral port); resolves to the base URL. */
  async listen(opts: { port?: number; host?: string } = {}): Promise<string> {
    const host = opts.host ?? '127.0.0.1'
    await this.app.listen({ port: opts.port ?? 0, host })
    return this.url
  }

  /** `http://host:port` of the listening server. */
  get url(): string {
    const addr = this.app.server.address() as AddressInfo | null
    if (!addr || typeof addr === 'string') throw new Error('server is not listening')
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
    return `http://${host}:${addr.port}`
  }

  async close(): Promise<void> {
    this.closing = true
    await this.app.close()
  }

  // request handling
  // =

  private async handle(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const nsid = (req.params as { nsid: string }).nsid
    if (!isValidNsid(nsid)) {
      this.metricLabels.set(req, '_unknown')
      throw new InvalidRequestError(`Invalid XRPC path: ${JSON.stringify(nsid)} is not an NSID`)
    }
    const def = getMethodDef(nsid, this.lexicons)
    const registered = this.methods.get(nsid)
    this.metricLabels.set(req, def || registered ? nsid : '_unknown')

    // a request the fast path charged and found refused: the same outcome, not charged twice
    const early = this.chargedEarly.get(req.raw)
    const rateLimited = early !== undefined || (this.rateLimitsEnabled && !(this.opts.rateLimits?.bypass?.(req) ?? false))
    if (rateLimited && this.globalRules.length > 0) {
      await this.applyLimits(reply, this.globalRules, { req, nsid }, early?.global)
    }

    if (def) {
      const verb = req.method === 'HEAD' ? 'GET' : req.method
      const expected = def.type === 'procedure' ? 'POST' : 'GET'
      if (verb !== expected) {
        throw new InvalidRequestError(`Incorrect HTTP method (${req.method}) expected ${expected}`)
      }
    }

    if (!registered || def?.type === 'subscription') {
      if (this.opts.catchall && def?.type !== 'subscription') {
        const rawBody = req.body instanceof Readable ? req.body : undefined
        const output = await this.opts.catchall({ nsid, def, req, reply, rawBody })
        if (reply.sent) return reply
        if (output) {
          this.sendOutput(reply, nsid, output, false)
          return reply
        }
      }
      throw new MethodNotImplementedError(def ? `Method not implemented: ${nsid}` : `Unknown method: ${nsid}`)
    }

    const { config } = registered
    let params: Params
    try {
      params = validateParams(nsid, new URLSearchParams(req.url.split('?')[1] ?? ''), this.lexicons)
    } catch (err) {
      throw new InvalidRequestError((err as Error).message, undefined, { cause: err })
    }

    const auth: AuthResult = config.auth ? await config.auth({ req, nsid, params }) : { credentials: null }

    const input = await this.readInput(req, reply, nsid, registered)

    let checkedKeys: string[] = []
    const ctx: HandlerContext = {
      nsid,
      params,
      input,
      auth,
      req,
      reply,
      resetRouteRateLimits: async () => {
        for (const key of checkedKeys) await this.rateLimitStore.reset(key)
      },
    }
    if (rateLimited && registered.rules.length > 0) {
      checkedKeys = await this.applyLimits(reply, registered.rules, ctx, early?.method)
    }

    const output = await config.handler(ctx)
    if (reply.sent) return reply
    const validate = config.validateOutput ?? this.opts.validateOutput ?? false
    this.sendOutput(reply, nsid, output ?? undefined, validate)
    return reply
  }

  private async applyLimits<C extends RateLimitContext>(
    reply: FastifyReply,
    rules: { id: string; rule: RateLimitRule<C> }[],
    ctx: C,
    charged?: CheckedLimit[],
  ): Promise<string[]> {
    const checked = charged ?? (await consumeAll(this.rateLimitStore, rules, ctx))
    const status = tightest(checked)
    if (status) {
      if (!status.allowed) throw rateLimitError(status)
      reply.headers(rateLimitHeaders(status))
    }
    return checked.map((c) => c.key)
  }

  private async readInput(
    req: FastifyRequest,
    reply: FastifyReply,
    nsid: string,
    { def, config }: RegisteredMethod,
  ): Promise<HandlerInput | undefined> {
    const stream = req.body instanceof Readable ? req.body : undefined
    const contentLength = header(req, 'content-length')
    const chunked = header(req, 'transfer-encoding') !== undefined
    const hasBody = stream !== undefined && (chunked || (contentLength !== undefined && contentLength !== '0'))
    const contentType = header(req, 'content-type')
    const inputDef = def.type === 'procedure' ? def.input : undefined

    if (!hasBody) {
      if (inputDef) throw new InvalidRequestError('A request body is expected but none was provided')
      return undefined
    }
    if (!inputDef) throw new InvalidRequestError('A request body was provided when none was expected')
    if (!contentType) throw new InvalidRequestError('Request encoding (Content-Type) required but not provided')
    if (!encodingMatches(inputDef.encoding, contentType)) {
      throw new InvalidRequestError(`Wrong request encoding (Content-Type): ${contentType}, expected ${inputDef.encoding}`)
    }

    const json = isJsonEncoding(inputDef.encoding)
    const text = !json && inputDef.encoding.toLowerCase().startsWith('text/')
    const limit = config.bodyLimit ?? (json ? this.limits.json : text ? this.limits.text : this.limits.raw)
    if (contentLength !== undefined && Number(contentLength) > limit) {
      reply.header('connection', 'close')
      throw new PayloadTooLargeError(`Request body is larger than the limit of ${limit} bytes`)
    }

    if (!json && !text && config.rawInput === 'stream') {
      return { encoding: contentType, body: limitStream(stream, limit) }
    }

    let bytes: Buffer
    try {
      bytes = await readBody(stream, limit)
    } catch (err) {
      if (err instanceof PayloadTooLargeError) reply.header('connection', 'close')
      throw err
    }
    if (!json && bytes.length === 0) {
      // a chunked request that turned out empty
      throw new InvalidRequestError('A request body is expected but none was provided')
    }
    if (!json) return { encoding: contentType, body: text ? bytes.toString('utf8') : bytes }
    return this.jsonInput(nsid, contentType, bytes)
  }

  /** A JSON request body, parsed and validated against the method's input schema (lex form, defaults applied). */
  private jsonInput(nsid: string, contentType: string, bytes: Buffer): HandlerInput {
    if (bytes.length === 0) {
      // a chunked request that turned out empty
      throw new InvalidRequestError('A request body is expected but none was provided')
    }
    let parsed: unknown
    const jsonText = bytes.toString('utf8')
    try {
      // a "__proto__" key would be dropped (or become a prototype) on the way to the handler, so what is
      // stored would differ from what was acknowledged: such bodies are refused (checked only when the
      // text could spell the key, directly or through escapes)
      parsed = jsonText.includes('__proto__') || jsonText.includes('\\u') ? JSON.parse(jsonText, refuseProtoKey) : JSON.parse(jsonText)
    } catch (err) {
      if (err instanceof XRPCError) throw err
      throw new InvalidRequestError(`Invalid JSON body: ${(err as Error).message}`, undefined, { cause: err })
    }
    try {
      return { encoding: contentType, body: validateInput(nsid, contentType, parsed, this.lexicons, { jsonForm: true }) }
    } catch (err) {
      if (err instanceof LexiconValidationError) throw new InvalidRequestError(err.message, undefined, { cause: err })
      // jsonToLex refuses bad $link / $bytes / blob objects
      throw new InvalidRequestError(`Invalid request body: ${(err as Error).message}`, undefined, { cause: err })
    }
  }

  private sendOutput(reply: FastifyReply, nsid: string, output: HandlerOutput | undefined, validate: boolean): void {
    const encoding = output ? (output.encoding === 'json' ? 'application/json' : output.encoding) : undefined
    if (validate && !(output?.body instanceof Readable)) {
      try {
        validateOutput(nsid, encoding, output?.body, this.lexicons)
      } catch (err) {
        throw new InternalServerError(`Invalid output for ${nsid}: ${(err as Error).message}`, undefined, { cause: err })
      }
    }
    reply.code(200)
    if (output?.headers) reply.headers(output.headers)
    const payload = outputPayload(encoding, output?.body, output?.plainJson ?? false)
    if (payload === null) {
      reply.send()
      return
    }
    if (payload === undefined) {
      reply.header('content-type', encoding ?? 'application/octet-stream')
      reply.send(output!.body)
      return
    }
    reply.header('content-type', payload.contentType)
    reply.send(payload.body)
  }

  private sendError(req: FastifyRequest, reply: FastifyReply, err: unknown): void {
    const answer = this.errorAnswer(err, req.raw, () => req.log, reply.getHeader('www-authenticate') !== undefined)
    if (!answer) {
      if (!reply.sent && !req.raw.socket.destroyed) req.raw.socket.destroy()
      return
    }
    if (reply.sent) return
    reply.code(answer.status)
    reply.headers(answer.headers)
    reply.send(answer.body)
  }

  /**
   * The response to a failed request (logged as such), or null when the client went away mid-request (nothing
   * to answer, and not the service's failure: the caller closes the socket).
   */
  private errorAnswer(
    err: unknown,
    raw: IncomingMessage,
    log: () => FastifyBaseLogger,
    /** the response already has a WWW-Authenticate header */
    hasWwwAuthenticate = false,
  ): { status: number; headers: Record<string, string>; body: string } | null {
    if (!(err instanceof XRPCError) && isClientAbort(err, raw)) {
      log().info({ code: (err as { code?: unknown }).code }, 'request aborted by the client')
      return null
    }
    const xerr = toXrpcError(err, this.opts.exposeInternalErrors ?? false)
    if (xerr.status >= 500 && xerr.status !== 501) log().error({ err }, 'xrpc request failed')
    else log().debug({ err: { error: xerr.error, message: xerr.message } }, 'xrpc request refused')
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(xerr.headers)) headers[k.toLowerCase()] = v
    if (xerr.status === 401 && headers['www-authenticate'] === undefined && !hasWwwAuthenticate) headers['www-authenticate'] = 'Bearer'
    if (xerr.status === 413 && !raw.complete) headers.connection = 'close'
    headers['content-type'] = 'application/json; charset=utf-8'
    return { status: xerr.status, headers, body: JSON.stringify(xerr.toJSON()) }
  }
}

/** The NSID of a request path `/xrpc/<nsid>[?query]`, or undefined for another path. */
function xrpcPathNsid(url: string): string | undefined {
  if (!url.startsWith('/xrpc/')) return undefined
  const q = url.indexOf('?')
  return q < 0 ? url.slice(6) : url.slice(6, q)
}

/**
 * A handler output's response body and its Content-Type: null for no body, undefined for a body sent as it is
 * (a stream, or a value of an encoding that is not JSON).
 */
function outputPayload(
  encoding: string | undefined,
  body: unknown,
  plainJson: boolean,
): { contentType: string; body: string | Buffer } | null | undefined {
  if (body === undefined) return null
  if (body instanceof Readable) return undefined
  if (body instanceof Uint8Array) {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
    return { contentType: encoding ?? 'application/octet-stream', body: buf }
  }
  if (typeof body === 'string') return { contentType: encoding ?? 'application/octet-stream', body }
  if (encoding && isJsonEncoding(encoding)) {
    return { contentType: 'application/json; charset=utf-8', body: JSON.stringify(plainJson ? body : lexToJson(body as never)) }
  }
  return undefined
}

/** Creates an {@link XrpcServer} (not yet listening). */
export function createXrpcServer(opts: XrpcServerOptions = {}): XrpcServer {
  return new XrpcServer(opts)
}
