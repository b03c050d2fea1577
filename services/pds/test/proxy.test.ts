import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { freePort, startNetwork, xrpc, type TestNetwork } from './_network.js'
import { FakeService, registerServiceDid } from './_fake-service.js'

const APPVIEW_DID = 'did:web:appview.stratos.test'

describe('app.bsky proxying, preferences and read-after-write', () => {
  let net: TestNetwork
  let appview: FakeService
  let labeler: FakeService
  let labelerDid: string
  let alice: AtpAgent
  let did: string

  beforeAll(async () => {
    // the reference PDS (and so ours) makes service JWTs out to the service's bare DID
    appview = await FakeService.start([APPVIEW_DID])
    net = await startNetwork({ PDS_BSKY_APP_VIEW_URL: appview.url, PDS_BSKY_APP_VIEW_DID: APPVIEW_DID })
    appview.plcUrl = net.plc.url
    labeler = await FakeService.start([])
    labeler.plcUrl = net.plc.url
    labelerDid = await registerServiceDid(net.plc.url, 'atproto_labeler', 'AtprotoLabeler', labeler.url)
    labeler.audiences.push(labelerDid)
    alice = new AtpAgent({ service: net.url })
    await alice.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: 'alice-pw' })
    did = alice.session!.did
  })
  afterAll(async () => {
    await net?.close()
    await appview?.close()
    await labeler?.close()
  })

  it('sends app.bsky queries to the AppView with a service JWT for the method, signed by the repo key', async () => {
    appview.responses.set('app.bsky.actor.getProfile', (call) => ({
      did: call.iss,
      handle: 'alice.test',
      displayName: 'from the appview',
      description: `aud=${call.aud} lxm=${call.lxm}`,
    }))
    const res = await alice.app.bsky.actor.getProfile({ actor: did })
    expect(res.data.did).toBe(did)
    expect(res.data.description).toBe(`aud=${APPVIEW_DID} lxm=app.bsky.actor.getProfile`)
    expect(res.headers['atproto-content-labelers']).toBe('did:plc:labelerone')
    const call = appview.calls.at(-1)!
    expect(call.query).toBe(`actor=${encodeURIComponent(did)}`)
    // the user's bearer token never leaves the PDS
    expect(String(call.headers.authorization)).not.toContain(alice.session!.accessJwt)
  })

  it('forwards procedures with their body, and the language and labeler headers', async () => {
    const res = await xrpc(net.url, 'app.bsky.graph.muteActor', {
      token: alice.session!.accessJwt,
      body: { actor: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz' },
      headers: { 'atproto-accept-labelers': 'did:plc:labelerone;redact', 'accept-language': 'fr' },
    })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      echo: 'app.bsky.graph.muteActor',
      iss: did,
      lxm: 'app.bsky.graph.muteActor',
      body: { actor: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz' },
    })
    const call = appview.calls.at(-1)!
    expect(call.headers['atproto-accept-labelers']).toBe('did:plc:labelerone;redact')
    expect(call.headers['accept-language']).toBe('fr')
  })

  it("without atproto-accept-labelers, names the labelers the user subscribed to in their app.bsky preferences", async () => {
    const plain = await xrpc(net.url, 'app.bsky.feed.getTimeline', { token: alice.session!.accessJwt })
    expect(plain.status).toBe(200)
    expect(appview.calls.at(-1)!.headers['atproto-accept-labelers']).toBeUndefined()
    const before = (await alice.app.bsky.actor.getPreferences()).data.preferences
    await alice.app.bsky.actor.putPreferences({
      preferences: [
        ...before,
        { $type: 'app.bsky.actor.defs#labelersPref', labelers: [{ did: 'did:plc:subscribedone' }, { did: 'did:plc:subscribedtwo' }] },
      ],
    })
    await xrpc(net.url, 'app.bsky.feed.getTimeline', { token: alice.session!.accessJwt })
    expect(appview.calls.at(-1)!.headers['atproto-accept-labelers']).toBe('did:plc:subscribedone,did:plc:subscribedtwo')
    // a header the client sends wins
    await xrpc(net.url, 'app.bsky.feed.getTimeline', { token: alice.session!.accessJwt, headers: { 'atproto-accept-labelers': 'did:plc:other' } })
    expect(appview.calls.at(-1)!.headers['atproto-accept-labelers']).toBe('did:plc:other')
    await alice.app.bsky.actor.putPreferences({ preferences: before })
  })

  it('sends a call to the service the atproto-proxy header names, resolved from its DID document', async () => {
    const before = appview.calls.length
    const viaAgent = alice.withProxy('atproto_labeler', labelerDid)
    labeler.responses.set('app.bsky.feed.getTimeline', (call) => ({ feed: [], cursor: `${call.aud}|${call.lxm}` }))
    const res = await viaAgent.app.bsky.feed.getTimeline({ limit: 5 })
    expect(res.data.cursor).toBe(`${labelerDid}|app.bsky.feed.getTimeline`)
    // also outside app.bsky (e.g. reports to a moderation service)
    const report = await xrpc(net.url, 'com.atproto.moderation.createReport', {
      token: alice.session!.accessJwt,
      headers: { 'atproto-proxy': `${labelerDid}#atproto_labeler` },
      body: { reasonType: 'com.atproto.moderation.defs#reasonSpam', subject: { $type: 'com.atproto.admin.defs#repoRef', did } },
    })
    expect(report.status).toBe(200)
    expect(report.body).toMatchObject({ iss: did, aud: labelerDid, lxm: 'com.atproto.moderation.createReport' })
    expect(appview.calls.length).toBe(before)
  })

  it('makes the token of a getFeed call out to the feed generator, for the AppView to pass on', async () => {
    const feedUri = 'at://did:plc:feedcreatorfeedcreator00/app.bsky.feed.generator/cats'
    appview.responses.set('app.bsky.feed.getFeedGenerator', (call) => ({
      view: {
        uri: feedUri,
        cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm',
        did: 'did:web:feedgen.stratos.test',
        creator: { did: 'did:plc:feedcreatorfeedcreator00', handle: 'creator.test' },
        displayName: `cats (${call.lxm})`,
        indexedAt: new Date().toISOString(),
      },
      isOnline: true,
      isValid: true,
    }))
    appview.responses.set('app.bsky.feed.getFeed', (call) => ({ feed: [], cursor: `${call.aud}|${call.lxm}` }))
    appview.expectedLxm.set('app.bsky.feed.getFeed', 'app.bsky.feed.getFeedSkeleton')
    appview.audiences.push('did:web:feedgen.stratos.test')
    const res = await alice.app.bsky.feed.getFeed({ feed: feedUri })
    expect(res.data.cursor).toBe('did:web:feedgen.stratos.test|app.bsky.feed.getFeedSkeleton')
    expect(appview.calls.at(-2)).toMatchObject({ nsid: 'app.bsky.feed.getFeedGenerator', aud: APPVIEW_DID })
  })

  it('refuses unauthenticated calls, bad proxy headers and account-management methods', async () => {
    const anon = await xrpc(net.url, 'app.bsky.actor.getProfile', { params: { actor: did } })
    expect(anon.status).toBe(401)
    expect(anon.body.error).toBe('AuthenticationRequired')
    const bad = await xrpc(net.url, 'app.bsky.actor.getProfile', {
      token: alice.session!.accessJwt,
      params: { actor: did },
      headers: { 'atproto-proxy': labelerDid },
    })
    expect(bad.status).toBe(400)
    const noService = await xrpc(net.url, 'app.bsky.actor.getProfile', {
      token: alice.session!.accessJwt,
      params: { actor: did },
      headers: { 'atproto-proxy': `${labelerDid}#bsky_appview` },
    })
    expect(noService.status).toBe(400)
    expect(noService.body.message).toMatch(/service/)
    const protectedCall = await xrpc(net.url, 'com.atproto.server.requestPhoneVerification', {
      token: alice.session!.accessJwt,
      headers: { 'atproto-proxy': `${labelerDid}#atproto_labeler` },
      body: { phoneNumber: '+15555550100' },
    })
    expect(protectedCall.status).toBe(400)
    const unknown = await xrpc(net.url, 'com.example.nothing.here', { token: alice.session!.accessJwt })
    expect(unknown.status).toBe(501)
  })

  it('passes upstream errors on as XRPC errors, and answers 502 when the service is unreachable', async () => {
    const { InvalidRequestError } = await import('@stratos/core/xrpc')
    appview.responses.set('app.bsky.feed.getPostThread', () => {
      throw new InvalidRequestError('Post not found: at://x/y/z', 'NotFound')
    })
    const err = await xrpc(net.url, 'app.bsky.feed.getPostThread', {
      token: alice.session!.accessJwt,
      params: { uri: `at://${did}/app.bsky.feed.post/3kabcabcabc22` },
    })
    expect(err.status).toBe(400)
    expect(err.body).toEqual({ error: 'NotFound', message: 'Post not found: at://x/y/z' })

    const deadDid = await registerServiceDid(net.plc.url, 'atproto_labeler', 'AtprotoLabeler', `http://127.0.0.1:${await freePort()}`)
    const dead = await xrpc(net.url, 'app.bsky.feed.getTimeline', {
      token: alice.session!.accessJwt,
      headers: { 'atproto-proxy': `${deadDid}#atproto_labeler` },
    })
    expect(dead.status).toBe(502)
    expect(dead.body.error).toBe('UpstreamFailure')
  })

  it('stores preferences on the PDS: round trip, app.bsky only, personal details hidden from app passwords', async () => {
    expect((await alice.app.bsky.actor.getPreferences()).data.preferences).toEqual([])
    const prefs = [
      { $type: 'app.bsky.actor.defs#adultContentPref', enabled: true },
      { $type: 'app.bsky.actor.defs#contentLabelPref', label: 'nsfw', visibility: 'warn' },
      { $type: 'app.bsky.actor.defs#personalDetailsPref', birthDate: '1990-01-01T00:00:00.000Z' },
    ]
    await alice.app.bsky.actor.putPreferences({ preferences: prefs })
    expect((await alice.app.bsky.actor.getPreferences()).data.preferences).toEqual(prefs)
    // none of this went to the AppView
    expect(appview.calls.some((c) => c.nsid.endsWith('Preferences'))).toBe(false)

    const foreign = await xrpc(net.url, 'app.bsky.actor.putPreferences', {
      token: alice.session!.accessJwt,
      body: { preferences: [{ $type: 'com.example.pref', x: 1 }] },
    })
    expect(foreign.status).toBe(400)
    expect(foreign.body.message).toMatch(/app\.bsky/)
    const invalid = await xrpc(net.url, 'app.bsky.actor.putPreferences', {
      token: alice.session!.accessJwt,
      body: { preferences: [{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: 'yes' }] },
    })
    expect(invalid.status).toBe(400)
    expect((await alice.app.bsky.actor.getPreferences()).data.preferences).toEqual(prefs)

    const { password } = (await alice.com.atproto.server.createAppPassword({ name: 'prefs-app' })).data
    const app = new AtpAgent({ service: net.url })
    await app.login({ identifier: 'alice.test', password })
    const seen = (await app.app.bsky.actor.getPreferences()).data.preferences
    expect(seen.map((p) => p.$type)).toEqual(['app.bsky.actor.defs#adultContentPref', 'app.bsky.actor.defs#contentLabelPref'])
    await app.app.bsky.actor.putPreferences({ preferences: [{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: false }] })
    const after = (await alice.app.bsky.actor.getPreferences()).data.preferences
    expect(after).toEqual([{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: false }, prefs[2]])
    const refused = await xrpc(net.url, 'app.bsky.actor.putPreferences', {
      token: app.session!.accessJwt,
      body: { preferences: [prefs[2]] },
    })
    expect(refused.status).toBe(400)
    // DMs are off limits for an ordinary app password
    const chat = await xrpc(net.url, 'chat.bsky.convo.listConvos', { token: app.session!.accessJwt })
    expect(chat.status).toBe(400)
    expect(chat.body.error).toBe('InvalidToken')
    const chatFull = await xrpc(net.url, 'chat.bsky.convo.listConvos', { token: alice.session!.accessJwt })
    expect(chatFull.status).toBe(200)
    expect(chatFull.body.lxm).toBe('chat.bsky.convo.listConvos')
  })

  it('merges the caller\'s records newer than the AppView\'s Atproto-Repo-Rev (read-after-write)', async () => {
    const head = await alice.com.atproto.sync.getLatestCommit({ did })
    appview.repoRev = head.data.rev
    appview.responses.set('app.bsky.actor.getProfile', (call) => ({ did: call.iss, handle: 'alice.test', displayName: 'old name' }))
    appview.responses.set('app.bsky.feed.getAuthorFeed', () => ({ feed: [] }))
    appview.responses.set('app.bsky.feed.getTimeline', () => ({ feed: [] }))

    await alice.com.atproto.repo.putRecord({
      repo: did,
      collection: 'app.bsky.actor.profile',
      rkey: 'self',
      record: { $type: 'app.bsky.actor.profile', displayName: 'New Name', description: 'fresh' },
    })
    const post = await alice.post({ text: 'hello from the PDS', createdAt: new Date().toISOString() })

    const profile = await alice.app.bsky.actor.getProfile({ actor: did })
    expect(profile.data.displayName).toBe('New Name')
    expect(profile.data.description).toBe('fresh')

    const feed = await alice.app.bsky.feed.getAuthorFeed({ actor: 'alice.test' })
    expect(feed.data.feed.map((f) => f.post.uri)).toEqual([post.uri])
    expect(feed.data.feed[0]!.post.author).toMatchObject({ did, handle: 'alice.test', displayName: 'New Name' })
    expect((feed.data.feed[0]!.post.record as { text: string }).text).toBe('hello from the PDS')

    // a reply to a post of the thread shows up under it
    const rootView = feed.data.feed[0]!.post
    appview.responses.set('app.bsky.feed.getPostThread', () => ({
      thread: { $type: 'app.bsky.feed.defs#threadViewPost', post: rootView, replies: [] },
    }))
    const reply = await alice.post({
      text: 'a reply',
      reply: { root: { uri: post.uri, cid: post.cid }, parent: { uri: post.uri, cid: post.cid } },
      createdAt: new Date().toISOString(),
    })
    const thread = await alice.app.bsky.feed.getPostThread({ uri: post.uri })
    const replies = (thread.data.thread as { replies: { post: { uri: string } }[] }).replies
    expect(replies.map((r) => r.post.uri)).toEqual([reply.uri])

    const timeline = await alice.app.bsky.feed.getTimeline({})
    expect(timeline.data.feed.map((f) => f.post.uri)).toEqual([reply.uri, post.uri])
    // a later page, or an AppView that has caught up, is passed through unchanged
    expect((await alice.app.bsky.feed.getTimeline({ cursor: 'x' })).data.feed).toEqual([])
    appview.repoRev = (await alice.com.atproto.sync.getLatestCommit({ did })).data.rev
    expect((await alice.app.bsky.feed.getTimeline({})).data.feed).toEqual([])
    expect((await alice.app.bsky.actor.getProfile({ actor: did })).data.displayName).toBe('old name')
  })

  it('refuses to proxy for a deactivated account', async () => {
    const bob = new AtpAgent({ service: net.url })
    await bob.createAccount({ handle: 'bob.test', email: 'bob@example.com', password: 'bob-pw' })
    await bob.com.atproto.server.deactivateAccount({})
    const res = await xrpc(net.url, 'app.bsky.actor.getProfile', { token: bob.session!.accessJwt, params: { actor: 'bob.test' } })
    expect(res.status).toBe(401)
    expect(res.body.error).toBe('AccountDeactivated')
  })
})
