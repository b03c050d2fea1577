import { createHash, createPrivateKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent, AtpAgent } from '@atproto/api'
import { JoseKey, NodeOAuthClient, type NodeSavedSession, type NodeSavedState } from '@atproto/oauth-client-node'
import type { Browser } from 'playwright-core'
import { startNetwork, type TestNetwork } from './_network.js'
import { CHROMIUM_PATH, hasChromium, launchChromium, loopbackClient, signInWithBrowser, startCallbackServer } from './_oauth.js'

/** Screenshots of the pages go here (git-ignored). */
const ARTIFACTS = path.resolve(import.meta.dirname, '../../../artifacts/oauth')

if (!hasChromium) {
  console.warn(`\n*** OAuth browser tests SKIPPED: no Chromium at ${CHROMIUM_PATH} (apt-get install chromium) ***\n`)
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url')

/** A DPoP proof (RFC 9449) built by hand, so each of its parts can be made wrong on purpose. */
function dpopProof(key: KeyObject, claims: { htm: string; htu: string; nonce?: string; ath?: string; jti?: string; iat?: number }): string {
  const jwk = key.export({ format: 'jwk' })
  const rsa = jwk.kty === 'RSA'
  const publicJwk = rsa ? { kty: jwk.kty, n: jwk.n, e: jwk.e } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }
  const alg = rsa ? 'RS256' : ({ 'P-256': 'ES256', 'P-384': 'ES384', secp256k1: 'ES256K' } as Record<string, string>)[jwk.crv!]
  const header = b64url(JSON.stringify({ typ: 'dpop+jwt', alg, jwk: publicJwk }))
  const payload = b64url(
    JSON.stringify({ jti: claims.jti ?? randomUUID(), iat: claims.iat ?? Math.floor(Date.now() / 1000), ...claims }),
  )
  const sig = sign('sha256', Buffer.from(`${header}.${payload}`), rsa ? key : { key, dsaEncoding: 'ieee-p1363' })
  return `${header}.${payload}.${b64url(sig)}`
}

const ath = (token: string) => b64url(createHash('sha256').update(token).digest())

describe('OAuth authorization server metadata', () => {
  let net: TestNetwork
  beforeAll(async () => {
    net = await startNetwork()
  })
  afterAll(async () => {
    await net?.close()
  })

  it('publishes the protected-resource and authorization-server documents', async () => {
    const pr = await (await fetch(`${net.url}/.well-known/oauth-protected-resource`)).json()
    expect(pr.resource).toBe(net.cfg.service.publicUrl)
    expect(pr.authorization_servers).toEqual([net.cfg.oauth.issuer])
    const res = await fetch(`${net.url}/.well-known/oauth-authorization-server`)
    expect(res.status).toBe(200)
    const as = await res.json()
    expect(as.issuer).toBe(net.cfg.oauth.issuer)
    expect(as.require_pushed_authorization_requests).toBe(true)
    expect(as.code_challenge_methods_supported).toEqual(['S256'])
    expect(as.dpop_signing_alg_values_supported).toContain('ES256')
    expect(as.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining(['none', 'private_key_jwt']))
    expect(as.scopes_supported).toEqual(expect.arrayContaining(['atproto', 'transition:generic']))
    expect(as.pushed_authorization_request_endpoint).toBe(`${net.cfg.oauth.issuer}/oauth/par`)
    // an authorization request that was not pushed first is refused
    const direct = await fetch(`${net.url}/oauth/authorize?client_id=${encodeURIComponent('http://localhost')}&response_type=code`, {
      redirect: 'manual',
    })
    expect(direct.status).toBeGreaterThanOrEqual(300)
    expect(direct.status).not.toBe(200)
  })
})

