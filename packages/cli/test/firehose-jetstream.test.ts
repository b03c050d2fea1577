/**
 * `stratos firehose --jetstream` and the README's @skyware/jetstream example against the dev network
 * (PLC, PDS, Relay, AppView started with startDevNetwork): the relay's GET /subscribe, filtered.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AtpAgent } from '@atproto/api'
import { Jetstream } from '@skyware/jetstream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { freePortBase, startDevNetwork, waitForHealth, type DevNetwork } from '@stratos/dev-network'
import { jetstreamUrl } from '../src/commands/jetstream.js'
import { jsonLines, runCli } from './helpers.js'

let dir: string
let network: DevNetwork
let alice: AtpAgent
let bob: AtpAgent
let start: number
const seenBySkyware: string[] = []
const identityOrAccountSeen: string[] = []
let skyware: Jetstream

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-cli-jetstream-'))
  network = await startDevNetwork({ dataDir: path.join(dir, 'net'), portBase: await freePortBase(), logLevel: 'silent' })
  await waitForHealth(network.urls)

  // the README's example, as written there (endpoint: this network's relay)
  skyware = new Jetstream({
    ws: WebSocket,
    endpoint: `${network.urls.relay.replace(/^http/, 'ws')}/subscribe`,
    wantedCollections: ['app.bsky.feed.post', 'app.bsky.graph.*'],
  })
  skyware.onCreate('app.bsky.feed.post', (e) => seenBySkyware.push(`${e.did} posted: ${e.commit.record.text}`))
  skyware.on('identity', (e) => seenBySkyware.push(`${e.did} is now @${e.identity.handle}`))
  skyware.on('identity', (e) => identityOrAccountSeen.push(`identity ${e.did}`))
  skyware.on('account', (e) => identityOrAccountSeen.push(`account ${e.did}`))
  await new Promise<void>((resolve) => {
    skyware.once('open', () => resolve())
    skyware.start()
  })

  const signUp = async (name: string) => {
    const agent = new AtpAgent({ service: network.urls.pds })
    await agent.createAccount({ handle: `${name}.test`, email: `${name}@example.com`, password: `${name}-password` })
    return agent
  }
  alice = await signUp('alice')
  bob = await signUp('bob')
  // (account and identity events pass collection filters, as on Jetstream: start after the relay has sent them)
  const signUpEvents = [alice, bob].flatMap((a) => [`identity ${a.session!.did}`, `account ${a.session!.did}`])
  for (let i = 0; i < 300 && !signUpEvents.every((e) => identityOrAccountSeen.includes(e)); i++) {
    await new Promise((r) => setTimeout(r, 50))
  }
  expect(identityOrAccountSeen).toEqual(expect.arrayContaining(signUpEvents))
  await new Promise((r) => setTimeout(r, 5))
  start = Date.now() * 1000
  const post = await alice.post({ text: 'hello from alice', createdAt: new Date().toISOString() })
  await bob.post({ text: 'hello from bob', createdAt: new Date().toISOString() })
  await bob.like(post.uri, post.cid)
  await bob.follow(alice.session!.did)
  await alice.upsertProfile(() => ({ displayName: 'Alice' }))
}, 90_000)

afterAll(async () => {
  skyware?.close()
  await network?.close()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

describe('stratos firehose --jetstream', () => {
  it('prints the relay’s Jetstream events filtered by collection prefix and DID, from a time cursor', async () => {
    const r = await runCli([
      'firehose', network.urls.relay, '--jetstream',
      '--collection', 'app.bsky.feed.*', '--did', `${alice.session!.did},${bob.session!.did}`,
      '--cursor', String(start), '--limit', '3',
    ])
    expect(r.code).toBe(0)
    const events = jsonLines(r.stdout) as any[]
    // each account's events in order (the relay's verification workers do not keep the order between accounts)
    const of = (did: string) => events.filter((e) => e.did === did).map((e) => [e.kind, e.commit?.collection, e.commit?.record?.text])
    expect(events).toHaveLength(3)
    expect(of(alice.session!.did)).toEqual([['commit', 'app.bsky.feed.post', 'hello from alice']])
    expect(of(bob.session!.did)).toEqual([
      ['commit', 'app.bsky.feed.post', 'hello from bob'],
      ['commit', 'app.bsky.feed.like', undefined],
    ])
    expect(r.stderr).toMatch(/connected to ws:\/\/127\.0\.0\.1:\d+\/subscribe/)

    // only bob, only follows
    const follows = await runCli(['firehose', network.urls.relay, '--jetstream', '--collection', 'app.bsky.graph.follow', '--did', bob.session!.did, '--cursor', String(start), '--limit', '1'])
    expect(follows.code).toBe(0)
    expect(jsonLines(follows.stdout)).toMatchObject([{ did: bob.session!.did, kind: 'commit', commit: { operation: 'create', collection: 'app.bsky.graph.follow', record: { subject: alice.session!.did } } }])
  }, 30_000)

  it('refuses bad filters with the server’s error, and filters without --jetstream', async () => {
    const bad = await runCli(['firehose', network.urls.relay, '--jetstream', '--collection', 'not an nsid', '--limit', '1'])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/HTTP 400: InvalidRequest/)
    expect((await runCli(['firehose', network.urls.relay, '--collection', 'app.bsky.feed.post'])).code).toBe(2)
    expect(jetstreamUrl('https://relay.example.com', { collections: ['app.bsky.*'], dids: [] })).toBe(
      'wss://relay.example.com/subscribe?wantedCollections=app.bsky.*',
    )
  })

  it("the README's @skyware/jetstream example sees the posts", async () => {
    const deadline = Date.now() + 15_000
    const posts = () => seenBySkyware.filter((l) => l.includes(' posted: '))
    while (posts().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    expect(seenBySkyware).toContain(`${alice.session!.did} is now @alice.test`)
    expect([...posts()].sort()).toEqual([`${alice.session!.did} posted: hello from alice`, `${bob.session!.did} posted: hello from bob`].sort())
  })
})
