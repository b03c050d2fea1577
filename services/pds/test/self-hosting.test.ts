import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { startNetwork, type TestNetwork } from './_network.js'

describe('what a self-hosted PDS behind Caddy needs', () => {
  let net: TestNetwork
  let alice: AtpAgent
  let reports: http.Server
  const reportRequests: { url: string; auth: string; body: string }[] = []

  beforeAll(async () => {
    // a report (moderation) service that records what reaches it
    reports = http.createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        reportRequests.push({ url: req.url ?? '', auth: String(req.headers.authorization ?? ''), body })
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ id: 1, reasonType: 'com.atproto.moderation.defs#reasonSpam', subject: JSON.parse(body).subject, reportedBy: 'did:plc:x', createdAt: new Date().toISOString() }))
      })
    })
    await new Promise<void>((r) => reports.listen(0, '127.0.0.1', r))
    net = await startNetwork({
      PDS_SERVICE_HANDLE_DOMAINS: '.pds.test',
      PDS_REPORT_SERVICE_URL: `http://127.0.0.1:${(reports.address() as AddressInfo).port}`,
      PDS_REPORT_SERVICE_DID: 'did:web:mod.example.com',
    })
    alice = new AtpAgent({ service: net.url })
    await alice.createAccount({ handle: 'alice.pds.test', email: 'alice@example.com', password: 'alice-pw' })
  })
  afterAll(async () => {
    await net?.close()
    await new Promise((r) => reports?.close(r))
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

  it('createReport goes to the configured report service with a service token made out to its bare DID (as @atproto/ozone requires)', async () => {
    const res = await alice.com.atproto.moderation.createReport({
      reasonType: 'com.atproto.moderation.defs#reasonSpam',
      subject: { $type: 'com.atproto.admin.defs#repoRef', did: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz' },
    })
    expect(res.data.id).toBe(1)
    expect(reportRequests).toHaveLength(1)
    expect(reportRequests[0]!.url).toBe('/xrpc/com.atproto.moderation.createReport')
    const jwt = reportRequests[0]!.auth.replace(/^Bearer /, '')
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { iss: string; aud: string; lxm: string }
    expect(payload).toMatchObject({ iss: alice.session!.did, aud: 'did:web:mod.example.com', lxm: 'com.atproto.moderation.createReport' })
  })
})