describe.skipIf(!hasChromium)('OAuth sign-in in Chromium with @atproto/oauth-client-node', () => {
  let net: TestNetwork
  let browser: Browser
  let callback: Awaited<ReturnType<typeof startCallbackServer>>
  let did: string

  beforeAll(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true })
    net = await startNetwork()
    const agent = new AtpAgent({ service: net.url })
    const res = await agent.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: 'alice-pass' })
    did = res.data.did
    browser = await launchChromium()
    callback = await startCallbackServer()
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await callback?.close()
    await net?.close()
  })

  async function authorize(scope: string, screenshot?: string) {
    const sessions = new Map<string, NodeSavedSession>()
    const client = loopbackClient({ redirectUri: callback.url, scope, plcUrl: net.plc.url, pdsUrl: net.url, sessions })
    const url = await client.authorize('alice.test', { scope })
    expect(url.origin).toBe(new URL(net.cfg.oauth.issuer).origin)
    const params = await signInWithBrowser(browser, url, { password: 'alice-pass', callback, consentScreenshot: screenshot })
    const { session } = await client.callback(params)
    return { client, session, sessions }
  }

  it('a public loopback client signs in through the pages, writes with a DPoP token, refreshes, and is refused once revoked', async () => {
    const { client, session, sessions } = await authorize('atproto transition:generic', path.join(ARTIFACTS, 'consent-loopback.png'))
    expect(session.did).toBe(did)
    expect(fs.statSync(path.join(ARTIFACTS, 'consent-loopback.png')).size).toBeGreaterThan(1000)
    const info = await session.getTokenInfo(false)
    expect(info.sub).toBe(did)
    expect(info.iss).toBe(net.cfg.oauth.issuer)
    expect(info.scope).toContain('transition:generic')

    const agent = new Agent(session)
    const created = await agent.com.atproto.repo.createRecord({
      repo: did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'posted with an OAuth token', createdAt: new Date().toISOString() },
    })
    expect(created.data.uri).toMatch(new RegExp(`^at://${did}/app.bsky.feed.post/`))
    const read = await new AtpAgent({ service: net.url }).com.atproto.repo.getRecord({
      repo: did,
      collection: 'app.bsky.feed.post',
      rkey: created.data.uri.split('/').pop()!,
    })
    expect((read.data.value as { text: string }).text).toBe('posted with an OAuth token')

    // the access token travels as `Authorization: DPoP`, never as a bearer token
    const saved = sessions.get(did)!
    expect(saved.tokenSet.token_type).toBe('DPoP')
    const bearer = await fetch(`${net.url}/xrpc/com.atproto.server.getSession`, {
      headers: { authorization: `Bearer ${saved.tokenSet.access_token}` },
    })
    expect(bearer.status).toBe(400)

    // refresh: a new token set, the old refresh token is spent
    const before = { ...saved.tokenSet }
    await session.getTokenInfo(true)
    const after = sessions.get(did)!.tokenSet
    expect(after.access_token).not.toBe(before.access_token)
    expect(after.refresh_token).not.toBe(before.refresh_token)
    const me = await agent.com.atproto.server.getSession()
    expect(me.data.did).toBe(did)

    // revocation: the session ends on the server; its tokens no longer work
    const kept = structuredClone(sessions.get(did)!)
    await session.signOut()
    sessions.set(did, kept)
    const restored = await client.restore(did, false)
    await expect(new Agent(restored).com.atproto.server.getSession()).rejects.toThrow()
    await expect(client.restore(did, true)).rejects.toThrow()
  }, 90_000)

  it('the sign-in page refuses a wrong password and an app password', async () => {
    const password = new AtpAgent({ service: net.url })
    await password.login({ identifier: 'alice.test', password: 'alice-pass' })
    const appPassword = (await password.com.atproto.server.createAppPassword({ name: 'not-for-oauth' })).data.password
    const client = loopbackClient({ redirectUri: callback.url, scope: 'atproto', plcUrl: net.plc.url, pdsUrl: net.url })
    const context = await browser.newContext()
    try {
      for (const wrong of ['not-the-password', appPassword]) {
        const page = await context.newPage()
        await page.goto((await client.authorize('alice.test', { scope: 'atproto' })).href)
        await page.locator('input[name=password]').fill(wrong)
        await page.locator('button[type=submit]').click()
        await expect.poll(async () => page.getByText(/wrong identifier or password/i).count(), { timeout: 15_000 }).toBeGreaterThan(0)
        expect(await page.getByRole('button', { name: 'Authorize' }).count()).toBe(0)
        await page.close()
      }
    } finally {
      await context.close()
    }
  }, 90_000)

  it('the account page lists the app, and revoking it there ends the app\'s session', async () => {
    const { client, session, sessions } = await authorize('atproto transition:generic')
    const agent = new Agent(session)
    expect((await agent.com.atproto.server.getSession()).data.did).toBe(did)
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      await page.goto(`${net.url}/account`)
      await page.locator('input[name=username]').fill('alice.test')
      await page.locator('input[name=password]').fill('alice-pass')
      await page.locator('button[type=submit]').click()
      await page.waitForURL(/\/account\/u\//, { timeout: 15_000 })
      await page.getByText('Apps', { exact: true }).first().click()
      await page.waitForURL(/\/apps$/, { timeout: 15_000 })
      await page.getByRole('button', { name: 'Details' }).first().click()
      await page.screenshot({ path: path.join(ARTIFACTS, 'account-apps.png'), fullPage: true })
      await page.getByRole('button', { name: 'Revoke access' }).click()
      await expect.poll(async () => page.getByRole('button', { name: 'Details' }).count(), { timeout: 15_000 }).toBe(0)
    } finally {
      await context.close()
    }
    // the access token and the refresh token the app holds are both refused now
    expect(sessions.get(did)).toBeDefined()
    await expect(client.restore(did, true)).rejects.toThrow()
    await expect(agent.com.atproto.server.getSession()).rejects.toThrow()
  }, 90_000)

  it('a token granted repo:app.bsky.feed.like?action=create can like and cannot post', async () => {
    const scope = 'atproto repo:app.bsky.feed.like?action=create'
    const { session } = await authorize(scope)
    const agent = new Agent(session)
    const password = new AtpAgent({ service: net.url })
    await password.login({ identifier: 'alice.test', password: 'alice-pass' })
    const post = (
      await password.com.atproto.repo.createRecord({
        repo: did,
        collection: 'app.bsky.feed.post',
        record: { $type: 'app.bsky.feed.post', text: 'like me', createdAt: new Date().toISOString() },
      })
    ).data
    const like = await agent.com.atproto.repo.createRecord({
      repo: did,
      collection: 'app.bsky.feed.like',
      record: { $type: 'app.bsky.feed.like', subject: { uri: post.uri, cid: post.cid }, createdAt: new Date().toISOString() },
    })
    expect(like.data.uri).toContain('app.bsky.feed.like')
    const refused = agent.com.atproto.repo.createRecord({
      repo: did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'not allowed', createdAt: new Date().toISOString() },
    })
    await expect(refused).rejects.toMatchObject({ status: 403, error: 'ScopeMissingError' })
    await expect(refused).rejects.toThrow('Missing required scope "repo:app.bsky.feed.post?action=create"')
    // nor may it delete the like it made
    await expect(
      agent.com.atproto.repo.deleteRecord({ repo: did, collection: 'app.bsky.feed.like', rkey: like.data.uri.split('/').pop()! }),
    ).rejects.toMatchObject({ status: 403, error: 'ScopeMissingError' })
    // account settings stay with the account password
    await expect(agent.com.atproto.server.listAppPasswords()).rejects.toMatchObject({ status: 400 })
  }, 90_000)

  it('refuses requests whose DPoP proof is missing, from another key, replayed, for another method or URL, or with a stale nonce', async () => {
    const { sessions } = await authorize('atproto transition:generic')
    const saved = sessions.get(did)!
    const token = saved.tokenSet.access_token
    const key = createPrivateKey({ key: saved.dpopJwk as any, format: 'jwk' })
    const htu = `${net.cfg.service.publicUrl}/xrpc/com.atproto.server.getSession`
    const call = (proof?: string, method = 'GET', url = `${net.url}/xrpc/com.atproto.server.getSession`) =>
      fetch(url, { method, headers: { authorization: `DPoP ${token}`, ...(proof ? { dpop: proof } : {}) } })

    // a stale (made-up) nonce: 401 use_dpop_nonce, with a fresh nonce to use
    const stale = await call(dpopProof(key, { htm: 'GET', htu, ath: ath(token), nonce: 'stale-nonce' }))
    expect(stale.status).toBe(401)
    expect(stale.headers.get('www-authenticate')).toMatch(/use_dpop_nonce/)
    const nonce = stale.headers.get('dpop-nonce')!
    expect(nonce).toBeTruthy()

    // the right proof works, once
    const good = dpopProof(key, { htm: 'GET', htu, ath: ath(token), nonce })
    const ok = await call(good)
    expect(ok.status).toBe(200)
    expect((await ok.json()).did).toBe(did)
    const replay = await call(good)
    expect(replay.status).toBe(401)
    expect((await replay.json()).error).toBe('invalid_dpop_proof')

    // no proof at all
    const missing = await call()
    expect(missing.status).toBe(401)
    expect((await missing.json()).error).toMatch(/invalid_dpop_proof|invalid_token/)

    // a proof from another key than the one the token is bound to
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    const wrongKey = await call(dpopProof(other, { htm: 'GET', htu, ath: ath(token), nonce }))
    expect(wrongKey.status).toBe(401)
    expect((await wrongKey.json()).error).toBe('invalid_token')

    // a proof made for another method, or another URL
    const wrongHtm = await call(dpopProof(key, { htm: 'POST', htu, ath: ath(token), nonce }))
    expect(wrongHtm.status).toBe(401)
    expect((await wrongHtm.json()).error).toBe('invalid_dpop_proof')
    const wrongHtu = await call(
      dpopProof(key, { htm: 'GET', htu: `${net.cfg.service.publicUrl}/xrpc/com.atproto.repo.listRecords`, ath: ath(token), nonce }),
    )
    expect(wrongHtu.status).toBe(401)
    expect((await wrongHtu.json()).error).toBe('invalid_dpop_proof')
  }, 90_000)
})

