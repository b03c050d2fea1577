import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { verifyRecords, verifyRepoCar } from '@atproto/repo'
import { Firehose, type Event } from '@atproto/sync'
import { startNetwork, xrpc, type TestNetwork } from './_network.js'

const now = () => new Date().toISOString()

/** Records the firehose delivers, flattened to comparable strings. */
function describeEvent(evt: Event): string {
  switch (evt.event) {
    case 'create':
    case 'update':
      return `${evt.event} ${evt.uri.toString()} ${evt.cid.toString()}`
    case 'delete':
      return `delete ${evt.uri.toString()}`
    case 'identity':
      return `identity ${evt.did}`
    case 'account':
      return `account ${evt.did} ${evt.active}`
    case 'sync':
      return `sync ${evt.did} ${evt.rev}`
  }
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 15_000) {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('PDS repo, sync and firehose', () => {
  let net: TestNetwork
  let idResolver: IdResolver
  let alice: AtpAgent
  let bob: AtpAgent
  let firehose: Firehose
  const received: { seq: number; desc: string }[] = []
  const firehoseErrors: Error[] = []
  /** what the firehose must show, in order, as the test writes */
  const expected: string[] = []

  const startFirehose = (cursor: number | undefined) => {
    const fh = new Firehose({
      idResolver,
      service: net.url.replace('http', 'ws'),
      getCursor: () => cursor,
      unauthenticatedCommits: false,
      unauthenticatedHandles: true,
      handleEvent: (evt) => {
        received.push({ seq: evt.seq, desc: describeEvent(evt) })
      },
      onError: (err) => firehoseErrors.push(err),
    })
    void fh.start()
    return fh
  }

  beforeAll(async () => {
    net = await startNetwork()
    // the default fetch refuses IP-literal hosts; the test PLC is on 127.0.0.1
    idResolver = new IdResolver({ plcUrl: net.plc.url, fetch: globalThis.fetch })
    firehose = startFirehose(0)
    alice = new AtpAgent({ service: net.url })
    await alice.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: 'alice-pw' })
    expected.push(`identity ${alice.session!.did}`, `account ${alice.session!.did} true`)
    bob = new AtpAgent({ service: net.url })
    await bob.createAccount({ handle: 'bob.test', email: 'bob@example.com', password: 'bob-pw' })
    expected.push(`identity ${bob.session!.did}`, `account ${bob.session!.did} true`)
  })
  afterAll(async () => {
    await firehose?.destroy()
    await net?.close()
  })

  it('writes every kind of app.bsky record and reads them back', async () => {
    const did = alice.session!.did
    const repo = did
    const create = async (collection: string, record: Record<string, unknown>, rkey?: string) => {
      const res = await alice.com.atproto.repo.createRecord({ repo, collection, rkey, record: { $type: collection, ...record } })
      expect(res.data.validationStatus).toBe('valid')
      expected.push(`create ${res.data.uri} ${res.data.cid}`)
      return res.data
    }
    const post = await create('app.bsky.feed.post', { text: 'hello world', createdAt: now(), langs: ['en'] })
    const bobPost = await bob.com.atproto.repo.createRecord({
      repo: bob.session!.did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'hi from bob', createdAt: now() },
    })
    expected.push(`create ${bobPost.data.uri} ${bobPost.data.cid}`)
    const strong = { uri: bobPost.data.uri, cid: bobPost.data.cid }
    await create('app.bsky.feed.post', { text: 'a reply', createdAt: now(), reply: { root: strong, parent: strong } })
    await create('app.bsky.feed.like', { subject: strong, createdAt: now() })
    await create('app.bsky.feed.repost', { subject: strong, createdAt: now() })
    await create('app.bsky.graph.follow', { subject: bob.session!.did, createdAt: now() })
    await create('app.bsky.actor.profile', { displayName: 'Alice', description: 'testing' }, 'self')
    const list = await create('app.bsky.graph.list', { purpose: 'app.bsky.graph.defs#curatelist', name: 'friends', createdAt: now() })
    await create('app.bsky.graph.listitem', { subject: bob.session!.did, list: list.uri, createdAt: now() })
    await create('app.bsky.feed.threadgate', { post: post.uri, allow: [{ $type: 'app.bsky.feed.threadgate#mentionRule' }], createdAt: now() }, post.uri.split('/').pop())
    await create('app.bsky.feed.postgate', { post: post.uri, embeddingRules: [{ $type: 'app.bsky.feed.postgate#disableRule' }], createdAt: now() }, post.uri.split('/').pop())
    await create('app.bsky.feed.generator', { did: 'did:web:feeds.example.com', displayName: 'My feed', createdAt: now() })
    await create('app.bsky.graph.starterpack', { name: 'Starter', list: list.uri, createdAt: now() })
    await create('app.bsky.graph.block', { subject: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz', createdAt: now() })
    await create('app.bsky.graph.listblock', { subject: list.uri, createdAt: now() })
    await create('app.bsky.actor.status', { status: 'app.bsky.actor.status#live', createdAt: now() }, 'self')
    await create('chat.bsky.actor.declaration', { allowIncoming: 'following' }, 'self')

    const got = await alice.com.atproto.repo.getRecord({ repo: 'alice.test', collection: 'app.bsky.feed.post', rkey: post.uri.split('/').pop()! })
    expect(got.data.value).toMatchObject({ text: 'hello world' })
    expect(got.data.cid).toBe(post.cid)
    const described = await alice.com.atproto.repo.describeRepo({ repo: 'alice.test' })
    expect(described.data.handleIsCorrect).toBe(true)
    expect(described.data.collections).toContain('app.bsky.graph.listitem')
  })

  it('refuses invalid records with a lexicon error and reports unknown collections', async () => {
    const repo = alice.session!.did
    const bad = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: alice.session!.accessJwt,
      body: { repo, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', createdAt: now() } },
    })
    expect(bad.status).toBe(400)
    expect(bad.body.error).toBe('InvalidRequest')
    expect(bad.body.message).toMatch(/Invalid app.bsky.feed.post record.*text/)
    const tooLong = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: alice.session!.accessJwt,
      body: { repo, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'x'.repeat(3001), createdAt: now() } },
    })
    expect(tooLong.status).toBe(400)
    const unknown = await alice.com.atproto.repo.createRecord({
      repo,
      collection: 'com.example.custom',
      record: { $type: 'com.example.custom', anything: 'goes' },
    })
    expect(unknown.data.validationStatus).toBe('unknown')
    expected.push(`create ${unknown.data.uri} ${unknown.data.cid}`)
    const strict = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: alice.session!.accessJwt,
      body: { repo, collection: 'com.example.custom', validate: true, record: { $type: 'com.example.custom' } },
    })
    expect(strict.status).toBe(400)
  })

  it('puts, lists with cursor and reverse, deletes', async () => {
    const repo = alice.session!.did
    const rkeys: string[] = []
    for (let i = 0; i < 5; i++) {
      const rkey = `3kaaaaaaaaa${String.fromCharCode(97 + i)}2`
      const res = await alice.com.atproto.repo.putRecord({
        repo,
        collection: 'app.bsky.feed.post',
        rkey,
        record: { $type: 'app.bsky.feed.post', text: `post ${i}`, createdAt: now() },
      })
      expected.push(`create ${res.data.uri} ${res.data.cid}`)
      rkeys.push(rkey)
    }
    const updated = await alice.com.atproto.repo.putRecord({
      repo,
      collection: 'app.bsky.feed.post',
      rkey: rkeys[0]!,
      record: { $type: 'app.bsky.feed.post', text: 'post 0, edited', createdAt: now() },
    })
    expected.push(`update ${updated.data.uri} ${updated.data.cid}`)

    const all: string[] = []
    let cursor: string | undefined
    do {
      const page = await alice.com.atproto.repo.listRecords({ repo, collection: 'app.bsky.feed.post', limit: 2, cursor })
      all.push(...page.data.records.map((r) => r.uri.split('/').pop()!))
      cursor = page.data.cursor
    } while (cursor)
    const sorted = [...all].sort()
    expect(all).toEqual([...sorted].reverse())
    expect(all).toEqual(expect.arrayContaining(rkeys))
    const reversed = await alice.com.atproto.repo.listRecords({ repo, collection: 'app.bsky.feed.post', limit: 100, reverse: true })
    expect(reversed.data.records.map((r) => r.uri.split('/').pop())).toEqual(sorted)

    await alice.com.atproto.repo.deleteRecord({ repo, collection: 'app.bsky.feed.post', rkey: rkeys[4]! })
    expected.push(`delete at://${repo}/app.bsky.feed.post/${rkeys[4]}`)
    const gone = await xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo, collection: 'app.bsky.feed.post', rkey: rkeys[4]! } })
    expect(gone.status).toBe(400)
    expect(gone.body.error).toBe('RecordNotFound')
  })

  it('applies batches atomically and refuses a stale swapCommit with InvalidSwap', async () => {
    const repo = alice.session!.did
    const before = await alice.com.atproto.sync.getLatestCommit({ did: repo })
    const res = await alice.com.atproto.repo.applyWrites({
      repo,
      writes: [
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', rkey: '3kbbbbbbbbbb2', value: { $type: 'app.bsky.feed.post', text: 'batch 1', createdAt: now() } },
        { $type: 'com.atproto.repo.applyWrites#update', collection: 'app.bsky.feed.post', rkey: '3kaaaaaaaaab2', value: { $type: 'app.bsky.feed.post', text: 'batch edit', createdAt: now() } },
        { $type: 'com.atproto.repo.applyWrites#delete', collection: 'app.bsky.feed.post', rkey: '3kaaaaaaaaac2' },
      ],
      swapCommit: before.data.cid,
    })
    const results = res.data.results as { $type: string; uri?: string; cid?: string }[]
    expect(results.map((r) => r.$type)).toEqual([
      'com.atproto.repo.applyWrites#createResult',
      'com.atproto.repo.applyWrites#updateResult',
      'com.atproto.repo.applyWrites#deleteResult',
    ])
    expected.push(`create ${results[0]!.uri} ${results[0]!.cid}`, `update ${results[1]!.uri} ${results[1]!.cid}`, `delete at://${repo}/app.bsky.feed.post/3kaaaaaaaaac2`)

    const stale = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: alice.session!.accessJwt,
      body: { repo, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'x', createdAt: now() }, swapCommit: before.data.cid },
    })
    expect(stale.status).toBe(400)
    expect(stale.body.error).toBe('InvalidSwap')
    const wrongRecord = await xrpc(net.url, 'com.atproto.repo.putRecord', {
      token: alice.session!.accessJwt,
      body: { repo, collection: 'app.bsky.feed.post', rkey: '3kbbbbbbbbbb2', record: { $type: 'app.bsky.feed.post', text: 'x', createdAt: now() }, swapRecord: results[1]!.cid },
    })
    expect(wrongRecord.body.error).toBe('InvalidSwap')
    const tooMany = await xrpc(net.url, 'com.atproto.repo.applyWrites', {
      token: alice.session!.accessJwt,
      body: {
        repo,
        writes: Array.from({ length: 201 }, () => ({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: { $type: 'app.bsky.feed.post', text: 'x', createdAt: now() } })),
      },
    })
    expect(tooMany.status).toBe(400)
    const after = await alice.com.atproto.sync.getLatestCommit({ did: repo })
    expect(after.data.rev).toBe(res.data.commit!.rev)
  })

  it('uploads a blob, keeps it private until referenced, then serves it with safe headers', async () => {
    const repo = alice.session!.did
    const bytes = new Uint8Array(2048).map((_, i) => (i * 7) % 256)
    const up = await alice.com.atproto.repo.uploadBlob(bytes, { encoding: 'image/png' })
    const cid = up.data.blob.ref.toString()
    expect(up.data.blob.size).toBe(2048)
    expect(up.data.blob.mimeType).toBe('image/png')
    const early = await fetch(`${net.url}/xrpc/com.atproto.sync.getBlob?did=${repo}&cid=${cid}`)
    expect(early.status).toBe(400)
    const res = await alice.com.atproto.repo.createRecord({
      repo,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'with a picture', createdAt: now(), embed: { $type: 'app.bsky.embed.images', images: [{ image: up.data.blob, alt: 'pattern' }] } },
    })
    expected.push(`create ${res.data.uri} ${res.data.cid}`)
    const blob = await fetch(`${net.url}/xrpc/com.atproto.sync.getBlob?did=${repo}&cid=${cid}`)
    expect(blob.status).toBe(200)
    expect(blob.headers.get('content-type')).toBe('image/png')
    expect(blob.headers.get('x-content-type-options')).toBe('nosniff')
    expect(blob.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox")
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(bytes)
    const listed = await alice.com.atproto.sync.listBlobs({ did: repo })
    expect(listed.data.cids).toContain(cid)
    // a blob another account uploaded cannot be referenced
    const bobUp = await bob.com.atproto.repo.uploadBlob(new Uint8Array([1, 2, 3]), { encoding: 'image/jpeg' })
    const stolen = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: alice.session!.accessJwt,
      body: {
        repo,
        collection: 'app.bsky.feed.post',
        record: { $type: 'app.bsky.feed.post', text: 'x', createdAt: now(), embed: { $type: 'app.bsky.embed.images', images: [{ image: { $type: 'blob', ref: { $link: bobUp.data.blob.ref.toString() }, mimeType: 'image/jpeg', size: 3 }, alt: '' }] } },
      },
    })
    expect(stolen.status).toBe(400)
    expect(stolen.body.error).toBe('BlobNotFound')
  })

  it('refuses writes to another account\'s repo', async () => {
    const res = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: bob.session!.accessJwt,
      body: { repo: alice.session!.did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'intruder', createdAt: now() } },
    })
    expect(res.status).toBe(403)
    const del = await xrpc(net.url, 'com.atproto.repo.deleteRecord', {
      token: bob.session!.accessJwt,
      body: { repo: 'alice.test', collection: 'app.bsky.actor.profile', rkey: 'self' },
    })
    expect(del.status).toBe(403)
    const profile = await alice.com.atproto.repo.getRecord({ repo: 'alice.test', collection: 'app.bsky.actor.profile', rkey: 'self' })
    expect(profile.data.value).toMatchObject({ displayName: 'Alice' })
  })

  it('serves a repo CAR that verifies against the DID document key and holds exactly the listed records', async () => {
    const did = alice.session!.did
    const atproto = await idResolver.did.resolveAtprotoData(did)
    const car = await alice.com.atproto.sync.getRepo({ did })
    const verified = await verifyRepoCar(new Uint8Array(car.data), did, atproto.signingKey)
    const inCar = verified.creates.map((c) => `at://${did}/${c.collection}/${c.rkey} ${c.cid.toString()}`).sort()

    const listed: string[] = []
    const described = await alice.com.atproto.repo.describeRepo({ repo: did })
    for (const collection of described.data.collections) {
      let cursor: string | undefined
      do {
        const page = await alice.com.atproto.repo.listRecords({ repo: did, collection, limit: 100, cursor })
        listed.push(...page.data.records.map((r) => `${r.uri} ${r.cid}`))
        cursor = page.data.cursor
      } while (cursor)
    }
    expect(inCar).toEqual(listed.sort())
    expect(inCar.length).toBeGreaterThan(15)

    const head = await alice.com.atproto.sync.getLatestCommit({ did })
    expect(verified.commit.cid.toString()).toBe(head.data.cid)
    const status = await alice.com.atproto.sync.getRepoStatus({ did })
    expect(status.data).toEqual({ did, active: true, rev: head.data.rev })
    const repos = await alice.com.atproto.sync.listRepos({})
    expect(repos.data.repos.find((r) => r.did === did)).toMatchObject({ head: head.data.cid, rev: head.data.rev, active: true })

    // record proof: verifies for a present record and for an absent one
    const proof = await alice.com.atproto.sync.getRecord({ did, collection: 'app.bsky.actor.profile', rkey: 'self' })
    const claims = await verifyRecords(new Uint8Array(proof.data), did, atproto.signingKey)
    expect(claims[0]).toMatchObject({ collection: 'app.bsky.actor.profile', rkey: 'self' })
    expect(claims[0]!.record).toMatchObject({ displayName: 'Alice' })
  })

  it('delivers every event to a verifying @atproto/sync Firehose, in order, and resumes after a restart', async () => {
    await waitFor(() => received.length >= expected.length, `${expected.length} firehose events (got ${received.length})`)
    expect(firehoseErrors).toEqual([])
    expect(received.map((r) => r.desc)).toEqual(expected)
    const seqs = received.map((r) => r.seq)
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThanOrEqual(seqs[i - 1]!)

    await firehose.destroy()
    const lastSeq = net.pds.ctx.sequencer.lastSeq()
    expect(Math.max(...seqs)).toBe(lastSeq)
    const seen = received.length

    await net.restartPds()
    const again = new AtpAgent({ service: net.url })
    await again.login({ identifier: 'alice.test', password: 'alice-pw' })
    const more: string[] = []
    for (let i = 0; i < 3; i++) {
      const res = await again.com.atproto.repo.createRecord({
        repo: again.session!.did,
        collection: 'app.bsky.feed.post',
        record: { $type: 'app.bsky.feed.post', text: `after restart ${i}`, createdAt: now() },
      })
      more.push(`create ${res.data.uri} ${res.data.cid}`)
    }
    firehose = startFirehose(lastSeq)
    await waitFor(() => received.length >= seen + more.length, 'events after restart')
    await new Promise((r) => setTimeout(r, 200))
    const resumed = received.slice(seen)
    expect(resumed.map((r) => r.desc)).toEqual(more)
    expect(resumed.map((r) => r.seq)).toEqual([lastSeq + 1, lastSeq + 2, lastSeq + 3])
    expect(firehoseErrors).toEqual([])
  })
})
