/**
 * Ingest: backfill of accounts seen for the first time, commit verification (bad signatures, wrong
 * op lists, chain breaks → resync), #sync, #identity, events from the wrong PDS, the persisted cursor
 * across restarts, and the admin backfill route.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Secp256k1Keypair } from '@atproto/crypto'
import { nextTid } from '@stratos/core/syntax'
import type { AppViewServer } from '../src/server.js'
import { FakeNetwork, agentFor, caughtUp, expectXrpcError, post, startAppView, testDb, waitForAsync, type TestDb } from './helpers.js'

const count = (net: FakeNetwork, what: string) => net.requests.filter((r) => r === what).length

describe('ingest', () => {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer

  beforeAll(async () => {
    net = await FakeNetwork.start()
    db = await testDb('sqlite')
    server = await startAppView(net, db)
  })

  afterAll(async () => {
    await server?.close()
    await net?.close()
    await db?.cleanup()
  })

  const authorFeed = async (did: string) => (await agentFor(server).app.bsky.feed.getAuthorFeed({ actor: did })).data.feed.map((f) => f.post.uri)

  it('an account seen for the first time is backfilled from getRepo', async () => {
    // an account whose history the AppView never saw
    const old = await net.createAccount('old.test', { silent: true })
    const rk1 = nextTid()
    const rk2 = nextTid()
    await net.write(old, [
      { action: 'create', collection: 'app.bsky.actor.profile', rkey: 'self', record: { $type: 'app.bsky.actor.profile', displayName: 'Old Timer' } },
      { action: 'create', collection: 'app.bsky.feed.post', rkey: rk1, record: { $type: 'app.bsky.feed.post', ...post('from long ago') } },
      { action: 'create', collection: 'app.bsky.feed.post', rkey: rk2, record: { $type: 'app.bsky.feed.post', ...post('also old') } },
    ], { emit: false })
    const before = count(net, 'getRepo')
    const live = await net.create(old, 'app.bsky.feed.post', post('and now live'))
    await caughtUp(server, net, live.seq)
    expect(count(net, 'getRepo')).toBe(before + 1)
    const feed = await authorFeed(old.did)
    expect(feed).toEqual([live.uri, `at://${old.did}/app.bsky.feed.post/${rk2}`, `at://${old.did}/app.bsky.feed.post/${rk1}`])
    const profile = await agentFor(server).app.bsky.actor.getProfile({ actor: 'old.test' })
    expect(profile.data.displayName).toBe('Old Timer')
    expect(profile.data.postsCount).toBe(3)
    // the next commit chains on the backfilled state: no new fetch
    const next = await net.create(old, 'app.bsky.feed.post', post('chained'))
    await caughtUp(server, net, next.seq)
    expect(count(net, 'getRepo')).toBe(before + 1)
    expect((await authorFeed(old.did))[0]).toBe(next.uri)
  })

  it('a commit with a bad signature is dropped; the next good one resyncs the repo', async () => {
    const acct = await net.createAccount('sig.test')
    const good = await net.create(acct, 'app.bsky.feed.post', post('signed right'))
    await caughtUp(server, net, good.seq)
    const dropped = server.ctx.ingester.stats.dropped
    const rogue = await Secp256k1Keypair.create()
    const rkey = nextTid()
    const seq = await net.write(acct, [{ action: 'create', collection: 'app.bsky.feed.post', rkey, record: { $type: 'app.bsky.feed.post', ...post('forged') } }], { keypair: rogue })
    await caughtUp(server, net, seq)
    expect(server.ctx.ingester.stats.dropped).toBe(dropped + 1)
    expect(await authorFeed(acct.did)).toEqual([good.uri])
    // the repo moves on with a good commit: its `since` does not chain to what the AppView holds
    const before = count(net, 'getRepo')
    const after = await net.create(acct, 'app.bsky.feed.post', post('signed right again'))
    await caughtUp(server, net, after.seq)
    expect(count(net, 'getRepo')).toBe(before + 1)
    expect(await authorFeed(acct.did)).toEqual([after.uri, `at://${acct.did}/app.bsky.feed.post/${rkey}`, good.uri])
  })

  it('a commit whose op list does not invert to prevData is dropped', async () => {
    const acct = await net.createAccount('ops.test')
    const a = await net.create(acct, 'app.bsky.feed.post', post('first'))
    await caughtUp(server, net, a.seq)
    const dropped = server.ctx.ingester.stats.dropped
    const seq = await net.write(
      acct,
      [
        { action: 'create', collection: 'app.bsky.feed.post', rkey: nextTid(), record: { $type: 'app.bsky.feed.post', ...post('one') } },
        { action: 'create', collection: 'app.bsky.feed.post', rkey: nextTid(), record: { $type: 'app.bsky.feed.post', ...post('two') } },
      ],
      { tamper: (evt) => (evt.ops as unknown[]).pop() },
    )
    await caughtUp(server, net, seq)
    expect(server.ctx.ingester.stats.dropped).toBe(dropped + 1)
    expect(await authorFeed(acct.did)).toEqual([a.uri])
  })

  it('#sync resyncs a repo that changed without commits', async () => {
    const acct = await net.createAccount('sync.test')
    const a = await net.create(acct, 'app.bsky.feed.post', post('kept'))
    const b = await net.create(acct, 'app.bsky.feed.post', post('removed quietly'))
    await caughtUp(server, net, b.seq)
    const rkey = nextTid()
    await net.write(acct, [
      { action: 'delete', collection: 'app.bsky.feed.post', rkey: b.uri.split('/').pop()! },
      { action: 'create', collection: 'app.bsky.feed.post', rkey, record: { $type: 'app.bsky.feed.post', ...post('added quietly') } },
    ], { emit: false })
    const seq = net.emitSync(acct)
    await caughtUp(server, net, seq)
    expect(await authorFeed(acct.did)).toEqual([`at://${acct.did}/app.bsky.feed.post/${rkey}`, a.uri])
    expect((await agentFor(server).app.bsky.actor.getProfile({ actor: acct.did })).data.postsCount).toBe(2)
    // the same #sync again changes nothing and fetches nothing
    const before = count(net, 'getRepo')
    await caughtUp(server, net, net.emitSync(acct))
    expect(count(net, 'getRepo')).toBe(before)
  })

  it('#identity re-verifies the handle', async () => {
    const acct = await net.createAccount('before.test')
    await caughtUp(server, net)
    expect((await agentFor(server).app.bsky.actor.getProfile({ actor: acct.did })).data.handle).toBe('before.test')
    acct.handle = 'after.test'
    await caughtUp(server, net, net.emitIdentity(acct))
    const p = await agentFor(server).app.bsky.actor.getProfile({ actor: 'after.test' })
    expect(p.data.did).toBe(acct.did)
    await expectXrpcError(agentFor(server).app.bsky.actor.getProfile({ actor: 'before.test' }), 'InvalidRequest')
    // a handle that does not resolve back to the DID is shown as handle.invalid
    const saved = net.resolveTxt
    net.resolveTxt = async (name) => {
      if (name === '_atproto.after.test') return [['did=did:plc:someoneelseentirely2345']]
      return saved(name)
    }
    try {
      await caughtUp(server, net, net.emitIdentity(acct))
      expect((await agentFor(server).app.bsky.actor.getProfile({ actor: acct.did })).data.handle).toBe('handle.invalid')
    } finally {
      net.resolveTxt = saved
    }
  })

  it('events for an account hosted elsewhere are dropped when following PDSes directly', async () => {
    const acct = await net.createAccount('moved.test')
    await caughtUp(server, net)
    acct.pdsUrl = 'https://elsewhere.example'
    await caughtUp(server, net, net.emitIdentity(acct))
    const dropped = server.ctx.ingester.stats.dropped
    const w = await net.create(acct, 'app.bsky.feed.post', post('not from here'))
    await caughtUp(server, net, w.seq)
    expect(server.ctx.ingester.stats.dropped).toBe(dropped + 1)
    expect(await authorFeed(acct.did)).toEqual([])
  })

  it('admin backfill needs the admin password', async () => {
    const acct = await net.createAccount('admin.test', { silent: true })
    await net.write(acct, [{ action: 'create', collection: 'app.bsky.feed.post', rkey: nextTid(), record: { $type: 'app.bsky.feed.post', ...post('quiet') } }], { emit: false })
    const url = `${server.url}/admin/backfill?did=${encodeURIComponent(acct.did)}`
    expect((await fetch(url, { method: 'POST' })).status).toBe(401)
    expect((await fetch(url, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('admin:wrong').toString('base64')}` } })).status).toBe(401)
    const ok = await fetch(url, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('admin:admin-secret').toString('base64')}` } })
    expect(ok.status).toBe(200)
    expect((await authorFeed(acct.did)).length).toBe(1)
  })

  it('follows a relay as well as PDSes', async () => {
    // the fake PDS's stream stands in for a relay (no "is this the account's PDS" check on a relay)
    const relayDb = await testDb('sqlite')
    const viaRelay = await startAppView(net, relayDb, { pdsUrls: [], relayUrl: net.pdsUrl })
    try {
      const acct = await net.createAccount('relayed.test')
      const p = await net.create(acct, 'app.bsky.feed.post', post('through the relay'))
      await caughtUp(viaRelay, net, p.seq)
      const feed = await agentFor(viaRelay).app.bsky.feed.getAuthorFeed({ actor: 'relayed.test' })
      expect(feed.data.feed.map((f) => f.post.uri)).toEqual([p.uri])
    } finally {
      await viaRelay.close()
      await relayDb.cleanup()
    }
  })

  it('the cursor survives a restart: events published while down are replayed', async () => {
    const acct = await net.createAccount('restart.test')
    await caughtUp(server, net)
    await server.close()
    const missed = await net.create(acct, 'app.bsky.feed.post', post('while the AppView was down'))
    server = await startAppView(net, db)
    await caughtUp(server, net, missed.seq)
    expect(await authorFeed(acct.did)).toEqual([missed.uri])
    await waitForAsync(async () => {
      const row = await server.ctx.db.selectFrom('ingest_cursor').select('seq').executeTakeFirst()
      return Number(row?.seq) >= missed.seq
    }, 5_000, 'the cursor to be saved')
  })
})
