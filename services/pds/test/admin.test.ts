import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { decodeFrame, type MessageFrame } from '@stratos/core/stream'
import { startNetwork, xrpc, type TestNetwork } from './_network.js'

describe('admin API (basic auth admin:PDS_ADMIN_PASSWORD)', () => {
  let net: TestNetwork
  let admin: AtpAgent
  let alice: AtpAgent
  let did: string
  const adminHeaders = () => ({ authorization: `Basic ${Buffer.from(`admin:${net.env.PDS_ADMIN_PASSWORD}`).toString('base64')}` })

  beforeAll(async () => {
    net = await startNetwork()
    admin = new AtpAgent({ service: net.url })
    admin.setHeader('authorization', adminHeaders().authorization)
    alice = new AtpAgent({ service: net.url })
    await alice.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: 'alice-pw' })
    did = alice.session!.did
  })
  afterAll(async () => {
    await net?.close()
  })

  const eventsFor = (d: string, after: number) =>
    net.pds.ctx.sequencer.log
      .readRowsAfter(after, 1000)
      .filter((r) => r.did === d)
      .map((r) => {
        const frame = decodeFrame(r.frame) as MessageFrame
        return [frame.t, frame.body] as const
      })

  it('refuses requests without the admin password', async () => {
    const none = await xrpc(net.url, 'com.atproto.admin.getAccountInfo', { params: { did } })
    expect(none.status).toBe(401)
    const wrong = await xrpc(net.url, 'com.atproto.admin.getAccountInfo', {
      params: { did },
      headers: { authorization: `Basic ${Buffer.from('admin:nope').toString('base64')}` },
    })
    expect(wrong.status).toBe(401)
    const user = await xrpc(net.url, 'com.atproto.admin.getAccountInfo', { params: { did }, token: alice.session!.accessJwt })
    expect(user.status).toBe(401)
  })

  it('shows account info', async () => {
    const info = await admin.com.atproto.admin.getAccountInfo({ did })
    expect(info.data).toMatchObject({ did, handle: 'alice.test', email: 'alice@example.com', invitesDisabled: false })
    const infos = await admin.com.atproto.admin.getAccountInfos({ dids: [did, 'did:plc:unknownunknownunknown12'] })
    expect(infos.data.infos.map((i) => i.did)).toEqual([did])
    const missing = await xrpc(net.url, 'com.atproto.admin.getAccountInfo', { params: { did: 'did:plc:unknownunknownunknown12' }, headers: adminHeaders() })
    expect(missing.status).toBe(400)
  })

  it('takes an account down: content hidden, login refused, #account takendown; then restores it', async () => {
    const post = await alice.post({ text: 'soon hidden', createdAt: new Date().toISOString() })
    const rkey = post.uri.split('/').pop()!
    const seq = net.pds.ctx.sequencer.lastSeq()
    const subject = { $type: 'com.atproto.admin.defs#repoRef', did }
    const res = await admin.com.atproto.admin.updateSubjectStatus({ subject, takedown: { applied: true, ref: 'case-1' } })
    expect(res.data.takedown).toEqual({ applied: true, ref: 'case-1' })
    const status = await admin.com.atproto.admin.getSubjectStatus({ did })
    expect(status.data.takedown).toEqual({ applied: true, ref: 'case-1' })

    expect((await xrpc(net.url, 'com.atproto.sync.getRepo', { params: { did } })).body.error).toBe('RepoTakendown')
    expect((await xrpc(net.url, 'com.atproto.sync.getLatestCommit', { params: { did } })).body.error).toBe('RepoTakendown')
    expect((await xrpc(net.url, 'com.atproto.sync.getRepoStatus', { params: { did } })).body).toEqual({ did, active: false, status: 'takendown' })
    const record = await xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: did, collection: 'app.bsky.feed.post', rkey } })
    expect(record.body.error).toBe('RecordNotFound')
    const login = await xrpc(net.url, 'com.atproto.server.createSession', { body: { identifier: 'alice.test', password: 'alice-pw' } })
    expect(login.status).toBe(401)
    expect(login.body.error).toBe('AccountTakedown')
    const write = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: alice.session!.accessJwt,
      body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'x', createdAt: new Date().toISOString() } },
    })
    expect(write.status).toBe(401)
    const oldRefresh = alice.session!.refreshJwt
    const refresh = await xrpc(net.url, 'com.atproto.server.refreshSession', { method: 'POST', token: oldRefresh })
    expect(refresh.body.error).toBe('AccountTakedown')
    expect(eventsFor(did, seq)).toEqual([['#account', expect.objectContaining({ did, active: false, status: 'takendown' })]])

    await admin.com.atproto.admin.updateSubjectStatus({ subject, takedown: { applied: false } })
    expect((await admin.com.atproto.admin.getSubjectStatus({ did })).data.takedown).toEqual({ applied: false })
    expect((await xrpc(net.url, 'com.atproto.sync.getRepoStatus', { params: { did } })).body.active).toBe(true)
    expect(eventsFor(did, seq).map(([t, b]) => `${t}:${b.active}`)).toEqual(['#account:false', '#account:true'])
    // sessions from before the takedown stay ended
    const stale = await xrpc(net.url, 'com.atproto.server.refreshSession', { method: 'POST', token: oldRefresh })
    expect(stale.body.error).toBe('ExpiredToken')
    await alice.login({ identifier: 'alice.test', password: 'alice-pw' })
    const back = await alice.com.atproto.repo.getRecord({ repo: did, collection: 'app.bsky.feed.post', rkey })
    expect(back.data.uri).toBe(post.uri)
  })

  it('takes down a single record and a single blob', async () => {
    const blob = await alice.uploadBlob(new Uint8Array([9, 8, 7, 6, 5]), { encoding: 'image/jpeg' })
    const post = await alice.post({
      text: 'record takedown',
      embed: { $type: 'app.bsky.embed.images', images: [{ image: blob.data.blob, alt: 'x' }] },
      createdAt: new Date().toISOString(),
    })
    const rkey = post.uri.split('/').pop()!
    const strongRef = { $type: 'com.atproto.repo.strongRef', uri: post.uri, cid: post.cid }
    await admin.com.atproto.admin.updateSubjectStatus({ subject: strongRef, takedown: { applied: true, ref: 'r-1' } })
    expect((await admin.com.atproto.admin.getSubjectStatus({ uri: post.uri })).data).toMatchObject({
      subject: { uri: post.uri, cid: post.cid },
      takedown: { applied: true, ref: 'r-1' },
    })
    const hidden = await xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: did, collection: 'app.bsky.feed.post', rkey } })
    expect(hidden.body.error).toBe('RecordNotFound')
    const list = await alice.com.atproto.repo.listRecords({ repo: did, collection: 'app.bsky.feed.post' })
    expect(list.data.records.map((r) => r.uri)).not.toContain(post.uri)

    const cid = blob.data.blob.ref.toString()
    expect((await xrpc(net.url, 'com.atproto.sync.getBlob', { params: { did, cid } })).status).toBe(200)
    const blobRef = { $type: 'com.atproto.admin.defs#repoBlobRef', did, cid }
    await admin.com.atproto.admin.updateSubjectStatus({ subject: blobRef, takedown: { applied: true } })
    expect((await admin.com.atproto.admin.getSubjectStatus({ did, blob: cid })).data.takedown?.applied).toBe(true)
    expect((await xrpc(net.url, 'com.atproto.sync.getBlob', { params: { did, cid } })).body.error).toBe('BlobNotFound')

    await admin.com.atproto.admin.updateSubjectStatus({ subject: strongRef, takedown: { applied: false } })
    await admin.com.atproto.admin.updateSubjectStatus({ subject: blobRef, takedown: { applied: false } })
    expect((await alice.com.atproto.repo.getRecord({ repo: did, collection: 'app.bsky.feed.post', rkey })).data.cid).toBe(post.cid)
    expect((await xrpc(net.url, 'com.atproto.sync.getBlob', { params: { did, cid } })).status).toBe(200)
  })

  it('updates handle, email and password of an account', async () => {
    const bob = new AtpAgent({ service: net.url })
    await bob.createAccount({ handle: 'bob.test', email: 'bob@example.com', password: 'bob-pw' })
    const bobDid = bob.session!.did
    const seq = net.pds.ctx.sequencer.lastSeq()
    // admins may hand out reserved names
    await admin.com.atproto.admin.updateAccountHandle({ did: bobDid, handle: 'support.test' })
    const plc = (await (await fetch(`${net.plc.url}/${bobDid}/data`)).json()) as { alsoKnownAs: string[] }
    expect(plc.alsoKnownAs).toEqual(['at://support.test'])
    expect(eventsFor(bobDid, seq)).toEqual([['#identity', expect.objectContaining({ handle: 'support.test' })]])
    const taken = await xrpc(net.url, 'com.atproto.admin.updateAccountHandle', { headers: adminHeaders(), body: { did: bobDid, handle: 'alice.test' } })
    expect(taken.body.error).toBe('HandleNotAvailable')

    await admin.com.atproto.admin.updateAccountEmail({ account: 'support.test', email: 'bob-new@example.com' })
    expect((await admin.com.atproto.admin.getAccountInfo({ did: bobDid })).data.email).toBe('bob-new@example.com')

    await admin.com.atproto.admin.updateAccountPassword({ did: bobDid, password: 'bob-new-pw' })
    const old = await xrpc(net.url, 'com.atproto.server.createSession', { body: { identifier: 'support.test', password: 'bob-pw' } })
    expect(old.status).toBe(401)
    await new AtpAgent({ service: net.url }).login({ identifier: 'bob-new@example.com', password: 'bob-new-pw' })
  })

  it('manages invite codes', async () => {
    const created = await admin.com.atproto.server.createInviteCodes({ codeCount: 2, useCount: 1, forAccounts: [did] })
    const codes = created.data.codes[0]!.codes
    const listed = await admin.com.atproto.admin.getInviteCodes({})
    expect(listed.data.codes.map((c) => c.code).sort()).toEqual([...codes].sort())
    expect(listed.data.codes[0]).toMatchObject({ available: 1, disabled: false, forAccount: did, uses: [] })
    const page = await admin.com.atproto.admin.getInviteCodes({ limit: 1 })
    expect(page.data.codes).toHaveLength(1)
    const next = await admin.com.atproto.admin.getInviteCodes({ limit: 1, cursor: page.data.cursor })
    expect(next.data.codes[0]!.code).not.toBe(page.data.codes[0]!.code)

    await admin.com.atproto.admin.disableInviteCodes({ codes: [codes[0]!] })
    const after = await admin.com.atproto.admin.getInviteCodes({})
    expect(after.data.codes.find((c) => c.code === codes[0])!.disabled).toBe(true)
    expect(after.data.codes.find((c) => c.code === codes[1])!.disabled).toBe(false)
    expect((await admin.com.atproto.admin.getAccountInfo({ did })).data.invites?.length).toBe(2)

    await admin.com.atproto.admin.disableAccountInvites({ account: did })
    expect((await admin.com.atproto.admin.getAccountInfo({ did })).data.invitesDisabled).toBe(true)
    await admin.com.atproto.admin.enableAccountInvites({ account: did })
    expect((await admin.com.atproto.admin.getAccountInfo({ did })).data.invitesDisabled).toBe(false)
  })

  it('sends an email to an account', async () => {
    const res = await admin.com.atproto.admin.sendEmail({ recipientDid: did, senderDid: 'did:plc:moderator', content: 'Hello from the admins', subject: 'Notice' })
    expect(res.data.sent).toBe(true)
    expect(net.pds.ctx.mailer.lastMailTo('alice@example.com')).toEqual({ to: 'alice@example.com', subject: 'Notice', text: 'Hello from the admins' })
  })

  it('deletes an account', async () => {
    const carol = new AtpAgent({ service: net.url })
    await carol.createAccount({ handle: 'carol.test', email: 'carol@example.com', password: 'carol-pw' })
    const carolDid = carol.session!.did
    const seq = net.pds.ctx.sequencer.lastSeq()
    await admin.com.atproto.admin.deleteAccount({ did: carolDid })
    expect(eventsFor(carolDid, seq)).toEqual([['#account', expect.objectContaining({ active: false, status: 'deleted' })]])
    expect((await xrpc(net.url, 'com.atproto.sync.getRepo', { params: { did: carolDid } })).body.error).toBe('RepoNotFound')
    const info = await xrpc(net.url, 'com.atproto.admin.getAccountInfo', { params: { did: carolDid }, headers: adminHeaders() })
    expect(info.status).toBe(400)
  })
})
