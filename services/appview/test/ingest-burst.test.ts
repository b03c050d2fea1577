/**
 * A brand-new account that writes a burst of events while its identity is still being resolved (a slow
 * or failing DID directory): every event is kept and indexed in order; above the buffering bounds, or
 * when the directory stays down, the account is resynced from getRepo without waiting for another
 * commit of it. On SQLite, and on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AppViewServer } from '../src/server.js'
import { FakeNetwork, PG_URL, agentFor, caughtUp, holdDirectory, post, postCount, startAppView, testDb, waitForAsync, type Account, type TestDb } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

async function burst(net: FakeNetwork, acct: Account, n: number): Promise<string[]> {
  const uris: string[] = []
  for (let i = 0; i < n; i++) uris.push((await net.create(acct, 'app.bsky.feed.post', post(`burst ${i}`))).uri)
  return uris
}

describe.each(dialects)('ingest: bursts of brand-new accounts (%s)', (dialect) => {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer

  beforeAll(async () => {
    net = await FakeNetwork.start()
    db = await testDb(dialect)
    // small bounds (the defaults are 1,000 per account and 10,000 overall) and quick retries
    server = await startAppView(net, db, {}, { ingest: { maxPerAccount: 400, maxBuffered: 800, identityRetryDelaysMs: [20, 50, 100], resyncRetryDelaysMs: [300, 600, 1200, 2400] } })
  })

  afterAll(async () => {
    await server?.close()
    await net?.close()
    await db?.cleanup()
  })

  it('all 300 events of a new account written while its DID document is held back are indexed, in order, without a resync', async () => {
    let did: string | undefined
    const hold = holdDirectory(net, () => did)
    const resyncsBefore = server.ctx.ingester.stats.resyncs
    // #identity, #account and the first commit (the DID is set before the AppView can ask for it)
    const acct = await net.createAccount('burst.test')
    did = acct.did
    const uris = await burst(net, acct, 300)
    // the account's events wait behind its identity; the stream goes on with others
    const other = await net.createAccount('other.test')
    const otherPost = await net.create(other, 'app.bsky.feed.post', post('not held up'))
    await waitForAsync(async () => (await postCount(server, other.did)) === 1, 15_000, 'the other account to be indexed')
    expect(hold.held()).toBeGreaterThan(0)
    expect(await postCount(server, acct.did)).toBe(0)
    hold.release()
    await caughtUp(server, net)
    expect(await postCount(server, acct.did)).toBe(300)
    const feed = await agentFor(server).app.bsky.feed.getAuthorFeed({ actor: acct.did, limit: 100 })
    expect(feed.data.feed.map((f) => f.post.uri)).toEqual(uris.slice(-100).reverse())
    const profile = await agentFor(server).app.bsky.actor.getProfile({ actor: acct.did })
    expect(profile.data.postsCount).toBe(300)
    expect(server.ctx.ingester.stats.resyncs).toBe(resyncsBefore)
    expect(otherPost.uri).toBeTruthy()
    net.plcHook = null
  })

  it('a DID directory that fails a few times for a new account: retried, every event indexed', async () => {
    let did: string | undefined
    let failures = 0
    net.plcHook = async (d) => {
      if (d === did && failures < 2) {
        failures++
        return false
      }
      return true
    }
    const retriesBefore = server.ctx.ingester.stats.identityRetries
    // only the first commit: its check is the first to ask the directory
    const acct = await net.createAccount('flaky.test', { commitOnly: true })
    did = acct.did
    await burst(net, acct, 50)
    await caughtUp(server, net)
    await waitForAsync(async () => (await postCount(server, acct.did)) === 50, 15_000, '50 posts')
    expect(failures).toBe(2)
    expect(server.ctx.ingester.stats.identityRetries).toBeGreaterThan(retriesBefore)
    net.plcHook = null
  })

  it('more events than the per-account bound: the overflow is dropped and the account resynced from getRepo, with no further commit', async () => {
    let did: string | undefined
    const hold = holdDirectory(net, () => did)
    const before = { ...server.ctx.ingester.stats }
    const acct = await net.createAccount('overflow.test')
    did = acct.did
    await burst(net, acct, 600)
    await waitForAsync(async () => server.ctx.ingester.stats.overflowed > before.overflowed, 15_000, 'an overflow')
    hold.release()
    await waitForAsync(async () => (await postCount(server, acct.did)) === 600, 20_000, '600 posts')
    const stats = server.ctx.ingester.stats
    expect(stats.overflowed - before.overflowed).toBeGreaterThan(0)
    expect(stats.fallbackResyncs - before.fallbackResyncs).toBe(1)
    const profile = await agentFor(server).app.bsky.actor.getProfile({ actor: acct.did })
    expect(profile.data.postsCount).toBe(600)
    // the next commit chains on the resynced state
    const next = await net.create(acct, 'app.bsky.feed.post', post('after the resync'))
    await caughtUp(server, net, next.seq)
    expect(await postCount(server, acct.did)).toBe(601)
    net.plcHook = null
  })

  it('a DID directory down for longer than the retries: the account is resynced once it answers again', async () => {
    let did: string | undefined
    let down = true
    net.plcHook = async (d) => !(d === did && down)
    const before = { ...server.ctx.ingester.stats }
    const acct = await net.createAccount('down.test')
    did = acct.did
    await burst(net, acct, 20)
    await caughtUp(server, net)
    expect(await postCount(server, acct.did)).toBe(0)
    expect(server.ctx.ingester.stats.fallbackResyncs - before.fallbackResyncs).toBe(1)
    // its first resync fails too (the directory is still down); the retry after it is what brings the posts
    await waitForAsync(async () => server.ctx.ingester.stats.resyncFailures > before.resyncFailures, 15_000, 'a failed resync')
    expect(await postCount(server, acct.did)).toBe(0)
    down = false
    await waitForAsync(async () => (await postCount(server, acct.did)) === 20, 15_000, '20 posts after the directory is back')
    net.plcHook = null
  })
})
