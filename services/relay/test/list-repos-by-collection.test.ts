/**
 * com.atproto.sync.listReposByCollection on a relay fed by a real Stratos PDS: exact after creates and
 * deletes (an account's last record of a collection removes it), paged by cursor, rebuilt by a second relay
 * started from scratch (backfill of the host's repos).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RelayServer } from '../src/index.js'
import { adminHeaders, relayConfig, startRelay, tmpDir, waitFor, xrpcGet, xrpcPost } from './helpers.js'
import { TestNetwork, type TestAccount } from './network.js'

const POST = 'app.bsky.feed.post'
const LIKE = 'app.bsky.feed.like'
const PROFILE = 'app.bsky.actor.profile'
const CUSTOM = 'org.example.thing.item'

let net: TestNetwork
let alice: TestAccount
let bob: TestAccount
let carol: TestAccount

async function listAll(base: string, collection: string, limit: number): Promise<{ dids: string[]; pages: number }> {
  const dids: string[] = []
  let cursor: string | undefined
  let pages = 0
  for (;;) {
    const res = await xrpcGet(base, 'com.atproto.sync.listReposByCollection', { collection, limit: String(limit), ...(cursor ? { cursor } : {}) })
    expect(res.status).toBe(200)
    pages++
    dids.push(...res.body.repos.map((r: { did: string }) => r.did))
    if (!res.body.cursor) return { dids, pages }
    cursor = res.body.cursor
  }
}

const now = () => new Date().toISOString()

beforeAll(async () => {
  net = await TestNetwork.start()
  alice = await net.createAccount('alice')
  bob = await net.createAccount('bob')
  carol = await net.createAccount('carol')
  const p = await net.create(alice, POST, { text: 'a', createdAt: now() })
  await net.create(alice, POST, { text: 'a2', createdAt: now() })
  await net.create(alice, LIKE, { subject: { uri: p.uri, cid: p.cid }, createdAt: now() })
  await net.create(bob, POST, { text: 'b', createdAt: now() })
  await net.create(bob, PROFILE, { displayName: 'Bob' }, 'self')
  await net.put(bob, PROFILE, 'self', { displayName: 'Bob B.' })
  const like = await net.create(carol, LIKE, { subject: { uri: p.uri, cid: p.cid }, createdAt: now() })
  await net.create(carol, POST, { text: 'c', createdAt: now() })
  await net.create(carol, CUSTOM, { n: 1 })
  await net.del(carol, LIKE, like.rkey) // carol's last like
  for (const a of [alice, bob, carol]) await net.synced(a)
}, 90_000)

afterAll(async () => {
  await net?.close()
})

describe('com.atproto.sync.listReposByCollection', () => {
  it('lists exactly the accounts holding records of a collection', async () => {
    const sorted = (xs: string[]) => [...xs].sort()
    expect((await listAll(net.relay.url, POST, 500)).dids).toEqual(sorted([alice.did, bob.did, carol.did]))
    expect((await listAll(net.relay.url, LIKE, 500)).dids).toEqual([alice.did])
    expect((await listAll(net.relay.url, PROFILE, 500)).dids).toEqual([bob.did])
    expect((await listAll(net.relay.url, CUSTOM, 500)).dids).toEqual([carol.did])
    expect((await listAll(net.relay.url, 'org.example.none', 500)).dids).toEqual([])
    expect(net.relay.ctx.collections.collectionsOf(alice.did)).toEqual(new Map([[LIKE, 1], [POST, 2]]))

    // the last post of bob goes: bob leaves the post listing
    const posts = await (await fetch(`${net.pdsUrl}/xrpc/com.atproto.repo.listRecords?repo=${bob.did}&collection=${POST}`)).json() as { records: { uri: string }[] }
    await net.del(bob, POST, posts.records[0]!.uri.split('/').pop()!)
    await net.synced(bob)
    expect((await listAll(net.relay.url, POST, 500)).dids).toEqual(sorted([alice.did, carol.did]))
  })

  it('pages by cursor, each DID once', async () => {
    const one = await listAll(net.relay.url, POST, 1)
    expect(one.dids).toEqual((await listAll(net.relay.url, POST, 500)).dids)
    expect(new Set(one.dids).size).toBe(one.dids.length)
    expect(one.pages).toBe(one.dids.length + 1)
  })

  it('leaves out accounts deactivated upstream or taken down on the relay, and lists them again when active', async () => {
    const posters = async () => (await listAll(net.relay.url, POST, 500)).dids
    const before = await posters()
    expect(before).toEqual(expect.arrayContaining([alice.did, carol.did]))

    // deactivated on its PDS (#account active=false): out of the listing, in every collection
    await net.call('com.atproto.server.deactivateAccount', {}, alice.accessJwt)
    await waitFor(async () => !(await posters()).includes(alice.did), 15_000, 'alice out of the listing')
    expect((await listAll(net.relay.url, LIKE, 500)).dids).toEqual([])
    expect(await posters()).toEqual(before.filter((d) => d !== alice.did))
    expect((await xrpcGet(net.relay.url, 'com.atproto.sync.getRepoStatus', { did: alice.did })).body).toMatchObject({ active: false, status: 'deactivated' })
    // paging over the remaining accounts still returns each once
    expect((await listAll(net.relay.url, POST, 1)).dids).toEqual(before.filter((d) => d !== alice.did))

    // activated again: back, with its counts kept
    await net.call('com.atproto.server.activateAccount', undefined, alice.accessJwt)
    await waitFor(async () => (await posters()).includes(alice.did), 15_000, 'alice back in the listing')
    expect((await listAll(net.relay.url, LIKE, 500)).dids).toEqual([alice.did])
    expect(net.relay.ctx.collections.collectionsOf(alice.did)).toEqual(new Map([[LIKE, 1], [POST, 2]]))

    // taken down by the relay's operator: out; restored: back
    const down = await xrpcPost(net.relay.url, 'com.stratos.relay.admin.takedownAccount', { did: carol.did }, adminHeaders())
    expect(down.status).toBe(200)
    expect(await posters()).toEqual(before.filter((d) => d !== carol.did))
    expect((await listAll(net.relay.url, CUSTOM, 500)).dids).toEqual([])
    const up = await xrpcPost(net.relay.url, 'com.stratos.relay.admin.restoreAccount', { did: carol.did }, adminHeaders())
    expect(up.status).toBe(200)
    expect(await posters()).toEqual(before)
    expect((await listAll(net.relay.url, CUSTOM, 500)).dids).toEqual([carol.did])
  }, 45_000)

  it('refuses bad parameters with XRPC errors', async () => {
    expect(await xrpcGet(net.relay.url, 'com.atproto.sync.listReposByCollection')).toMatchObject({ status: 400, body: { error: 'InvalidRequest' } })
    expect(await xrpcGet(net.relay.url, 'com.atproto.sync.listReposByCollection', { collection: 'not an nsid' })).toMatchObject({ status: 400, body: { error: 'InvalidRequest' } })
    expect(await xrpcGet(net.relay.url, 'com.atproto.sync.listReposByCollection', { collection: POST, limit: '5000' })).toMatchObject({ status: 400 })
  })

  it('a second relay started from scratch builds the same index by backfill', async () => {
    const dir = tmpDir()
    let relay2: RelayServer | undefined
    try {
      relay2 = await startRelay(relayConfig(dir.path, net.plc.url))
      const res = await fetch(`${relay2.url}/xrpc/com.atproto.sync.requestCrawl`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ hostname: new URL(net.pdsUrl).host }),
      })
      expect(res.status).toBe(200)
      const r2 = relay2
      await waitFor(() => r2.ctx.collections.stats().backfilled >= 3, 20_000, 'backfill of the three repos')
      for (const a of [alice, bob, carol]) await net.synced(a, r2.url)
      // every event of the PDS's stream handled: the replay holds alice's #account deactivation and reactivation,
      // and her latest commit is older than both (she is listed again only once the reactivation is handled)
      const pdsHead = net.pds.ctx.sequencer.log.lastAssignedSeq()
      const pdsHost = r2.ctx.hosts.get(new URL(net.pdsUrl).host)!
      await waitFor(() => (r2.ctx.slurper.cursorOf(pdsHost.id) ?? 0) >= pdsHead, 10_000, 'the PDS stream replayed to its head')
      // an account's state is readable once committed; its commit is handled (and a backfill of a repo the
      // index does not know queued) once the WAL sync made it durable and it was published
      await waitFor(() => r2.ctx.outbox.publishedSeq === r2.ctx.outbox.log.lastAssignedSeq(), 10_000, 'every event published')
      await r2.ctx.collections.idle()
      for (const c of [POST, LIKE, PROFILE, CUSTOM]) {
        expect((await listAll(r2.url, c, 2)).dids).toEqual((await listAll(net.relay.url, c, 500)).dids)
      }
      for (const a of [alice, bob, carol]) expect(r2.ctx.collections.collectionsOf(a.did)).toEqual(net.relay.ctx.collections.collectionsOf(a.did))

      // and it keeps up from there: a new collection for alice shows up on both
      await net.create(alice, CUSTOM, { n: 2 })
      await waitFor(async () => (await listAll(r2.url, CUSTOM, 500)).dids.includes(alice.did), 10_000, 'alice in the custom collection')
    } finally {
      await relay2?.close()
      dir.remove()
    }
  }, 60_000)
})
