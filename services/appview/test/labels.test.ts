/**
 * Labels in the AppView, on SQLite and (with STRATOS_TEST_PG_URL) PostgreSQL: real labelers
 * (@stratos/labeler) on loopback ports, found through their DID documents (#atproto_labeler service,
 * #atproto_label key) and their app.bsky.labeler.service records; the views queried with @atproto/api.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LabelerServer, readConfig as readLabelerConfig } from '@stratos/labeler'
import { Secp256k1Keypair } from '@atproto/crypto'
import type { AppViewServer } from '../src/server.js'
import {
  FakeNetwork,
  PG_URL,
  agentFor,
  caughtUp,
  expectXrpcError,
  now,
  post,
  reply,
  startAppView,
  testDb,
  waitForAsync,
  type Account,
  type TestDb,
  type WriteResult,
} from './helpers.js'

const ADMIN = 'labeler-admin'

async function startLabeler(did: string): Promise<LabelerServer> {
  const server = await LabelerServer.create(
    readLabelerConfig({ LABELER_DID: did, LABELER_PORT: '0', LABELER_DATA_DIRECTORY: ':memory:', LABELER_ADMIN_PASSWORD: ADMIN, LOG_LEVEL: 'silent' }),
  )
  await server.start()
  return server
}

async function label(labeler: LabelerServer, uri: string, val: string, opts: { neg?: boolean; exp?: string; cid?: string } = {}): Promise<void> {
  const nsid = opts.neg ? 'com.stratos.labeler.admin.negateLabel' : 'com.stratos.labeler.admin.createLabel'
  const res = await fetch(`${labeler.url}/xrpc/${nsid}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`admin:${ADMIN}`).toString('base64')}` },
    body: JSON.stringify({ uri, val, ...(opts.exp ? { exp: opts.exp } : {}), ...(opts.cid ? { cid: opts.cid } : {}) }),
  })
  if (!res.ok) throw new Error(`${nsid}: ${res.status} ${await res.text()}`)
}

/** The DID document of `acct` plus a labeler's #atproto_label key and #atproto_labeler service. */
function labelerDoc(net: FakeNetwork, acct: Account, labelKey: string, endpoint: string) {
  const doc = net.didDocument(acct) as { verificationMethod: unknown[]; service: unknown[] }
  return {
    ...doc,
    verificationMethod: [
      ...doc.verificationMethod,
      { id: `${acct.did}#atproto_label`, type: 'Multikey', controller: acct.did, publicKeyMultibase: labelKey.slice('did:key:'.length) },
    ],
    service: [...doc.service, { id: '#atproto_labeler', type: 'AtprotoLabeler', serviceEndpoint: endpoint }],
  }
}

async function metric(server: AppViewServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text()
  let total = 0
  for (const line of text.split('\n')) if (line.startsWith(name)) total += Number(line.split(' ').pop())
  return total
}

if (!PG_URL) console.log('SKIPPED: the PostgreSQL run of the AppView label suite (set STRATOS_TEST_PG_URL)')

