/**
 * The bound on events buffered over all accounts (maxBuffered): a buffer that is full but draining (its
 * accounts' earlier work finishes: a burst, a catch-up) holds the stream, so nothing is dropped and no
 * account is resynced; a buffer that stops draining for bufferStallMs (an account stuck on its DID
 * document) no longer holds it: the events over the bound are dropped and their accounts resynced, as
 * before. On SQLite, and on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { AppViewServer } from '../src/server.js'
import { FakeNetwork, PG_URL, caughtUp, holdDirectory, post, postCount, startAppView, testDb, waitForAsync, type TestDb } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

describe.each(dialects)('ingest: the buffer bound over all accounts (%s)', (dialect) => {
  let net: FakeNetwork | undefined
  let db: TestDb | undefined
  let server: AppViewServer | undefined

  afterEach(async () => {
    if (net) net.plcHook = null
    await server?.close()
    await net?.close()
    await db?.cleanup()
    server = undefined
    net = undefined
    db = undefined
  })

  it('a full buffer that drains holds the stream: 100 events over a bound of 40, none dropped, no resync', async () => {
    net = await FakeNetwork.start()
    db = await testDb(dialect)
    server = await startAppView(net, db, {}, { ingest: { maxBuffered: 40, maxPerAccount: 1000, bufferStallMs: 60_000 } })
    let did: string | undefined
    const hold = holdDirectory(net, () => did)
    const acct = await net.createAccount('drain.test')
    did = acct.did
    for (let i = 0; i < 100; i++) await net.create(acct, 'app.bsky.feed.post', post(`drain ${i}`))
    // the account's events wait behind its DID document, up to the bound; the stream waits there
    const ingester = server.ctx.ingester
    await waitForAsync(async () => ingester.eventsBuffered >= 40 && hold.held() > 0, 15_000, 'a full buffer')
    await new Promise((r) => setTimeout(r, 300))
    expect(ingester.eventsBuffered).toBe(40)
    hold.release()
    await caughtUp(server, net)
    expect(await postCount(server, acct.did)).toBe(100)
    expect(ingester.stats.overflowed).toBe(0)
    expect(ingester.stats.dropped).toBe(0)
    expect(ingester.stats.fallbackResyncs).toBe(0)
  })

  it('a full buffer that does not drain for bufferStallMs: events over the bound are dropped, the stream goes on, the account is resynced', async () => {
    net = await FakeNetwork.start()
    db = await testDb(dialect)
    server = await startAppView(net, db, {}, { ingest: { maxBuffered: 40, maxPerAccount: 1000, bufferStallMs: 200, identityRetryDelaysMs: [20], resyncRetryDelaysMs: [300, 600, 1200, 2400] } })
    let did: string | undefined
    const hold = holdDirectory(net, () => did)
    const acct = await net.createAccount('stuck.test')
    did = acct.did
    for (let i = 0; i < 100; i++) await net.create(acct, 'app.bsky.feed.post', post(`stuck ${i}`))
    const ingester = server.ctx.ingester
    await waitForAsync(async () => ingester.stats.overflowed > 0, 15_000, 'an overflow')
    // the stream is not held by the stuck account: another account's post is indexed meanwhile, without a
    // wait of bufferStallMs per event over the bound (~60 of them here: 12 s)
    const t0 = Date.now()
    const other = await net.createAccount('other.test', { commitOnly: true })
    await net.create(other, 'app.bsky.feed.post', post('not held up'))
    await waitForAsync(async () => (await postCount(server!, other.did)) === 1, 15_000, 'the other account to be indexed')
    expect(Date.now() - t0).toBeLessThan(6000)
    expect(await postCount(server, acct.did)).toBe(0)
    hold.release()
    await waitForAsync(async () => (await postCount(server!, acct.did)) === 100, 20_000, '100 posts')
    expect(ingester.stats.fallbackResyncs).toBeGreaterThan(0)
  })
})