describe.skipIf(!hasChromium)('OAuth with a confidential client (private_key_jwt)', () => {
  const APP = 'https://app.example.com'
  let net: TestNetwork
  let browser: Browser
  let client: NodeOAuthClient
  let did: string
  const fetched: string[] = []
  const sessions = new Map<string, NodeSavedSession>()

  beforeAll(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true })
    const store = <T>() => {
      const m = new Map<string, T>()
      return { get: async (k: string) => m.get(k), set: async (k: string, v: T) => void m.set(k, v), del: async (k: string) => void m.delete(k) }
    }
    client = new NodeOAuthClient({
      clientMetadata: {
        client_id: `${APP}/client-metadata.json`,
        client_name: 'Stratos Test App',
        client_uri: APP,
        redirect_uris: [`${APP}/callback`],
        scope: 'atproto transition:generic',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        application_type: 'web',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        dpop_bound_access_tokens: true,
        jwks_uri: `${APP}/jwks.json`,
      },
      keyset: [await JoseKey.generate(['ES256'], 'app-key-1')],
      stateStore: store<NodeSavedState>(),
      sessionStore: store<NodeSavedSession>(),
      allowHttp: true,
      plcDirectoryUrl: '',
      handleResolver: 'http://127.0.0.1',
    })
    // the app's documents, as https://app.example.com would serve them (this test has no public DNS or TLS)
    const appFetch: typeof fetch = async (input, init) => {
      const url = new Request(input, init).url
      fetched.push(url)
      if (url === `${APP}/client-metadata.json`) return Response.json(client.clientMetadata)
      if (url === `${APP}/jwks.json`) return Response.json(client.jwks)
      return new Response('not found', { status: 404 })
    }
    net = await startNetwork({}, { oauthFetch: appFetch })
    const agent = new AtpAgent({ service: net.url })
    did = (await agent.createAccount({ handle: 'carol.test', email: 'carol@example.com', password: 'carol-pass' })).data.did
    // the client was built before the network's ports were known: point it at them now
    client = new NodeOAuthClient({
      clientMetadata: client.clientMetadata,
      keyset: client.keyset,
      stateStore: store<NodeSavedState>(),
      sessionStore: { get: async (k) => sessions.get(k), set: async (k, v) => void sessions.set(k, v), del: async (k) => void sessions.delete(k) },
      allowHttp: true,
      plcDirectoryUrl: net.plc.url,
      handleResolver: net.url,
    })
    browser = await launchChromium()
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await net?.close()
  })

  it('fetches the client metadata, authenticates the client with its key, and the session writes and revokes', async () => {
    const url = await client.authorize('carol.test')
    expect(fetched).toContain(`${APP}/client-metadata.json`)
    const params = await signInWithBrowser(browser, url, {
      password: 'carol-pass',
      interceptRedirect: `${APP}/callback`,
      consentScreenshot: path.join(ARTIFACTS, 'consent-confidential.png'),
    })
    const { session } = await client.callback(params)
    expect(session.did).toBe(did)
    expect(fetched).toContain(`${APP}/jwks.json`)
    const agent = new Agent(session)
    const post = await agent.post({ text: 'from a confidential client', createdAt: new Date().toISOString() })
    expect(post.uri).toContain(did)
    await session.getTokenInfo(true)
    await agent.com.atproto.server.getSession()

    expect(sessions.get(did)!.authMethod).toMatchObject({ method: 'private_key_jwt', kid: 'app-key-1' })

    // revoked at the token endpoint: the refresh token the client still holds is refused afterwards
    const kept = structuredClone(sessions.get(did)!)
    await session.signOut()
    sessions.set(did, kept)
    await expect(client.restore(did, true)).rejects.toThrow()
  }, 90_000)
})

