// Build an app on Stratos: @atproto/api against the local network started by `pnpm start` (`stratos dev`).
// Run from the repository root: node examples/quickstart.mjs
// Other ports: STRATOS_PDS_URL, STRATOS_PLC_URL and STRATOS_RELAY_URL (defaults: the dev network's).
import { randomBytes } from 'node:crypto'
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { Firehose, MemoryRunner } from '@atproto/sync'

const PDS = process.env.STRATOS_PDS_URL ?? 'http://127.0.0.1:2583'
const PLC = process.env.STRATOS_PLC_URL ?? 'http://127.0.0.1:2582'
const RELAY = process.env.STRATOS_RELAY_URL ?? 'http://127.0.0.1:2584'

// 1. Listen to the relay's firehose. @atproto/sync checks every commit's signature (with the key in the
//    author's DID document, from our PLC directory) and its MST proof before handing it over.
const seen = []
const firehose = new Firehose({
  service: RELAY.replace(/^http/, 'ws'),
  // plain fetch: the resolver's default one refuses loopback addresses, and the local network is on 127.0.0.1
  idResolver: new IdResolver({ plcUrl: PLC, fetch: globalThis.fetch }),
  runner: new MemoryRunner(),
  excludeIdentity: true,
  excludeAccount: true,
  filterCollections: ['app.bsky.feed.post', 'app.bsky.graph.follow'],
  handleEvent: async (evt) => {
    if (evt.event !== 'create') return
    seen.push(evt.uri.toString())
    console.log(`firehose: ${evt.collection} by ${evt.did} (seq ${evt.seq}, verified)`)
  },
  onError: (err) => console.error('firehose:', err.message),
})
void firehose.start()

// 2. Two accounts (the dev PDS hosts *.test handles and needs no invite code).
const suffix = randomBytes(3).toString('hex')
const password = `pw-${randomBytes(8).toString('hex')}`
const signUp = async (name) => {
  const agent = new AtpAgent({ service: PDS })
  const handle = `${name}${suffix}.test`
  await agent.createAccount({ handle, email: `${name}${suffix}@example.com`, password })
  return { agent, handle, did: agent.session.did }
}
const alice = await signUp('alice')
const bob = await signUp('bob')
console.log(`created ${alice.handle} (${alice.did}) and ${bob.handle} (${bob.did}), password ${password}`)

// 3. Log in again, as an app would on its next start.
const agent = new AtpAgent({ service: PDS })
await agent.login({ identifier: alice.handle, password })

// 4. A post with an image: upload the blob, then reference it from the record.
const png = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
)
const { data: upload } = await agent.uploadBlob(png, { encoding: 'image/png' })
const post = await agent.post({
  text: 'Hello from Stratos!',
  createdAt: new Date().toISOString(),
  embed: { $type: 'app.bsky.embed.images', images: [{ image: upload.blob, alt: 'one pixel' }] },
})
console.log(`posted ${post.uri}`)

// 5. Bob follows Alice.
await bob.agent.follow(alice.did)
console.log(`${bob.handle} follows ${alice.handle}`)

// 6. Bob's timeline: app.bsky.* calls go to the PDS, which proxies them to the AppView (with a service token).
//    The AppView indexes what the relay forwards, so give it a moment.
const deadline = Date.now() + 30_000
let item
while (!item && Date.now() < deadline) {
  const { data } = await bob.agent.getTimeline({ limit: 10 })
  item = data.feed.find((f) => f.post.uri === post.uri)
  if (!item) await new Promise((r) => setTimeout(r, 250))
}
if (!item) throw new Error('the post did not reach the timeline within 30 s')
console.log(`timeline of ${bob.handle}: "${item.post.record.text}" by @${item.post.author.handle}, image ${item.post.embed.images[0].fullsize}`)

// 7. The same post, as it came through the relay's firehose.
while (!seen.includes(post.uri) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
if (!seen.includes(post.uri)) throw new Error('the post did not come through the firehose within 30 s')
console.log('firehose: saw the post')
await firehose.destroy()