function labelSuite(dialect: 'sqlite' | 'postgres') {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer
  let alice: Account, bob: Account, modAcct: Account, labAcct: Account, rogueAcct: Account
  let mod: LabelerServer, lab: LabelerServer, rogue: LabelerServer
  let P1: WriteResult, P2: WriteResult, P3: WriteResult, SELF: WriteResult, LIST: WriteResult

  beforeAll(async () => {
    net = await FakeNetwork.start()
    db = await testDb(dialect)
    alice = await net.createAccount('alice.test')
    bob = await net.createAccount('bob.test')
    modAcct = await net.createAccount('mod.test')
    labAcct = await net.createAccount('lab.test')
    rogueAcct = await net.createAccount('rogue.test')
    mod = await startLabeler(modAcct.did)
    lab = await startLabeler(labAcct.did)
    rogue = await startLabeler(rogueAcct.did)
    net.serviceDocs.set(modAcct.did, labelerDoc(net, modAcct, mod.labelKey, mod.url))
    net.serviceDocs.set(labAcct.did, labelerDoc(net, labAcct, lab.labelKey, lab.url))
    // the rogue labeler signs with a key its DID document does not name
    net.serviceDocs.set(rogueAcct.did, labelerDoc(net, rogueAcct, (await Secp256k1Keypair.create()).did(), rogue.url))
    server = await startAppView(net, db, { modServiceDid: modAcct.did, labelers: [rogueAcct.did], labelerRefreshMs: 200 })

    await net.create(alice, 'app.bsky.actor.profile', { displayName: 'Alice' }, 'self')
    await net.create(bob, 'app.bsky.actor.profile', { displayName: 'Bob' }, 'self')
    P1 = await net.create(alice, 'app.bsky.feed.post', post('a picture of something'))
    P2 = await net.create(alice, 'app.bsky.feed.post', post('to be taken down'))
    P3 = await net.create(bob, 'app.bsky.feed.post', post('bob speaks'))
    SELF = await net.create(
      bob,
      'app.bsky.feed.post',
      post('marked by its author', { labels: { $type: 'com.atproto.label.defs#selfLabels', values: [{ val: 'nudity' }] } }),
    )
    LIST = await net.create(bob, 'app.bsky.graph.list', { purpose: 'app.bsky.graph.defs#curatelist', name: 'bobs', createdAt: now() })
    // the labeler account declares its service: the AppView follows it from this record
    await net.create(
      labAcct,
      'app.bsky.labeler.service',
      {
        policies: {
          labelValues: ['porn', '!hide', 'spam'],
          labelValueDefinitions: [
            { identifier: 'spam', severity: 'inform', blurs: 'none', defaultSetting: 'warn', locales: [{ lang: 'en', name: 'Spam', description: 'Unwanted' }] },
          ],
        },
        reasonTypes: ['com.atproto.moderation.defs#reasonSpam'],
        createdAt: now(),
      },
      'self',
    )
    await caughtUp(server, net)
    await waitForAsync(async () => server.ctx.labelSubscriptions!.connected(labAcct.did), 10_000, 'the labeler subscription')
  }, 60_000)

  afterAll(async () => {
    await server?.close()
    for (const l of [mod, lab, rogue]) await l?.close()
    await net?.close()
    await db?.cleanup()
  })

  const viewer = () => {
    const agent = agentFor(server, alice)
    agent.configureLabelers([labAcct.did])
    return agent
  }

  it('views carry the labels of the labelers the request accepts, and say which in atproto-content-labelers', async () => {
    await label(lab, P1.uri, 'porn')
    await label(lab, bob.did, '!hide')
    await label(lab, LIST.uri, 'spam')
    const agent = viewer()
    await waitForAsync(async () => (await agent.getPosts({ uris: [P1.uri] })).data.posts[0]!.labels!.length > 0, 10_000, 'the porn label')
    // (the three labels may be indexed in separate batches: wait for the last one too)
    await waitForAsync(async () => ((await agent.app.bsky.graph.getList({ list: LIST.uri })).data.list.labels ?? []).length > 0, 10_000, 'the spam label')
    const res = await agent.getPosts({ uris: [P1.uri] })
    expect(res.data.posts[0]!.labels).toEqual([expect.objectContaining({ src: labAcct.did, uri: P1.uri, val: 'porn', ver: 1 })])
    expect(res.headers['atproto-content-labelers']).toContain(labAcct.did)
    expect(res.headers['atproto-content-labelers']).toContain(`${modAcct.did};redact`)

    const profile = await agent.getProfile({ actor: bob.did })
    expect(profile.data.labels).toEqual([expect.objectContaining({ src: labAcct.did, uri: bob.did, val: '!hide' })])
    // the author's labels follow them into every view: a post's author, the creator of a list
    const p3 = await agent.getPosts({ uris: [P3.uri] })
    expect(p3.data.posts[0]!.author.labels?.map((l) => l.val)).toEqual(['!hide'])
    const list = await agent.app.bsky.graph.getList({ list: LIST.uri })
    expect(list.data.list.labels?.map((l) => l.val)).toEqual(['spam'])
    expect(list.data.list.creator.labels?.map((l) => l.val)).toEqual(['!hide'])

    // a request that does not accept this labeler does not get its labels; defaults apply without the header
    const other = agentFor(server, alice)
    const plain = await other.getPosts({ uris: [P1.uri] })
    expect(plain.data.posts[0]!.labels).toEqual([])
    expect(plain.headers['atproto-content-labelers']).not.toContain(labAcct.did)
    const raw = await fetch(`${server.url}/xrpc/app.bsky.feed.getPosts?uris=${encodeURIComponent(P1.uri)}`)
    expect(raw.headers.get('atproto-content-labelers')).toBe(`${rogueAcct.did},${modAcct.did};redact`)
  })

  it('self-labels of records are in their views', async () => {
    const res = await viewer().getPosts({ uris: [SELF.uri] })
    expect(res.data.posts[0]!.labels).toEqual([expect.objectContaining({ src: bob.did, uri: SELF.uri, cid: SELF.cid, val: 'nudity' })])
  })

  it('a negation removes the label; an expired label disappears', async () => {
    const agent = viewer()
    await label(lab, P1.uri, 'porn', { neg: true })
    await waitForAsync(async () => (await agent.getPosts({ uris: [P1.uri] })).data.posts[0]!.labels!.length === 0, 10_000, 'the negation')
    const exp = new Date(Date.now() + 1500).toISOString()
    await label(lab, P3.uri, 'spam', { exp })
    await waitForAsync(async () => (await agent.getPosts({ uris: [P3.uri] })).data.posts[0]!.labels!.length === 1, 10_000, 'the expiring label')
    await waitForAsync(async () => (await agent.getPosts({ uris: [P3.uri] })).data.posts[0]!.labels!.length === 0, 10_000, 'the expiry')
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(exp))
  })

  it('labels whose signature does not verify against the #atproto_label key are dropped and counted', async () => {
    const before = await metric(server, 'appview_labels_rejected_total{reason="bad-signature"}')
    await label(rogue, P3.uri, 'porn')
    await waitForAsync(
      async () => (await metric(server, 'appview_labels_rejected_total{reason="bad-signature"}')) > before,
      10_000,
      'the rejection',
    )
    const agent = agentFor(server, alice)
    agent.configureLabelers([rogueAcct.did])
    const res = await agent.getPosts({ uris: [P3.uri] })
    expect(res.data.posts[0]!.labels).toEqual([])
    const rows = await server.ctx.db.selectFrom('label').selectAll().where('src', '=', rogueAcct.did).execute()
    expect(rows).toEqual([])
  })

  it("the moderation service's !takedown removes content; its other labels pass through", async () => {
    const agent = viewer()
    await label(mod, P2.uri, '!takedown')
    await waitForAsync(async () => (await agent.getPosts({ uris: [P2.uri] })).data.posts.length === 0, 10_000, 'the post takedown')
    await expectXrpcError(agent.getPostThread({ uri: P2.uri }), 'NotFound')
    const feed = await agent.getAuthorFeed({ actor: alice.did })
    expect(feed.data.feed.map((f) => f.post.uri)).not.toContain(P2.uri)

    await label(mod, SELF.uri, '!warn')
    await waitForAsync(async () => (await agent.getPosts({ uris: [SELF.uri] })).data.posts[0]!.labels!.length === 2, 10_000, '!warn')
    expect((await agent.getPosts({ uris: [SELF.uri] })).data.posts[0]!.labels!.map((l) => l.val).sort()).toEqual(['!warn', 'nudity'])

    await label(mod, bob.did, '!takedown')
    await waitForAsync(async () => (await agent.getPosts({ uris: [P3.uri] })).data.posts.length === 0, 10_000, 'the account takedown')
    await expectXrpcError(agent.getProfile({ actor: bob.did }), 'AccountTakedown')
    await label(mod, bob.did, '!takedown', { neg: true })
    await waitForAsync(async () => (await agent.getPosts({ uris: [P3.uri] })).data.posts.length === 1, 10_000, 'the restore')
  })

  it('app.bsky.labeler.getServices, plain and detailed; the profile says it is a labeler', async () => {
    const agent = viewer()
    const plain = await agent.app.bsky.labeler.getServices({ dids: [labAcct.did, alice.did] })
    expect(plain.data.views).toHaveLength(1)
    expect(plain.data.views[0]).toMatchObject({ $type: 'app.bsky.labeler.defs#labelerView', uri: `at://${labAcct.did}/app.bsky.labeler.service/self`, creator: { did: labAcct.did } })
    const detailed = await agent.app.bsky.labeler.getServices({ dids: [labAcct.did], detailed: true })
    expect(detailed.data.views[0]).toMatchObject({
      $type: 'app.bsky.labeler.defs#labelerViewDetailed',
      policies: { labelValues: ['porn', '!hide', 'spam'], labelValueDefinitions: [expect.objectContaining({ identifier: 'spam', severity: 'inform' })] },
      reasonTypes: ['com.atproto.moderation.defs#reasonSpam'],
    })
    const profile = await agent.getProfile({ actor: labAcct.did })
    expect(profile.data.associated?.labeler).toBe(true)
    expect((await agent.getProfile({ actor: alice.did })).data.associated?.labeler).toBe(false)
  })

  it("notifications carry the accepted labelers' labels on their records beside self-labels; the moderation service's !takedown removes them", async () => {
    const selfLabeled = { labels: { $type: 'com.atproto.label.defs#selfLabels', values: [{ val: 'sexual' }] } }
    const R1 = await net.create(bob, 'app.bsky.feed.post', reply('a reply', P1, P1, selfLabeled))
    const R2 = await net.create(bob, 'app.bsky.feed.post', reply('another reply', P1, P1))
    await caughtUp(server, net)
    await label(lab, R1.uri, 'spam')
    const agent = viewer()
    const notifs = async () => (await agent.app.bsky.notification.listNotifications({ limit: 50 })).data.notifications
    await waitForAsync(async () => (await notifs()).find((n) => n.uri === R1.uri)?.labels?.length === 2, 10_000, 'the label on the reply')
    const r1 = (await notifs()).find((n) => n.uri === R1.uri)!
    expect(r1.reason).toBe('reply')
    expect(r1.labels!.map((l) => `${l.src} ${l.val}`).sort()).toEqual([`${bob.did} sexual`, `${labAcct.did} spam`].sort())
    expect(r1.labels!.find((l) => l.val === 'spam')).toMatchObject({ uri: R1.uri, ver: 1 })
    // a client that does not accept the labeler gets the self-label only
    const plain = (await agentFor(server, alice).app.bsky.notification.listNotifications({ limit: 50 })).data.notifications
    expect(plain.find((n) => n.uri === R1.uri)!.labels!.map((l) => l.val)).toEqual(['sexual'])

    await label(mod, R2.uri, '!takedown')
    await waitForAsync(async () => !(await notifs()).some((n) => n.uri === R2.uri), 10_000, 'the takedown')
    expect((await notifs()).some((n) => n.uri === R1.uri)).toBe(true)
  })

  it('a label on one version of a record (cid) applies to the record and carries its cid, as the reference AppView does', async () => {
    const V = await net.create(alice, 'app.bsky.feed.post', post('a record whose labeled version is not the current one'))
    await caughtUp(server, net)
    // the label names another version (any other cid will do): the view still carries it, cid included, so a
    // client can tell; neither the reference AppView nor @atproto/api's moderation compares the two
    await label(lab, V.uri, 'porn', { cid: P1.cid })
    const agent = viewer()
    await waitForAsync(async () => ((await agent.getPosts({ uris: [V.uri] })).data.posts[0]!.labels ?? []).length === 1, 10_000, 'the label')
    const view = (await agent.getPosts({ uris: [V.uri] })).data.posts[0]!
    expect(view.cid).toBe(V.cid)
    expect(view.labels).toEqual([expect.objectContaining({ uri: V.uri, cid: P1.cid, val: 'porn' })])
  })
}

describe('AppView labels (SQLite)', () => labelSuite('sqlite'))
describe.runIf(PG_URL)('AppView labels (PostgreSQL)', () => labelSuite('postgres'))
