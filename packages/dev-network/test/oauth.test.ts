/**
 * OAuth against the whole dev network: an app on @atproto/oauth-client-node signs in through the PDS's pages
 * in headless Chromium, writes with its DPoP token and reads its timeline from the AppView through the PDS's
 * proxy (service auth made out by the PDS), within the rpc permissions it was granted.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Agent, AtpAgent } from '@atproto/api'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePortBase, startDevNetwork, waitForHealth, type DevNetwork } from '@stratos/dev-network'
import {
  CHROMIUM_PATH,
  hasChromium,
  launchChromium,
  loopbackClient,
  signInWithBrowser,
  startCallbackServer,
} from '../../../services/pds/test/_oauth.js'

if (!hasChromium) {
  console.warn(`\n*** OAuth dev-network browser tests SKIPPED: no Chromium at ${CHROMIUM_PATH} (apt-get install chromium) ***\n`)
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

describe.skipIf(!hasChromium)('OAuth on the dev network', () => {
  let dir: string
  let network: DevNetwork
  let browser: Browser
  let callback: Awaited<ReturnType<typeof startCallbackServer>>
  let bob: AtpAgent
  let aliceDid: string

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-oauth-'))
    network = await startDevNetwork({ dataDir: dir, portBase: await freePortBase(), logLevel: 'silent' })
    await waitForHealth(network.urls)
    const alice = new AtpAgent({ service: network.urls.pds })
    await alice.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: 'alice-password' })
    aliceDid = alice.session!.did
    bob = new AtpAgent({ service: network.urls.pds })
    await bob.createAccount({ handle: 'bob.test', email: 'bob@example.com', password: 'bob-password' })
    browser = await launchChromium()
    callback = await startCallbackServer()
  }, 90_000)

  afterAll(async () => {
    await browser?.close()
    await callback?.close()
    await network?.close()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  async function signIn(scope: string) {
    const client = loopbackClient({ redirectUri: callback.url, scope, plcUrl: network.urls.plc, pdsUrl: network.urls.pds })
    const url = await client.authorize('alice.test', { scope })
    const params = await signInWithBrowser(browser, url, { password: 'alice-password', callback })
    const { session } = await client.callback(params)
    expect(session.did).toBe(aliceDid)
    return new Agent(session)
  }

  it('posts, follows and reads the timeline from the AppView through the PDS proxy', async () => {
    const alice = await signIn('atproto transition:generic')
    const mine = await alice.post({ text: 'hello from an OAuth app', createdAt: new Date().toISOString() })
    await alice.follow(bob.session!.did)
    const theirs = await bob.post({ text: 'bob posts for alice', createdAt: new Date().toISOString() })

    // app.bsky.* go to the AppView: the PDS checks the DPoP token and signs a service-auth token for it
    const feed = await until('bob\'s post on alice\'s timeline', async () => {
      const { data } = await alice.getTimeline({ limit: 20 })
      return data.feed.some((f) => f.post.uri === theirs.uri) && data.feed
    })
    expect(feed.find((f) => f.post.uri === theirs.uri)!.post.author.handle).toBe('bob.test')
    const own = await until('alice\'s post in her author feed', async () => {
      const { data } = await alice.getAuthorFeed({ actor: aliceDid })
      return data.feed.find((f) => f.post.uri === mine.uri)
    })
    expect((own.post.record as { text: string }).text).toBe('hello from an OAuth app')
    const prefs = await alice.app.bsky.actor.getPreferences()
    expect(Array.isArray(prefs.data.preferences)).toBe(true)
  }, 120_000)

  it('limits proxied calls to the rpc permissions granted', async () => {
    // aud=* (any service): the dev AppView's did:web has a port, which the scope syntax cannot spell
    const alice = await signIn('atproto rpc:app.bsky.actor.getProfile?aud=*')
    const profile = await until('alice\'s profile on the AppView', async () => (await alice.getProfile({ actor: aliceDid })).data)
    expect(profile.handle).toBe('alice.test')
    await expect(alice.getTimeline({ limit: 5 })).rejects.toMatchObject({ status: 403, error: 'ScopeMissingError' })
    await expect(alice.app.bsky.actor.getPreferences()).rejects.toMatchObject({ status: 403, error: 'ScopeMissingError' })
    // and no repo writes either
    await expect(alice.post({ text: 'not allowed', createdAt: new Date().toISOString() })).rejects.toMatchObject({
      status: 403,
      error: 'ScopeMissingError',
    })
  }, 120_000)
})
