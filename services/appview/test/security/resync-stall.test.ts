/**
 * Issue 14, item 1: an attacker's PDS cannot stall the AppView's ingest. New DIDs hosted on a PDS that
 * trickles its getRepo answer one byte at a time make the AppView fetch those repos; the fetches run off
 * the event path (per-host limits, a per-host queue budget, a byte-rate floor), so a normal post from an
 * honest PDS is indexed within 2 s during the attack. Also: the live events of an account whose repo is
 * being fetched are buffered and applied after the fetched repo (those newer than its rev).
 */
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nextTid } from '@stratos/core/syntax'
import type { AppViewServer } from '../../src/server.js'
import { FakeNetwork, agentFor, caughtUp, post, startAppView, testDb, waitForAsync, type Account, type TestDb } from '../helpers.js'

/** A PDS that answers getRepo with a 200 and then one byte every `everyMs`, forever. */
async function tricklingPds(everyMs: number): Promise<{ url: string; app: FastifyInstance; hits: () => number }> {
  const app = Fastify({ forceCloseConnections: true })
  let hits = 0
  app.get('/xrpc/com.atproto.sync.getRepo', (_req, reply) => {
    hits++
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, { 'content-type': 'application/vnd.ipld.car' })
    const timer = setInterval(() => res.write(Buffer.from([0x3a])), everyMs)
    res.on('close', () => clearInterval(timer))
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, app, hits: () => hits }
}

