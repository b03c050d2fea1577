import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { VerifyServiceJwtOptions } from '../auth/index.js'
import { AuthRequiredError, RateLimitExceededError, XRPCError } from './errors.js'

/** What an auth verifier needs of a request (a FastifyRequest or a raw IncomingMessage both fit). */
export interface AuthRequest {
  headers: IncomingHttpHeaders
  url?: string
  method?: string
}

export interface AuthContext<R extends AuthRequest = AuthRequest> {
  req: R
  /** The XRPC method being called (when known; else taken from the URL where needed). */
  nsid?: string
  params?: Record<string, unknown>
}

export interface AuthResult<C = unknown> {
  credentials: C
  artifacts?: unknown
}

/** Resolves the caller's credentials or throws an XRPCError (usually AuthRequiredError / ForbiddenError). */
export type AuthVerifier<C = unknown> = (ctx: AuthContext) => Promise<AuthResult<C>>

export interface AdminCredentials {
  type: 'admin'
}

export interface ServiceCredentials {
  type: 'service'
  /** The calling account's DID (the JWT `iss`). */
  iss: string
  aud: string
  lxm?: string
}

function authorizationHeader(req: AuthRequest): string | undefined {
  const h = req.headers.authorization
  return Array.isArray(h) ? h[0] : h
}

/** `Authorization: <scheme> <value>` → value, or null when the header is absent or another scheme. */
export function parseAuthorization(req: AuthRequest, scheme: string): string | null {
  const header = authorizationHeader(req)
  if (!header) return null
  const space = header.indexOf(' ')
  if (space < 0) return null
  if (header.slice(0, space).toLowerCase() !== scheme.toLowerCase()) return null
  const value = header.slice(space + 1).trim()
  return value.length > 0 ? value : null
}

