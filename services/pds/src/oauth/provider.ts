import { createECDH, createHash } from 'node:crypto'
import proxyAddr from '@fastify/proxy-addr'
import type { FastifyInstance } from 'fastify'
import { AccessTokenMode, JoseKey, OAuthProvider, type Customization } from '@atproto/oauth-provider/provider'
import { oauthMiddleware } from '@atproto/oauth-provider/middleware'
import { safeFetch } from '@stratos/core/identity'
import type { PdsConfig } from '../config.js'
import type { AppContext } from '../context.js'
import { OAuthStore } from './store.js'

/** Paths the authorization server answers (metadata, PAR, token, revoke, the sign-in/consent/account pages). */
const OAUTH_PATHS = /^\/(?:\.well-known\/oauth-authorization-server|\.well-known\/change-password|oauth(?:\/|$)|account(?:\/|$|\?)|@atproto\/oauth-provider\/)/

/** Client metadata documents are small; a larger body is refused. */
const CLIENT_METADATA_MAX_BYTES = 64 * 1024

/**
 * A `fetch` for the authorization server (client metadata documents, client JWKS, permission-set
 * lexicons) on core's safe fetch: deadline, size limit, no private addresses outside dev mode.
 */
export function oauthFetch(allowPrivateAddresses: boolean): typeof globalThis.fetch {
  return async (input, init) => {
    const req = new Request(input, init)
    const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : new Uint8Array(await req.arrayBuffer())
    const res = await safeFetch(req.url, {
      method: req.method,
      headers: Object.fromEntries(req.headers),
      body,
      timeoutMs: 10_000,
      maxBytes: CLIENT_METADATA_MAX_BYTES,
      maxRedirects: 0,
      allowPrivateAddresses,
      signal: req.signal,
    }).catch((err: Error) => {
      throw new TypeError(`fetch failed: ${err.message}`, { cause: err })
    })
    const out = new Response(res.status === 204 || res.status === 304 ? null : (res.body as unknown as ConstructorParameters<typeof Response>[0]), {
      status: res.status,
      headers: res.headers,
    })
    Object.defineProperty(out, 'url', { value: res.url })
    return out
  }
}

/** The authorization server's signing key: PDS_OAUTH_SIGNING_KEY_P256_PRIVATE_KEY_HEX, else HS256 on the JWT secret. */
async function signingKey(cfg: PdsConfig): Promise<JoseKey> {
  const hex = cfg.oauth.signingKeyHex
  if (!hex) return JoseKey.fromKeyLike(Buffer.from(cfg.secrets.jwtSecret, 'utf8'), 'pds-oauth-hs256', 'HS256')
  const ecdh = createECDH('prime256v1')
  ecdh.setPrivateKey(Buffer.from(hex, 'hex'))
  const pub = ecdh.getPublicKey()
  return JoseKey.fromJWK(
    {
      kty: 'EC',
      crv: 'P-256',
      alg: 'ES256',
      use: 'sig',
      d: Buffer.from(hex, 'hex').toString('base64url'),
      x: pub.subarray(1, 33).toString('base64url'),
      y: pub.subarray(33, 65).toString('base64url'),
    },
    'pds-oauth-es256',
  )
}

function customization(cfg: PdsConfig): Customization {
  const links: NonNullable<NonNullable<Customization['branding']>['links']> = []
  if (cfg.service.termsOfServiceUrl) links.push({ title: 'Terms of Service', href: cfg.service.termsOfServiceUrl, rel: 'terms-of-service' })
  if (cfg.service.privacyPolicyUrl) links.push({ title: 'Privacy Policy', href: cfg.service.privacyPolicyUrl, rel: 'privacy-policy' })
  if (cfg.oauth.supportUrl) links.push({ title: 'Support', href: cfg.oauth.supportUrl, rel: 'help' })
  return {
    branding: {
      name: cfg.service.serviceName,
      ...(cfg.oauth.logoUrl ? { logo: cfg.oauth.logoUrl as `https://${string}` } : {}),
      ...(cfg.oauth.primaryColor ? { colors: { primary: cfg.oauth.primaryColor as `rgb(${number}, ${number}, ${number})` } } : {}),
      links,
    },
  } as Customization
}

export async function createOAuthProvider(ctx: AppContext, fetch?: typeof globalThis.fetch): Promise<OAuthProvider> {
  const { cfg } = ctx
  const store = new OAuthStore(ctx)
  const trusted = new Set(cfg.oauth.trustedClients)
  return new OAuthProvider({
    issuer: cfg.oauth.issuer,
    keyset: [await signingKey(cfg)],
    // the resource server is this process: tokens are looked up, so a revoked session stops at once
    accessTokenMode: AccessTokenMode.stateful,
    store,
    safeFetch: fetch ?? oauthFetch(cfg.service.devMode),
    // loopback client ids (http://localhost?...) are for development only
    ...(cfg.service.devMode ? {} : { loopbackMetadata: null }),
    // nonces derive from the JWT secret, so they stay valid across a restart
    dpopSecret: createHash('sha256').update(`dpop-nonce:${cfg.secrets.jwtSecret}`).digest(),
    cookie: { secure: cfg.oauth.issuer.startsWith('https:') },
    // the device's address from X-Forwarded-For only behind the proxies PDS_TRUSTED_PROXIES names
    trustProxy: proxyAddr.compile(cfg.network?.trustedProxies ?? []),
    ...customization(cfg),
    getClientInfo: (clientId: string) => (trusted.has(clientId) ? { isTrusted: true } : undefined),
  } as ConstructorParameters<typeof OAuthProvider>[0])
}

/** Hands the authorization server's paths to its middleware, and serves the protected-resource metadata. */
export function registerOAuthRoutes(app: FastifyInstance, ctx: AppContext, provider: OAuthProvider): void {
  const handler = oauthMiddleware(provider, {
    onError: (_req, _res, err, msg) => ctx.logger.warn({ err }, `oauth: ${msg}`),
  })
  app.addHook('onRequest', (req, reply, done) => {
    if (!OAUTH_PATHS.test(req.url)) {
      // a resource request with a DPoP proof gets a fresh server nonce for its next proof
      if (req.headers.dpop) {
        const nonce = provider.nextDpopNonce()
        if (nonce) reply.header('DPoP-Nonce', nonce)
      }
      return done()
    }
    reply.hijack()
    handler(req.raw, reply.raw)
  })
  app.get('/.well-known/oauth-protected-resource', async (_req, reply) => {
    reply.header('access-control-allow-origin', '*')
    reply.header('cache-control', 'public, max-age=300')
    return {
      resource: ctx.cfg.service.publicUrl,
      authorization_servers: [ctx.cfg.oauth.issuer],
      scopes_supported: [],
      bearer_methods_supported: ['header'],
      resource_documentation: 'https://atproto.com',
    }
  })
}