/** A PDS that serves the fake network's repos as they were when asked, but only once `release()` is called. */
async function gatedPds(net: FakeNetwork): Promise<{ url: string; app: FastifyInstance; release: () => void; waiting: () => number }> {
  const app = Fastify({ forceCloseConnections: true })
  let open: () => void = () => undefined
  const gate = new Promise<void>((resolve) => (open = resolve))
  let waiting = 0
  app.get('/xrpc/com.atproto.sync.getRepo', async (req, reply) => {
    // the repo as it is when asked, served once released (later commits are newer than it)
    const did = (req.query as { did: string }).did
    const res = await fetch(`${net.pdsUrl}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`)
    const car = Buffer.from(await res.arrayBuffer())
    waiting++
    await gate
    reply.header('content-type', 'application/vnd.ipld.car')
    return car
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, app, release: () => open(), waiting: () => waiting }
}

describe('security: a slow PDS cannot stall ingest (issue 14 item 1)', () => {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer
  let attacker: Awaited<ReturnType<typeof tricklingPds>>

  beforeAll(async () => {
    net = await FakeNetwork.start()
    attacker = await tricklingPds(2000)
    db = await testDb('sqlite')
    // the fake PDS's stream stands in for a relay that crawls both the honest and the attacker's PDS
    server = await startAppView(net, db, {
      pdsUrls: [],
      relayUrl: net.pdsUrl,
      repoFetch: { hostConcurrency: 2, hostQueueLimit: 2, minBytesPerSec: 64, rateWindowMs: 1500 },
    })
  })

  afterAll(async () => {
    await server?.close()
    await attacker?.app.close()
    await net?.close()
    await db?.cleanup()
  })

  /** The URIs of an account's feed ([] while the account is unknown). */
  const authorFeed = async (did: string): Promise<string[]> => {
    try {
      return (await agentFor(server).app.bsky.feed.getAuthorFeed({ actor: did })).data.feed.map((f) => f.post.uri)
    } catch (err) {
      if ((err as { error?: string }).error === 'InvalidRequest') return []
      throw err
    }
  }

  /** A new DID on the attacker's PDS whose first visible commit has `since` (so it must be fetched). */
  async function attackerCommit(): Promise<void> {
    const acct = await net.createAccount(`evil${Math.random().toString(36).slice(2, 8)}.test`, { silent: true })
    acct.pdsUrl = attacker.url
    await net.write(acct, [{ action: 'create', collection: 'app.bsky.feed.post', rkey: nextTid(), record: { $type: 'app.bsky.feed.post', ...post('old') } }], { emit: false })
    await net.create(acct, 'app.bsky.feed.post', post('look at me'))
  }

  it('a normal post is indexed within 2 s while getRepo trickles for new DIDs', async () => {
    const honest = await net.createAccount('honest.test')
    const first = await net.create(honest, 'app.bsky.feed.post', post('before the attack'))
    await caughtUp(server, net, first.seq)

    // six new DIDs on the trickling PDS: two fetches run, two wait, the rest are refused by the host budget
    for (let i = 0; i < 6; i++) await attackerCommit()
    await waitForAsync(async () => attacker.hits() >= 1, 5_000, 'the attacker PDS to be asked for a repo')

    const started = Date.now()
    const p = await net.create(honest, 'app.bsky.feed.post', post('during the attack'))
    await waitForAsync(async () => (await authorFeed(honest.did)).includes(p.uri), 2_000, 'the honest post to be indexed')
    const took = Date.now() - started
    expect(took).toBeLessThan(2_000)
    expect((await agentFor(server).app.bsky.actor.getProfile({ actor: honest.did })).data.postsCount).toBe(2)

    // the per-host limits held: never more than 2 fetches at once on the attacker's host, extra ones refused
    expect(attacker.hits()).toBeLessThanOrEqual(4)
    expect(server.ctx.ingester.fetcher.stats.refused).toBeGreaterThanOrEqual(2)
    // the byte-rate floor aborts the trickles, after which the stream's cursor moves past the attack
    await caughtUp(server, net, p.seq)
    expect(server.ctx.ingester.fetcher.stats.tooSlow).toBeGreaterThanOrEqual(1)
    expect(server.ctx.ingester.fetcher.hostStats().find((h) => attacker.url.endsWith(h.host))?.active ?? 0).toBe(0)
  }, 30_000)

  it("an account's live events wait for its repo fetch and are applied after it, newer revs only", async () => {
    const gated = await gatedPds(net)
    try {
      const acct: Account = await net.createAccount('late.test', { silent: true })
      acct.pdsUrl = gated.url
      const rkOld = nextTid()
      await net.write(acct, [{ action: 'create', collection: 'app.bsky.feed.post', rkey: rkOld, record: { $type: 'app.bsky.feed.post', ...post('history') } }], {
        emit: false,
      })
      const a = await net.create(acct, 'app.bsky.feed.post', post('live one'))
      await waitForAsync(async () => gated.waiting() >= 1, 5_000, 'the repo fetch to start')
      // while the fetch hangs: more commits of the account, and another account's post goes through
      const b = await net.create(acct, 'app.bsky.feed.post', post('live two'))
      const c = await net.create(acct, 'app.bsky.feed.post', post('live three'))
      const other = await net.createAccount('other.test')
      const o = await net.create(other, 'app.bsky.feed.post', post('not held up'))
      await waitForAsync(async () => (await authorFeed(other.did)).includes(o.uri), 2_000, 'the other account to be indexed')
      expect(await authorFeed(acct.did)).toEqual([])
      // the fetched repo holds the history and a; b and c are newer and applied on top of it, once each
      gated.release()
      await caughtUp(server, net, o.seq)
      expect(await authorFeed(acct.did)).toEqual([c.uri, b.uri, a.uri, `at://${acct.did}/app.bsky.feed.post/${rkOld}`])
      expect((await agentFor(server).app.bsky.actor.getProfile({ actor: acct.did })).data.postsCount).toBe(4)
      // and the chain continues from the fetched state
      const d = await net.create(acct, 'app.bsky.feed.post', post('after'))
      await caughtUp(server, net, d.seq)
      expect((await authorFeed(acct.did))[0]).toBe(d.uri)
      expect((await agentFor(server).app.bsky.actor.getProfile({ actor: acct.did })).data.postsCount).toBe(5)
    } finally {
      await gated.app.close()
    }
  }, 30_000)
})
