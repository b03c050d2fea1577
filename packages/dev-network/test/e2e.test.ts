/**
 * End to end: the network started the way `stratos dev` starts it, driven with @atproto/api through the PDS.
 * Sign up, post with an image, follow, reply, like; the writes reach the relay's firehose (checked with
 * @atproto/sync's Firehose, verification on) and the AppView's views through the PDS's proxy.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { Firehose, MemoryRunner, type Event } from '@atproto/sync'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePortBase, startDevNetwork, waitForHealth, type DevNetwork } from '@stratos/dev-network'

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
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
    await new Promise((r) => setTimeout(r, 200))
  }
}

// a 1x1 PNG
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
)

describe('dev network end to end', () => {
  let dir: string
  let network: DevNetwork
  let alice: AtpAgent
  let bob: AtpAgent
  let firehose: Firehose
  const seen: Event[] = []

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-e2e-'))
    network = await startDevNetwork({ dataDir: dir, portBase: await freePortBase(), logLevel: 'silent' })
    await waitForHealth(network.urls)

    const idResolver = new IdResolver({ plcUrl: network.urls.plc, fetch: globalThis.fetch })
    firehose = new Firehose({
      service: network.urls.relay.replace(/^http/, 'ws'),
      idResolver,
      runner: new MemoryRunner(),
      handleEvent: async (evt) => {
        seen.push(evt)
      },
      onError: () => undefined,
      excludeIdentity: false,
      excludeAccount: false,
    })
    void firehose.start()

    const signup = async (name: string) => {
      const agent = new AtpAgent({ service: network.urls.pds })
      await agent.createAccount({ handle: `${name}.test`, email: `${name}@example.com`, password: `${name}-password` })
      return agent
    }
    alice = await signup('alice')
    bob = await signup('bob')
  }, 60_000)

  afterAll(async () => {
    await firehose?.destroy()
    await network?.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('serves every service health check and the PDS describes itself', async () => {
    for (const url of Object.values(network.urls)) {
      const res = await fetch(`${url}/xrpc/_health`)
      expect(res.status).toBe(200)
    }
    const desc = await alice.com.atproto.server.describeServer()
    expect(desc.data.availableUserDomains).toContain('.test')
  })

  it('carries a post with an image, a follow, a reply and a like to the relay and the AppView', async () => {
    const upload = await alice.uploadBlob(PNG, { encoding: 'image/png' })
    const post = await alice.post({
      text: 'hello from the dev network',
      createdAt: new Date().toISOString(),
      embed: { $type: 'app.bsky.embed.images', images: [{ image: upload.data.blob, alt: 'a pixel' }] },
    })
    await bob.follow(alice.session!.did)
    const reply = await bob.post({
      text: 'welcome!',
      createdAt: new Date().toISOString(),
      reply: { root: { uri: post.uri, cid: post.cid }, parent: { uri: post.uri, cid: post.cid } },
    })
    await bob.like(post.uri, post.cid)

    // the relay forwarded the verified commits (Firehose verifies signatures and MST proofs itself)
    const commitsFor = (did: string) =>
      seen.filter((e) => e.event === 'create' && e.did === did).map((e) => (e as { collection: string }).collection)
    await until('the relay to forward the writes', async () => {
      const a = commitsFor(alice.session!.did)
      const b = commitsFor(bob.session!.did)
      return a.includes('app.bsky.feed.post') && b.includes('app.bsky.graph.follow') && b.includes('app.bsky.feed.like') && b.includes('app.bsky.feed.post')
    })

    // bob's timeline, through the PDS proxy to the AppView, shows alice's post with the image and counts
    const item = await until('the AppView to show the post in the timeline', async () => {
      const tl = await bob.getTimeline()
      const found = tl.data.feed.find((f) => f.post.uri === post.uri)
      return found && found.post.likeCount === 1 && found.post.replyCount === 1 ? found : undefined
    })
    expect(item.post.author.handle).toBe('alice.test')
    expect(item.post.viewer?.like).toBeTruthy()
    const embed = item.post.embed as { $type: string; images: { thumb: string; fullsize: string; alt: string }[] }
    expect(embed.$type).toBe('app.bsky.embed.images#view')
    expect(embed.images[0]!.alt).toBe('a pixel')
    const thumb = await fetch(embed.images[0]!.thumb)
    expect(thumb.status).toBe(200)
    expect(Buffer.from(await thumb.arrayBuffer())).toEqual(PNG)

    const thread = await alice.getPostThread({ uri: post.uri })
    const replies = (thread.data.thread as { replies?: { post: { uri: string } }[] }).replies ?? []
    expect(replies.map((r) => r.post.uri)).toEqual([reply.uri])

    const profile = await alice.getProfile({ actor: 'alice.test' })
    expect(profile.data.followersCount).toBe(1)
    expect(profile.data.postsCount).toBe(1)

    const notifs = await alice.listNotifications()
    expect(new Set(notifs.data.notifications.map((n) => n.reason))).toEqual(new Set(['follow', 'reply', 'like']))
  })
})
