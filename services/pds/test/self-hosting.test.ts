import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { startNetwork, type TestNetwork } from './_network.js'

describe('what a self-hosted PDS behind Caddy needs', () => {
  let net: TestNetwork
  let alice: AtpAgent

  beforeAll(async () => {
    net = await startNetwork({ PDS_SERVICE_HANDLE_DOMAINS: '.pds.test' })
    alice = new AtpAgent({ service: net.url })
    await alice.createAccount({ handle: 'alice.pds.test', email: 'alice@example.com', password: 'alice-pw' })
  })
  afterAll(async () => {
    await net?.close()
  })

  const tlsCheck = async (query: string) => {
    const res = await fetch(`${net.url}/tls-check${query}`)
    return { status: res.status, body: (await res.json()) as { error?: string; message?: string; success?: boolean } }
  }

  it('GET /tls-check answers 200 only for its host name and existing handles (Caddy on-demand TLS ask)', async () => {
    expect(await tlsCheck('?domain=127.0.0.1')).toEqual({ status: 200, body: { success: true } })
    expect(await tlsCheck('?domain=alice.pds.test')).toEqual({ status: 200, body: { success: true } })
    expect(await tlsCheck('?domain=ALICE.pds.test')).toMatchObject({ status: 200 })
    const unknown = await tlsCheck('?domain=bob.pds.test')
    expect(unknown.status).toBe(404)
    expect(unknown.body).toMatchObject({ error: 'NotFound' })
    const foreign = await tlsCheck('?domain=www.example.com')
    expect(foreign.status).toBe(400)
    expect(foreign.body).toMatchObject({ error: 'InvalidRequest' })
    // the bare handle domain is no handle
    expect((await tlsCheck('?domain=pds.test')).status).toBe(400)
    expect((await tlsCheck('')).status).toBe(400)
    expect((await tlsCheck('?domain=')).body).toMatchObject({ error: 'InvalidRequest', message: expect.any(String) })
  })

  it('a deactivated account keeps its certificate; a deleted one does not', async () => {
    const bob = new AtpAgent({ service: net.url })
    await bob.createAccount({ handle: 'bob.pds.test', email: 'bob@example.com', password: 'bob-pw-bob' })
    expect((await tlsCheck('?domain=bob.pds.test')).status).toBe(200)
    await bob.com.atproto.server.deactivateAccount({})
    expect((await tlsCheck('?domain=bob.pds.test')).status).toBe(200)
    const admin = new AtpAgent({ service: net.url })
    admin.setHeader('authorization', `Basic ${Buffer.from(`admin:${net.env.PDS_ADMIN_PASSWORD}`).toString('base64')}`)
    await admin.com.atproto.admin.deleteAccount({ did: bob.session!.did })
    expect((await tlsCheck('?domain=bob.pds.test')).status).toBe(404)
  })

  it('createRecord without $type takes it from the collection, as the reference PDS does', async () => {
    const res = await alice.com.atproto.repo.createRecord({
      repo: alice.session!.did,
      collection: 'app.bsky.feed.post',
      record: { text: 'no $type given', createdAt: new Date().toISOString() },
    })
    const got = await alice.com.atproto.repo.getRecord({ repo: alice.session!.did, collection: 'app.bsky.feed.post', rkey: res.data.uri.split('/').pop()! })
    expect(got.data.value).toMatchObject({ $type: 'app.bsky.feed.post', text: 'no $type given' })
    expect(got.data.cid).toBe(res.data.cid)
    // a $type naming another collection is still refused
    await expect(
      alice.com.atproto.repo.createRecord({
        repo: alice.session!.did,
        collection: 'app.bsky.feed.post',
        record: { $type: 'app.bsky.feed.like', text: 'x', createdAt: new Date().toISOString() },
      }),
    ).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/Invalid \$type/) })
  })
})
