/**
 * Inter-service authentication: short-lived JWTs signed with an account's (or service's) atproto
 * signing key. Header `{typ:'JWT', alg}` with alg ES256K (k256) or ES256 (p256); body iss, aud, exp,
 * iat, lxm (the XRPC method), jti (a random nonce); signature = compact 64-byte low-S ECDSA over
 * sha256 of the ASCII `b64url(header).b64url(body)`, base64url.
 */
import { randomBytes } from 'node:crypto'
import { parseDidKey, verifySignature } from '../crypto/index.js'
import { JtiReplayCache } from './replay-cache.js'

export type AuthErrorName =
  | 'BadJwt'
  | 'BadJwtType'
  | 'BadJwtIss'
  | 'JwtExpired'
  | 'BadJwtAudience'
  | 'BadJwtLexiconMethod'
  | 'BadJwtSignature'
  | 'JwtReplayed'

/** A refused service token. `error` is the XRPC error name to answer with (status 401). */
export class AuthError extends Error {
  override name = 'AuthError'
  readonly status = 401
  constructor(
    readonly error: AuthErrorName,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** What signs a service JWT: our SigningKeypair, or @atproto/crypto's keypairs. */
export interface JwtSigner {
  jwtAlg: string
  sign(msg: Uint8Array): Promise<Uint8Array>
}

export interface CreateServiceJwtOptions {
  iss: string
  aud: string
  /** the XRPC method the token is for; null/undefined = not bound to a method */
  lxm?: string | null
  keypair: JwtSigner
  /** default 60 */
  expiresInSeconds?: number
  /** issued-at, unix seconds (default now) */
  iat?: number
  /** explicit expiry, unix seconds (overrides expiresInSeconds) */
  exp?: number
}

export interface ServiceJwtPayload {
  iss: string
  aud: string
  exp: number
  iat?: number
  lxm?: string
  jti?: string
}

const JWT_ALGS = new Set(['ES256K', 'ES256'])

function b64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url')
}

export async function createServiceJwt(opts: CreateServiceJwtOptions): Promise<string> {
  const alg = opts.keypair.jwtAlg
  if (!JWT_ALGS.has(alg)) throw new Error(`unsupported signing key alg: ${alg}`)
  const iat = opts.iat ?? Math.floor(Date.now() / 1000)
  const exp = opts.exp ?? iat + (opts.expiresInSeconds ?? 60)
  const header = { typ: 'JWT', alg }
  const payload: ServiceJwtPayload = { iat, iss: opts.iss, aud: opts.aud, exp }
  if (opts.lxm !== undefined && opts.lxm !== null) payload.lxm = opts.lxm
  payload.jti = randomBytes(16).toString('hex')
  const signingInput = `${b64urlJson(header)}.${b64urlJson(payload)}`
  const sig = await opts.keypair.sign(Buffer.from(signingInput, 'utf8'))
  return `${signingInput}.${Buffer.from(sig).toString('base64url')}`
}

export interface VerifyServiceJwtOptions {
  /** our service DID with service fragment (`did:web:api.example#bsky_appview`); a list accepts any */
  audience: string | string[]
  /** the method being called; null = do not check lxm */
  lxm: string | null
  /** did:key for the issuer; forceRefresh = true after a failed signature check */
  getSigningKey(iss: string, forceRefresh: boolean): Promise<string>
  replayCache?: JtiReplayCache
  /** refuse tokens without a jti (default false: older issuers may omit it) */
  requireJti?: boolean
  /** tolerance for exp / iat, seconds (default 10) */
  clockSkewSeconds?: number
  /** refuse tokens whose exp lies further ahead than this many seconds (default: no limit) */
  maxLifetimeSeconds?: number
  /** clock, ms since epoch (tests) */
  now?: () => number
}

const B64URL_RE = /^[A-Za-z0-9_-]+$/
const DID_RE = /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function decodeJsonPart(part: string, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
  } catch {
    throw new AuthError('BadJwt', `jwt ${what} is not base64url JSON`)
  }
  if (!isRecord(value)) throw new AuthError('BadJwt', `jwt ${what} is not a JSON object`)
  return value
}

/** A DID, or a DID with one service fragment (`did:web:labeler.example#atproto_labeler`). */
function isValidIss(iss: string): boolean {
  const hash = iss.indexOf('#')
  const did = hash === -1 ? iss : iss.slice(0, hash)
  if (hash !== -1) {
    const frag = iss.slice(hash + 1)
    if (frag.length === 0 || frag.includes('#')) return false
  }
  return did.length <= 2048 && DID_RE.test(did)
}

/** JWT alg of each did:key seen (null: not a supported did:key), so the key is parsed (base58, point check) once, not per token */
const keyAlgs = new Map<string, string | null>()
const KEY_ALG_CACHE_SIZE = 10_000

function keyAlg(didKey: string): string | null {
  const known = keyAlgs.get(didKey)
  if (known !== undefined) return known
  let alg: string | null
  try {
    alg = parseDidKey(didKey).jwtAlg
  } catch {
    alg = null
  }
  keyAlgs.set(didKey, alg)
  if (keyAlgs.size > KEY_ALG_CACHE_SIZE) keyAlgs.delete(keyAlgs.keys().next().value!)
  return alg
}

/**
 * Verifies a service-auth JWT and returns its claims. Checks structure, typ, alg, exp (with skew),
 * iat (not in the future), aud, lxm, the signature with the issuer's key (refreshing the key once if it
 * does not match — key rotation), and finally the jti against the replay cache (only tokens with a good
 * signature are remembered). Throws AuthError.
 */
