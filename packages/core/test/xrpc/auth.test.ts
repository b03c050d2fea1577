import { AtpAgent, XRPCError as ClientXRPCError } from '@atproto/api'
import { Secp256k1Keypair } from '@atproto/crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { JtiReplayCache, createServiceJwt } from '@stratos/core/auth'
import {
  AuthRequiredError,
  ForbiddenError,
  adminBasicAuth,
  anyOf,
  bearerAuth,
  createXrpcServer,
  nsidFromUrl,
  optional,
  parseAuthorization,
  serviceJwtAuth,
  type AuthContext,
  type XrpcServer,
} from '@stratos/core/xrpc'

const ctx = (authorization?: string, url = '/xrpc/app.bsky.feed.getTimeline'): AuthContext => ({
  req: { headers: authorization ? { authorization } : {}, url },
})
const basic = (user: string, pw: string) => 'Basic ' + Buffer.from(`${user}:${pw}`).toString('base64')

async function rejection(p: Promise<unknown>): Promise<AuthRequiredError> {
  try {
    await p
  } catch (err) {
    return err as AuthRequiredError
  }
  throw new Error('expected a rejection')
}

describe('auth verifiers', () => {
  it('parses Authorization headers by scheme', () => {
    expect(parseAuthorization(ctx('Bearer abc').req, 'Bearer')).toBe('abc')
    expect(parseAuthorization(ctx('bearer abc').req, 'Bearer')).toBe('abc')
    expect(parseAuthorization(ctx('Basic abc').req, 'Bearer')).toBeNull()
    expect(parseAuthorization(ctx('Bearer').req, 'Bearer')).toBeNull()
    expect(parseAuthorization(ctx().req, 'Bearer')).toBeNull()
    expect(nsidFromUrl('/xrpc/com.atproto.repo.getRecord?repo=x')).toBe('com.atproto.repo.getRecord')
    expect(nsidFromUrl('/metrics')).toBeUndefined()
  })

  it('bearerAuth: missing → 401 marked missing; verifier XRPC errors pass through; others → InvalidToken', async () => {
    const verify = bearerAuth(async (token) => {
      if (token === 'ok') return { did: 'did:example:alice' }
      if (token === 'taken-down') throw new ForbiddenError('Account is taken down', 'AccountTakedown')
      throw new Error('jwt malformed')
    })
    expect(await verify(ctx('Bearer ok'))).toEqual({ credentials: { did: 'did:example:alice' }, artifacts: 'ok' })
    const none = await rejection(verify(ctx()))
    expect(none).toBeInstanceOf(AuthRequiredError)
    expect(none.missing).toBe(true)
    const forbidden = await rejection(verify(ctx('Bearer taken-down')))
    expect(forbidden.status).toBe(403)
    expect(forbidden.error).toBe('AccountTakedown')
    const bad = await rejection(verify(ctx('Bearer garbage')))
    expect(bad.status).toBe(401)
    expect(bad.error).toBe('InvalidToken')
    expect(bad.missing).toBe(false)
    expect(bad.headers['WWW-Authenticate']).toBe('Bearer error="invalid_token"')
  })

  it('adminBasicAuth: only admin:<password>', async () => {
    const verify = adminBasicAuth('s3cret')
    expect(await verify(ctx(basic('admin', 's3cret')))).toEqual({ credentials: { type: 'admin' } })
    for (const header of [basic('admin', 's3cre'), basic('admin', 's3cret!'), basic('Admin', 's3cret'), 'Basic !!!', 'Basic ' + Buffer.from('admins3cret').toString('base64')]) {
      const err = await rejection(verify(ctx(header)))
      expect(err.status, header).toBe(401)
      expect(err.missing).toBe(false)
    }
    expect((await rejection(verify(ctx('Bearer s3cret')))).missing).toBe(true)
    expect(() => adminBasicAuth('')).toThrow()
  })

  it('anyOf: first success wins; a bad credential beats a missing one; all missing → one 401 with every challenge', async () => {
    const verify = anyOf(adminBasicAuth('pw'), bearerAuth(async (t) => (t === 'ok' ? { did: 'did:example:bob' } : Promise.reject(new Error('no')))))
    expect((await verify(ctx(basic('admin', 'pw')))).credentials).toEqual({ type: 'admin' })
    expect((await verify(ctx('Bearer ok'))).credentials).toEqual({ did: 'did:example:bob' })
    const badBearer = await rejection(verify(ctx('Bearer nope')))
    expect(badBearer.error).toBe('InvalidToken')
    const badBasic = await rejection(verify(ctx(basic('admin', 'wrong'))))
    expect(badBasic.message).toBe('Invalid admin credentials')
    const none = await rejection(verify(ctx()))
    expect(none.status).toBe(401)
    expect(none.headers['WWW-Authenticate']).toBe('Basic realm="admin", charset="UTF-8", Bearer')
  })

  it('optional: no header → null credentials; a bad header still fails', async () => {
    const verify = optional(bearerAuth(async (t) => (t === 'ok' ? 'user' : Promise.reject(new Error('bad')))))
    expect(await verify(ctx())).toEqual({ credentials: null })
    expect((await verify(ctx('Bearer ok'))).credentials).toBe('user')
    expect((await rejection(verify(ctx('Bearer x')))).status).toBe(401)
  })
})