/** The NSID in `/xrpc/<nsid>?...` (or undefined). */
export function nsidFromUrl(url: string | undefined): string | undefined {
  if (!url?.startsWith('/xrpc/')) return undefined
  const end = url.search(/[?#]/)
  const nsid = url.slice('/xrpc/'.length, end < 0 ? undefined : end)
  return nsid.length > 0 ? nsid : undefined
}

export interface BearerAuthOptions {
  /** WWW-Authenticate challenge on failure (default `Bearer`). */
  challenge?: string
}

/**
 * `Authorization: Bearer <token>`; `verifyToken` maps a token to credentials. An XRPCError it throws
 * goes to the client as is (e.g. 400 ExpiredToken); any other error becomes 401 InvalidToken.
 */
export function bearerAuth<C>(
  verifyToken: (token: string, ctx: AuthContext) => Promise<C> | C,
  opts: BearerAuthOptions = {},
): AuthVerifier<C> {
  const challenge = opts.challenge ?? 'Bearer'
  return async (ctx) => {
    const token = parseAuthorization(ctx.req, 'Bearer')
    if (!token) {
      throw new AuthRequiredError('Authentication Required: a Bearer token is expected', undefined, {
        wwwAuthenticate: challenge,
        missing: true,
      })
    }
    let credentials: C
    try {
      credentials = await verifyToken(token, ctx)
    } catch (err) {
      if (err instanceof XRPCError) throw err
      throw new AuthRequiredError('Token could not be verified', 'InvalidToken', {
        wwwAuthenticate: `${challenge} error="invalid_token"`,
        cause: err,
      })
    }
    return { credentials, artifacts: token }
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

export interface AdminAuthLimiterOptions {
  /** Failed attempts allowed per client address within the window (default 10). */
  maxFailures?: number
  /** The window, ms (default 60 s: after 10 failures, one more try per 6 s). */
  windowMs?: number
}

/**
 * Counts failed admin logins per client address. An address over its budget is refused (429) before its
 * password is looked at, so guessing costs the attacker time, not the service CPU. Always on, also when
 * a service's general rate limits are off. Budgets refill continuously.
 */
export class AdminAuthLimiter {
  readonly maxFailures: number
  readonly windowMs: number
  private readonly failures = new Map<string, { count: number; at: number }>()

  constructor(opts: AdminAuthLimiterOptions = {}) {
    this.maxFailures = opts.maxFailures ?? 10
    this.windowMs = opts.windowMs ?? 60_000
  }

  private current(key: string, now: number): number {
    const f = this.failures.get(key)
    if (!f) return 0
    const refilled = ((now - f.at) * this.maxFailures) / this.windowMs
    const count = Math.max(0, f.count - refilled)
    if (count === 0) this.failures.delete(key)
    return count
  }

  /** Throws 429 RateLimitExceeded when `key` has no attempt left. */
  check(key: string, now = Date.now()): void {
    const count = this.current(key, now)
    if (count + 1 > this.maxFailures) {
      const retryAfterS = Math.ceil(((count + 1 - this.maxFailures) * this.windowMs) / this.maxFailures / 1000)
      throw new RateLimitExceededError('Too many failed admin authentication attempts', retryAfterS)
    }
  }

  fail(key: string, now = Date.now()): void {
    const count = this.current(key, now)
    if (this.failures.size >= 100_000) this.failures.clear()
    this.failures.set(key, { count: count + 1, at: now })
  }
}

/** The client address of a request: fastify's `ip` (trusted proxies applied), else the socket's. */
function clientKey(req: AuthRequest): string {
  const r = req as AuthRequest & { ip?: string; socket?: { remoteAddress?: string } }
  return r.ip ?? r.socket?.remoteAddress ?? 'unknown'
}

/**
 * HTTP Basic `admin:<password>` (the reference PDS's admin auth). The password is compared in constant
 * time (as SHA-256 digests, so its length does not leak either). Failed attempts are limited per client
 * address (`limiter`, default: 10 per minute, one limiter per verifier; pass one to share it).
 */
export function adminBasicAuth(password: string, opts: { limiter?: AdminAuthLimiter } = {}): AuthVerifier<AdminCredentials> {
  if (!password) throw new Error('adminBasicAuth needs a non-empty password')
  const expected = digest(password)
  const limiter = opts.limiter ?? new AdminAuthLimiter()
  const challenge = 'Basic realm="admin", charset="UTF-8"'
  return async (ctx) => {
    const encoded = parseAuthorization(ctx.req, 'Basic')
    if (!encoded) {
      throw new AuthRequiredError('Authentication Required: admin Basic auth is expected', undefined, {
        wwwAuthenticate: challenge,
        missing: true,
      })
    }
    const key = clientKey(ctx.req)
    limiter.check(key)
    const decoded = Buffer.from(encoded, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    const user = colon < 0 ? '' : decoded.slice(0, colon)
    const given = colon < 0 ? '' : decoded.slice(colon + 1)
    const passwordOk = timingSafeEqual(digest(given), expected)
    if (!passwordOk || user !== 'admin') {
      limiter.fail(key)
      throw new AuthRequiredError('Invalid admin credentials', undefined, { wwwAuthenticate: challenge })
    }
    return { credentials: { type: 'admin' } }
  }
}

/**
 * The options of ../auth's verifyServiceJwt (audience = this service's DID + service id,
 * getSigningKey, replayCache, clockSkewSeconds, ...), minus `lxm`, which is the method being called.
 */
export type ServiceJwtAuthOptions = Omit<VerifyServiceJwtOptions, 'lxm'> & {
  /**
   * Require `lxm` to equal the called method (default true). False passes `lxm: null` (no check), for
   * endpoints that accept tokens minted for any method.
   */
  checkLxm?: boolean
}

type AuthModule = typeof import('../auth/index.js')
let authModule: Promise<AuthModule> | undefined
/** ../auth is loaded on first use, so servers that never verify service JWTs do not load it. */
function loadAuthModule(): Promise<AuthModule> {
  authModule ??= import('../auth/index.js')
  return authModule
}

/**
 * Inter-service auth: `Authorization: Bearer <service JWT>` checked by ../auth's verifyServiceJwt
 * (signature by the issuer's signing key, `aud`, `exp`, `lxm` = the method, `jti` replay).
 * Failures are 401 with the verifier's error name (BadJwtSignature, JwtExpired, ...).
 */
export function serviceJwtAuth(opts: ServiceJwtAuthOptions): AuthVerifier<ServiceCredentials> {
  return async (ctx) => {
    const token = parseAuthorization(ctx.req, 'Bearer')
    if (!token) {
      throw new AuthRequiredError('Authentication Required: a service JWT is expected', undefined, { missing: true })
    }
    const nsid = ctx.nsid ?? nsidFromUrl(ctx.req.url)
    const lxm = opts.checkLxm === false ? null : (nsid ?? null)
    const { verifyServiceJwt } = await loadAuthModule()
    try {
      const { checkLxm: _checkLxm, ...verifyOpts } = opts
      const payload = await verifyServiceJwt(token, { ...verifyOpts, lxm })
      const credentials: ServiceCredentials = { type: 'service', iss: payload.iss, aud: String(payload.aud) }
      if (payload.lxm) credentials.lxm = payload.lxm
      return { credentials, artifacts: token }
    } catch (err) {
      if (err instanceof XRPCError) throw err
      const name = (err as { error?: unknown }).error
      throw new AuthRequiredError((err as Error).message || 'Invalid service JWT', typeof name === 'string' ? name : 'BadJwt', {
        wwwAuthenticate: 'Bearer error="invalid_token"',
        cause: err,
      })
    }
  }
}

/**
 * Tries each verifier in turn; the first success wins. When all fail, the error of the first verifier
 * that found its kind of credentials (a bad token rather than none) is thrown, else the first error.
 */
export function anyOf<Vs extends AuthVerifier<unknown>[]>(
  ...verifiers: Vs
): AuthVerifier<Vs[number] extends AuthVerifier<infer C> ? C : never> {
  if (verifiers.length === 0) throw new Error('anyOf needs at least one verifier')
  type C = Vs[number] extends AuthVerifier<infer X> ? X : never
  return async (ctx) => {
    const errors: unknown[] = []
    for (const verify of verifiers) {
      try {
        return (await verify(ctx)) as AuthResult<C>
      } catch (err) {
        errors.push(err)
      }
    }
    const specific = errors.find((e) => !(e instanceof AuthRequiredError && e.missing))
    if (specific) throw specific
    // nobody found credentials: one 401 listing every challenge
    const challenges = [
      ...new Set(errors.map((e) => (e instanceof XRPCError ? e.headers['WWW-Authenticate'] : undefined)).filter(Boolean)),
    ] as string[]
    throw new AuthRequiredError('Authentication Required', undefined, {
      wwwAuthenticate: challenges.join(', ') || 'Bearer',
      missing: true,
    })
  }
}

/**
 * Auth that may be absent: no Authorization header → `{ credentials: null }`; a header that is there
 * must verify (a bad token is still a 401, never silently anonymous).
 */
export function optional<C>(verifier: AuthVerifier<C>): AuthVerifier<C | null> {
  return async (ctx) => {
    if (!authorizationHeader(ctx.req)) return { credentials: null }
    return verifier(ctx)
  }
}

/** No auth: `{ credentials: null }`. */
export const noAuth: AuthVerifier<null> = async () => ({ credentials: null })
