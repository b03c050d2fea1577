import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/** Scopes carried in session tokens (same strings as the reference PDS, so tokens read the same). */
export const AuthScope = {
  Access: 'com.atproto.access',
  Refresh: 'com.atproto.refresh',
  AppPass: 'com.atproto.appPass',
  AppPassPrivileged: 'com.atproto.appPassPrivileged',
  Takendown: 'com.atproto.takendown',
} as const
export type AuthScope = (typeof AuthScope)[keyof typeof AuthScope]

export type TokenType = 'at+jwt' | 'refresh+jwt'

export interface SessionTokenPayload {
  scope: AuthScope
  sub: string
  aud: string
  iat: number
  exp: number
  jti?: string
}

export type TokenFailure = 'malformed' | 'bad-signature' | 'wrong-type' | 'expired' | 'wrong-audience'

export class TokenError extends Error {
  constructor(
    readonly reason: TokenFailure,
    message: string,
  ) {
    super(message)
    this.name = 'TokenError'
  }
}

/** verified tokens remembered (a few MB at most) */
const VERIFIED_CACHE_SIZE = 10_000

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url')

/**
 * HS256 session tokens. Access tokens: `typ: at+jwt`; refresh tokens: `typ: refresh+jwt` with a `jti` the
 * service database keeps, so a refresh token can be rotated and revoked.
 */
export class SessionTokens {
  private readonly key: Buffer

  constructor(
    secret: string,
    private readonly serviceDid: string,
    private readonly accessTtlSec: number,
    private readonly refreshTtlSec: number,
  ) {
    this.key = Buffer.from(secret, 'utf8')
  }

  private sign(typ: TokenType, payload: SessionTokenPayload): string {
    const head = b64url(JSON.stringify({ typ, alg: 'HS256' }))
    const body = b64url(JSON.stringify(payload))
    const sig = createHmac('sha256', this.key).update(`${head}.${body}`).digest()
    return `${head}.${body}.${b64url(sig)}`
  }

  createAccessToken(did: string, scope: AuthScope, now = Date.now()): string {
    const iat = Math.floor(now / 1000)
    return this.sign('at+jwt', { scope, sub: did, aud: this.serviceDid, iat, exp: iat + this.accessTtlSec })
  }

  createRefreshToken(did: string, jti: string, now = Date.now()): { jwt: string; expiresAt: number } {
    const iat = Math.floor(now / 1000)
    const exp = iat + this.refreshTtlSec
    const jwt = this.sign('refresh+jwt', { scope: AuthScope.Refresh, sub: did, aud: this.serviceDid, jti, iat, exp })
    return { jwt, expiresAt: exp * 1000 }
  }

  /**
   * Tokens whose signature, shape and audience checked out (every request of a session carries the same
   * token): token → its `typ` and payload. Expiry and `typ` are still checked on each use. Bounded; the
   * oldest entry goes first.
   */
  private readonly verified = new Map<string, { typ: unknown; payload: SessionTokenPayload }>()

  /**
   * Checks signature, `typ`, audience and expiry. The signature is checked before anything in the payload
   * is trusted; a token that does not parse is 'malformed'.
   */
  verify(token: string, typ: TokenType, opts: { allowExpired?: boolean; now?: number } = {}): SessionTokenPayload {
    let known = this.verified.get(token)
    if (!known) {
      known = this.verifyUncached(token)
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!)
      this.verified.set(token, known)
    }
    if (known.typ !== typ) throw new TokenError('wrong-type', 'Invalid token type')
    if (!opts.allowExpired && known.payload.exp * 1000 <= (opts.now ?? Date.now())) {
      throw new TokenError('expired', 'Token has expired')
    }
    return { ...known.payload }
  }

  /** Signature, shape and audience (what does not change with time or with the expected `typ`). */
  private verifyUncached(token: string): { typ: unknown; payload: SessionTokenPayload } {
    const parts = token.split('.')
    if (parts.length !== 3) throw new TokenError('malformed', 'Malformed token')
    const [head, body, sig] = parts
    let header: Record<string, unknown>
    let payload: Record<string, unknown>
    try {
      header = JSON.parse(Buffer.from(head, 'base64url').toString('utf8'))
      payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
    } catch {
      throw new TokenError('malformed', 'Malformed token')
    }
    if (!header || typeof header !== 'object' || !payload || typeof payload !== 'object') {
      throw new TokenError('malformed', 'Malformed token')
    }
    if (header.alg !== 'HS256') throw new TokenError('bad-signature', 'Token could not be verified')
    const expected = createHmac('sha256', this.key).update(`${head}.${body}`).digest()
    const given = Buffer.from(sig, 'base64url')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new TokenError('bad-signature', 'Token could not be verified')
    }
    const { scope, sub, aud, iat, exp, jti } = payload
    if (typeof sub !== 'string' || !sub.startsWith('did:') || typeof scope !== 'string') {
      throw new TokenError('malformed', 'Malformed token')
    }
    if (typeof exp !== 'number' || typeof iat !== 'number') throw new TokenError('malformed', 'Malformed token')
    if (jti !== undefined && typeof jti !== 'string') throw new TokenError('malformed', 'Malformed token')
    if (aud !== this.serviceDid) throw new TokenError('wrong-audience', 'Token audience is not this service')
    return { typ: header.typ, payload: { scope: scope as AuthScope, sub, aud, iat, exp, jti: jti as string | undefined } }
  }
}

export const newTokenId = (): string => randomBytes(32).toString('base64url')