describe.skipIf(!hasChromium)('a browser app on @atproto/oauth-client-browser', () => {
  let net: TestNetwork
  let browser: Browser
  let app: http.Server
  let appUrl: string
  let did: string

  beforeAll(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true })
    net = await startNetwork()
    const agent = new AtpAgent({ service: net.url })
    did = (await agent.createAccount({ handle: 'dave.test', email: 'dave@example.com', password: 'dave-pass' })).data.did
    const { build } = await import('esbuild')
    const bundle = await build({
      entryPoints: [path.join(import.meta.dirname, 'browser-app/app.ts')],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'chrome120',
      logLevel: 'silent',
    })
    const js = bundle.outputFiles[0]!.text
    const config = { pdsUrl: net.url, plcUrl: net.plc.url, scope: 'atproto transition:generic' }
    const html = `<!doctype html><html><head><meta charset="utf-8"><title>app</title></head><body><p id="status">loading</p>
<script>window.APP_CONFIG = ${JSON.stringify(config)}</script><script type="module" src="/app.js"></script></body></html>`
    app = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://127.0.0.1')
      if (u.pathname === '/') return void res.writeHead(200, { 'content-type': 'text/html' }).end(html)
      if (u.pathname === '/app.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(js)
      res.writeHead(404).end()
    })
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
    appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}/`
    browser = await launchChromium()
  }, 90_000)

  afterAll(async () => {
    await browser?.close()
    await new Promise((resolve) => app?.close(resolve))
    await net?.close()
  })

  it('signs in through the pages in Chromium and posts', async () => {
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      await page.goto(`${appUrl}?handle=dave.test`)
      await page.waitForURL((u) => u.href.startsWith(`${net.cfg.oauth.issuer}/oauth/authorize`), { timeout: 20_000 })
      await page.locator('input[name=password]').fill('dave-pass')
      await page.locator('button[type=submit]').click()
      const authorize = page.getByRole('button', { name: 'Authorize' })
      await authorize.waitFor({ timeout: 15_000 })
      await page.screenshot({ path: path.join(ARTIFACTS, 'consent-browser-app.png'), fullPage: true })
      await authorize.click()
      await page.waitForURL((u) => u.href.startsWith(appUrl), { timeout: 20_000 })
      const status = page.locator('#status')
      await expect.poll(async () => status.textContent(), { timeout: 20_000 }).toMatch(/^(posted|error)/)
      const text = (await status.textContent())!
      expect(text).toMatch(new RegExp(`^posted at://${did}/app.bsky.feed.post/`))
      const rkey = text.split('/').pop()!
      const rec = await new AtpAgent({ service: net.url }).com.atproto.repo.getRecord({ repo: did, collection: 'app.bsky.feed.post', rkey })
      expect((rec.data.value as { text: string }).text).toBe('posted from a browser app')
      expect(fs.statSync(path.join(ARTIFACTS, 'consent-browser-app.png')).size).toBeGreaterThan(1000)
    } finally {
      await context.close()
    }
  }, 90_000)
})