describe('serviceJwtAuth on a server, called with service JWTs', () => {
  const SERVICE = 'did:web:appview.test#bsky_appview'
  const ISS = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
  let server: XrpcServer
  let url: string
  let keypair: Secp256k1Keypair
  let otherKey: Secp256k1Keypair
  let keyLookups: string[]

  beforeAll(async () => {
    keypair = await Secp256k1Keypair.create()
    otherKey = await Secp256k1Keypair.create()
    keyLookups = []
    server = createXrpcServer({ validateOutput: true })
    server.method('app.bsky.feed.getAuthorFeed', {
      auth: serviceJwtAuth({
        audience: SERVICE,
        replayCache: new JtiReplayCache(),
        getSigningKey: async (iss, forceRefresh) => {
          keyLookups.push(`${iss}:${forceRefresh}`)
          if (iss !== ISS) throw new Error('unknown DID')
          return keypair.did()
        },
      }),
      handler: ({ auth }) => ({ encoding: 'application/json', body: { feed: [], cursor: (auth.credentials as { iss: string }).iss } }),
    })
    url = await server.listen()
  })
  afterAll(async () => {
    await server?.close()
  })

  const call = async (token: string) => {
    const agent = new AtpAgent({ service: url })
    agent.setHeader('authorization', `Bearer ${token}`)
    return agent.app.bsky.feed.getAuthorFeed({ actor: 'alice.test' })
  }
  const fails = async (token: string): Promise<ClientXRPCError> => {
    try {
      await call(token)
    } catch (err) {
      expect(err).toBeInstanceOf(ClientXRPCError)
      return err as ClientXRPCError
    }
    throw new Error('expected a 401')
  }

  it('accepts a token for this audience and method, and refuses its replay', async () => {
    const token = await createServiceJwt({ iss: ISS, aud: SERVICE, lxm: 'app.bsky.feed.getAuthorFeed', keypair })
    expect((await call(token)).data.cursor).toBe(ISS)
    const replay = await fails(token)
    expect(replay.status).toBe(401)
    expect(replay.error).toBe('JwtReplayed')
  })

  it('refuses a token for another method, another audience, or signed by another key', async () => {
    const wrongLxm = await createServiceJwt({ iss: ISS, aud: SERVICE, lxm: 'app.bsky.feed.getTimeline', keypair })
    expect((await fails(wrongLxm)).error).toBe('BadJwtLexiconMethod')
    const wrongAud = await createServiceJwt({ iss: ISS, aud: 'did:web:other.test#bsky_appview', lxm: 'app.bsky.feed.getAuthorFeed', keypair })
    expect((await fails(wrongAud)).error).toBe('BadJwtAudience')
    keyLookups.length = 0
    const forged = await createServiceJwt({ iss: ISS, aud: SERVICE, lxm: 'app.bsky.feed.getAuthorFeed', keypair: otherKey })
    const err = await fails(forged)
    expect(err.status).toBe(401)
    expect(err.error).toBe('BadJwtSignature')
    expect(keyLookups).toContain(`${ISS}:true`) // the key was refreshed once before refusing
  })

  it('refuses an expired token and one that is not a JWT', async () => {
    const iat = Math.floor(Date.now() / 1000) - 600
    const expired = await createServiceJwt({ iss: ISS, aud: SERVICE, lxm: 'app.bsky.feed.getAuthorFeed', keypair, iat, exp: iat + 60 })
    expect((await fails(expired)).error).toBe('JwtExpired')
    const junk = await fails('not-a-jwt')
    expect(junk.status).toBe(401)
    expect(junk.error).toBe('BadJwt')
  })

  it('without a token: 401 AuthenticationRequired', async () => {
    const res = await fetch(`${url}/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.test`)
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe('Bearer')
    expect((await res.json()).error).toBe('AuthenticationRequired')
  })
})