export async function verifyServiceJwt(token: string, opts: VerifyServiceJwtOptions): Promise<ServiceJwtPayload> {
  const skew = opts.clockSkewSeconds ?? 10
  const nowSec = (opts.now ?? Date.now)() / 1000

  if (typeof token !== 'string') throw new AuthError('BadJwt', 'jwt is not a string')
  const parts = token.split('.')
  if (parts.length !== 3 || !parts.every((p) => B64URL_RE.test(p))) {
    throw new AuthError('BadJwt', 'poorly formatted jwt')
  }
  const [headerPart, payloadPart, sigPart] = parts as [string, string, string]

  const header = decodeJsonPart(headerPart, 'header')
  const alg = header.alg
  if (typeof alg !== 'string' || !JWT_ALGS.has(alg)) {
    throw new AuthError('BadJwt', `unsupported jwt alg: ${String(alg).slice(0, 40)}`)
  }
  if (header.typ !== undefined) {
    if (typeof header.typ !== 'string') throw new AuthError('BadJwtType', 'jwt typ is not a string')
    // service tokens are plain JWTs: not access (at+jwt), refresh or DPoP tokens
    if (header.typ.toLowerCase() !== 'jwt') {
      throw new AuthError('BadJwtType', `jwt typ "${header.typ.slice(0, 40)}" is not a service token`)
    }
  }
  if (header.kid !== undefined && header.kid !== '#atproto') {
    throw new AuthError('BadJwt', `unsupported jwt kid: ${String(header.kid).slice(0, 60)}`)
  }

  const body = decodeJsonPart(payloadPart, 'payload')
  const { iss, aud, exp, iat, lxm, jti } = body
  if (typeof iss !== 'string' || typeof aud !== 'string' || typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw new AuthError('BadJwt', 'jwt must have string iss and aud and a numeric exp')
  }
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) {
    throw new AuthError('BadJwt', 'jwt iat is not a number')
  }
  if (lxm !== undefined && typeof lxm !== 'string') throw new AuthError('BadJwt', 'jwt lxm is not a string')
  if (jti !== undefined && (typeof jti !== 'string' || jti.length === 0 || jti.length > 256)) {
    throw new AuthError('BadJwt', 'jwt jti is not a usable string')
  }
  if (!isValidIss(iss)) throw new AuthError('BadJwtIss', 'jwt iss is not a valid DID')

  if (nowSec > exp + skew) throw new AuthError('JwtExpired', 'jwt expired')
  if (iat !== undefined && iat > nowSec + skew) throw new AuthError('BadJwt', 'jwt issued in the future (iat)')
  if (opts.maxLifetimeSeconds !== undefined && exp > nowSec + opts.maxLifetimeSeconds + skew) {
    throw new AuthError('BadJwt', `jwt expires too far in the future (limit ${opts.maxLifetimeSeconds} s)`)
  }

  const audiences = Array.isArray(opts.audience) ? opts.audience : [opts.audience]
  if (!audiences.includes(aud)) {
    throw new AuthError('BadJwtAudience', 'jwt audience does not match service did')
  }
  if (opts.lxm !== null && lxm !== opts.lxm) {
    throw new AuthError(
      'BadJwtLexiconMethod',
      lxm === undefined
        ? `missing jwt lexicon method ("lxm"); must be ${opts.lxm}`
        : `bad jwt lexicon method ("lxm"); must be ${opts.lxm}`,
    )
  }
  if (opts.requireJti && jti === undefined) throw new AuthError('BadJwt', 'jwt has no jti')

  const sig = new Uint8Array(Buffer.from(sigPart, 'base64url'))
  if (sig.length !== 64) throw new AuthError('BadJwtSignature', 'jwt signature is not 64 bytes')
  const msg = new Uint8Array(Buffer.from(`${headerPart}.${payloadPart}`, 'utf8'))

  const fetchKey = async (forceRefresh: boolean): Promise<string> => {
    try {
      return await opts.getSigningKey(iss, forceRefresh)
    } catch (err) {
      throw new AuthError('BadJwtIss', `could not get the signing key of ${iss}`, { cause: err })
    }
  }
  // a key of the other curve counts as a mismatch, like a bad signature: the issuer may have rotated
  const check = (didKey: string): 'ok' | 'alg' | 'sig' => {
    const keyJwtAlg = keyAlg(didKey)
    if (keyJwtAlg === null || keyJwtAlg !== alg) return 'alg'
    try {
      return verifySignature(didKey, msg, sig) ? 'ok' : 'sig'
    } catch {
      return 'sig'
    }
  }

  const key = await fetchKey(false)
  let result = check(key)
  if (result !== 'ok') {
    const fresh = await fetchKey(true)
    if (fresh !== key) result = check(fresh)
  }
  if (result === 'alg') {
    throw new AuthError('BadJwtSignature', `jwt alg ${alg} does not match the issuer's signing key`)
  }
  if (result === 'sig') throw new AuthError('BadJwtSignature', 'jwt signature does not match jwt issuer')

  if (jti !== undefined && opts.replayCache) {
    const fresh = opts.replayCache.checkAndRemember(`${iss} ${jti}`, (exp + skew) * 1000)
    if (!fresh) throw new AuthError('JwtReplayed', 'jwt was already used (jti replayed)')
  }

  const out: ServiceJwtPayload = { iss, aud, exp }
  if (iat !== undefined) out.iat = iat as number
  if (lxm !== undefined) out.lxm = lxm
  if (jti !== undefined) out.jti = jti as string
  return out
}
