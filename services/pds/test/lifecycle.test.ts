import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { generateKeypair } from '@stratos/core/crypto'
import { decodeFrame, type MessageFrame } from '@stratos/core/stream'
import { startNetwork, xrpc, type TestNetwork } from './_network.js'

const TOKEN_RE = /\b([A-Z2-7]{5}-[A-Z2-7]{5})\b/

describe('account life cycle (AtpAgent against loopback + PLC)', () => {
  let net: TestNetwork

  beforeAll(async () => {
    net = await startNetwork()
  })
  afterAll(async () => {
    await net?.close()
  })

  const newAccount = async (name: string) => {
    const agent = new AtpAgent({ service: net.url })
    await agent.createAccount({ handle: `${name}.test`, email: `${name}@example.com`, password: `${name}-pw` })
    return agent
  }
  /** The token in the last mail to an address (the PDS has no SMTP here, so it logs and keeps it). */
  const tokenMailedTo = (address: string): string => {
    const mail = net.pds.ctx.mailer.lastMailTo(address)
    expect(mail, `a mail to ${address}`).toBeDefined()
    const m = TOKEN_RE.exec(mail!.text)
    expect(m).not.toBeNull()
    return m![1]!
  }
  /** Events the PDS sequenced for a DID after `seq`: [type, body]. */
  const eventsFor = (did: string, after: number) =>
    net.pds.ctx.sequencer.log
      .readRowsAfter(after, 1000)
      .filter((r) => r.did === did)
      .map((r) => {
        const frame = decodeFrame(r.frame) as MessageFrame
        return [frame.t, frame.body] as const
      })
  const plcData = async (did: string) => (await (await fetch(`${net.plc.url}/${did}/data`)).json()) as Record<string, any>

  it('confirms an email address with a mailed token', async () => {
    const carol = await newAccount('carol')
    await carol.com.atproto.server.requestEmailConfirmation()
    const token = tokenMailedTo('carol@example.com')
    const wrong = await xrpc(net.url, 'com.atproto.server.confirmEmail', {
      token: carol.session!.accessJwt,
      body: { email: 'carol@example.com', token: 'AAAAA-AAAAA' },
    })
    expect(wrong.body.error).toBe('InvalidToken')
    const otherAddress = await xrpc(net.url, 'com.atproto.server.confirmEmail', {
      token: carol.session!.accessJwt,
      body: { email: 'someone@example.com', token },
    })
    expect(otherAddress.body.error).toBe('InvalidEmail')
    await carol.com.atproto.server.confirmEmail({ email: 'Carol@Example.com', token: token.toLowerCase() })
    expect((await carol.com.atproto.server.getSession()).data.emailConfirmed).toBe(true)

    // a confirmed address must approve its replacement
    const req = await carol.com.atproto.server.requestEmailUpdate()
    expect(req.data.tokenRequired).toBe(true)
    const updateToken = tokenMailedTo('carol@example.com')
    const noToken = await xrpc(net.url, 'com.atproto.server.updateEmail', {
      token: carol.session!.accessJwt,
      body: { email: 'carol2@example.com' },
    })
    expect(noToken.body.error).toBe('TokenRequired')
    await carol.com.atproto.server.updateEmail({ email: 'carol2@example.com', token: updateToken })
    const session = await carol.com.atproto.server.getSession()
    expect(session.data).toMatchObject({ email: 'carol2@example.com', emailConfirmed: false })
    // an address another account uses is refused
    await newAccount('dave')
    const taken = await xrpc(net.url, 'com.atproto.server.updateEmail', {
      token: carol.session!.accessJwt,
      body: { email: 'dave@example.com' },
    })
    expect(taken.status).toBe(400)
    expect(taken.body.message).toMatch(/already in use/)
  })

  it('resets a forgotten password; the old password and sessions stop working', async () => {
    const erin = await newAccount('erin')
    const oldRefresh = erin.session!.refreshJwt
    await new AtpAgent({ service: net.url }).com.atproto.server.requestPasswordReset({ email: 'erin@example.com' })
    const token = tokenMailedTo('erin@example.com')
    // unknown addresses get the same answer, and no mail
    await new AtpAgent({ service: net.url }).com.atproto.server.requestPasswordReset({ email: 'nobody@example.com' })
    expect(net.pds.ctx.mailer.lastMailTo('nobody@example.com')).toBeUndefined()

    const bad = await xrpc(net.url, 'com.atproto.server.resetPassword', { body: { token: 'BBBBB-BBBBB', password: 'x' } })
    expect(bad.body.error).toBe('InvalidToken')
    await new AtpAgent({ service: net.url }).com.atproto.server.resetPassword({ token, password: 'erin-new-pw' })
    const again = await xrpc(net.url, 'com.atproto.server.resetPassword', { body: { token, password: 'other' } })
    expect(again.body.error).toBe('InvalidToken')

    const oldLogin = await xrpc(net.url, 'com.atproto.server.createSession', { body: { identifier: 'erin.test', password: 'erin-pw' } })
    expect(oldLogin.status).toBe(401)
    await new AtpAgent({ service: net.url }).login({ identifier: 'erin.test', password: 'erin-new-pw' })
    const refresh = await xrpc(net.url, 'com.atproto.server.refreshSession', { method: 'POST', token: oldRefresh })
    expect(refresh.status).toBe(400)
    expect(refresh.body.error).toBe('ExpiredToken')
  })

  it('refuses account-settings changes from an app-password session', async () => {
    const fred = await newAccount('fred')
    const { password } = (await fred.com.atproto.server.createAppPassword({ name: 'client' })).data
    const app = new AtpAgent({ service: net.url })
    await app.login({ identifier: 'fred.test', password })
    const token = app.session!.accessJwt
    const attempts = [
      ['com.atproto.server.requestAccountDelete', undefined],
      ['com.atproto.server.requestEmailUpdate', undefined],
      ['com.atproto.server.updateEmail', { email: 'fred2@example.com' }],
      ['com.atproto.identity.updateHandle', { handle: 'fred2.test' }],
      ['com.atproto.identity.requestPlcOperationSignature', undefined],
      ['com.atproto.server.deactivateAccount', {}],
    ] as const
    for (const [nsid, body] of attempts) {
      const res = await xrpc(net.url, nsid, { method: 'POST', token, body })
      expect(res.status, nsid).toBe(400)
      expect(res.body.error, nsid).toBe('InvalidToken')
    }
    expect((await fred.com.atproto.server.getSession()).data).toMatchObject({ handle: 'fred.test', email: 'fred@example.com', active: true })
  })

  it('changes the handle within the service domain and to a verified custom domain, updating the PLC', async () => {
    const gina = await newAccount('gina')
    const did = gina.session!.did
    const seq = net.pds.ctx.sequencer.lastSeq()
    await gina.com.atproto.identity.updateHandle({ handle: 'gina-renamed.test' })
    expect((await plcData(did)).alsoKnownAs).toEqual(['at://gina-renamed.test'])
    expect((await gina.com.atproto.identity.resolveHandle({ handle: 'gina-renamed.test' })).data.did).toBe(did)
    const oldHandle = await xrpc(net.url, 'com.atproto.identity.resolveHandle', { params: { handle: 'gina.test' } })
    expect(oldHandle.status).toBe(400)
    expect(eventsFor(did, seq)).toEqual([['#identity', expect.objectContaining({ did, handle: 'gina-renamed.test' })]])

    const taken = await xrpc(net.url, 'com.atproto.identity.updateHandle', {
      token: gina.session!.accessJwt,
      body: { handle: 'carol.test' },
    })
    expect(taken.body.error).toBe('HandleNotAvailable')

    // custom domains must point at the DID (DNS TXT or HTTPS well-known); stand in for the resolver
    const resolver = net.pds.ctx.idResolver
    const realResolve = resolver.resolveHandle.bind(resolver)
    resolver.resolveHandle = async (h: string) => (h === 'gina.example.org' ? did : undefined)
    try {
      const unverified = await xrpc(net.url, 'com.atproto.identity.updateHandle', {
        token: gina.session!.accessJwt,
        body: { handle: 'someone-else.example.org' },
      })
      expect(unverified.status).toBe(400)
      expect(unverified.body.message).toMatch(/did not resolve/)
      await gina.com.atproto.identity.updateHandle({ handle: 'gina.example.org' })
    } finally {
      resolver.resolveHandle = realResolve
    }
    expect((await plcData(did)).alsoKnownAs).toEqual(['at://gina.example.org'])
    expect((await gina.com.atproto.server.getSession()).data.handle).toBe('gina.example.org')
  })

  it('deactivates (writes refused, repo hidden, no #commit) and reactivates', async () => {
    const hank = await newAccount('hank')
    const did = hank.session!.did
    const seq = net.pds.ctx.sequencer.lastSeq()
    await hank.com.atproto.server.deactivateAccount({})
    const write = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: hank.session!.accessJwt,
      body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'x', createdAt: new Date().toISOString() } },
    })
    expect(write.body.error).toBe('AccountDeactivated')
    const repo = await xrpc(net.url, 'com.atproto.sync.getRepo', { params: { did } })
    expect(repo.body.error).toBe('RepoDeactivated')
    await hank.com.atproto.server.activateAccount()
    await hank.post({ text: 'back', createdAt: new Date().toISOString() })
    const types = eventsFor(did, seq).map(([t, body]) => (t === '#account' ? `#account:${body.active}` : t))
    expect(types).toEqual(['#account:false', '#identity', '#account:true', '#sync', '#commit'])
  })

  it('signs and submits a PLC operation with an emailed token; the PLC serves the new document', async () => {
    const ivan = await newAccount('ivan')
    const did = ivan.session!.did
    const recommended = (await ivan.com.atproto.identity.getRecommendedDidCredentials()).data
    const before = await plcData(did)
    expect(recommended.rotationKeys).toEqual(before.rotationKeys)
    expect(recommended.verificationMethods).toEqual(before.verificationMethods)
    expect(recommended.alsoKnownAs).toEqual(before.alsoKnownAs)
    expect(recommended.services).toEqual(before.services)

    const noToken = await xrpc(net.url, 'com.atproto.identity.signPlcOperation', { token: ivan.session!.accessJwt, body: {} })
    expect(noToken.status).toBe(400)
    await ivan.com.atproto.identity.requestPlcOperationSignature()
    const token = tokenMailedTo('ivan@example.com')
    const userKey = (await generateKeypair('p256')).did()
    const signed = await ivan.com.atproto.identity.signPlcOperation({ token, rotationKeys: [userKey, ...before.rotationKeys] })
    const op = signed.data.operation as Record<string, any>
    expect(op.rotationKeys).toEqual([userKey, ...before.rotationKeys])
    expect(typeof op.sig).toBe('string')
    // the token is spent
    const reuse = await xrpc(net.url, 'com.atproto.identity.signPlcOperation', { token: ivan.session!.accessJwt, body: { token } })
    expect(reuse.body.error).toBe('InvalidToken')

    // an op that would cut this PDS out is refused before it reaches the PLC
    const dropping = await xrpc(net.url, 'com.atproto.identity.submitPlcOperation', {
      token: ivan.session!.accessJwt,
      body: { operation: { ...op, rotationKeys: [userKey] } },
    })
    expect(dropping.status).toBe(400)
    expect(dropping.body.message).toMatch(/rotation key/)
    const elsewhere = await xrpc(net.url, 'com.atproto.identity.submitPlcOperation', {
      token: ivan.session!.accessJwt,
      body: { operation: { ...op, services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: 'https://other.example.com' } } } },
    })
    expect(elsewhere.body.message).toMatch(/endpoint/)

    const seq = net.pds.ctx.sequencer.lastSeq()
    await ivan.com.atproto.identity.submitPlcOperation({ operation: op })
    expect((await plcData(did)).rotationKeys).toEqual([userKey, ...before.rotationKeys])
    expect(eventsFor(did, seq).map(([t]) => t)).toEqual(['#identity'])
  })

  it('reserves signing keys (the same one again for the same DID)', async () => {
    const agent = new AtpAgent({ service: net.url })
    const a = (await agent.com.atproto.server.reserveSigningKey({ did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' })).data.signingKey
    const b = (await agent.com.atproto.server.reserveSigningKey({ did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' })).data.signingKey
    const c = (await agent.com.atproto.server.reserveSigningKey({})).data.signingKey
    expect(a).toMatch(/^did:key:z/)
    expect(b).toBe(a)
    expect(c).not.toBe(a)
  })

  it('deletes an account with password and mailed token: repo, blobs and login gone, #account deleted', async () => {
    const judy = await newAccount('judy')
    const did = judy.session!.did
    const blob = await judy.uploadBlob(new Uint8Array([1, 2, 3, 4]), { encoding: 'image/png' })
    await judy.post({
      text: 'with image',
      embed: { $type: 'app.bsky.embed.images', images: [{ image: blob.data.blob, alt: '' }] },
      createdAt: new Date().toISOString(),
    })
    expect(net.pds.ctx.actorStore.exists(did)).toBe(true)
    expect(await net.pds.ctx.blobstore.hasStored(did, blob.data.blob.ref.toString())).toBe(true)

    await judy.com.atproto.server.requestAccountDelete()
    const token = tokenMailedTo('judy@example.com')
    const wrongPw = await xrpc(net.url, 'com.atproto.server.deleteAccount', { body: { did, password: 'nope', token } })
    expect(wrongPw.status).toBe(401)
    const wrongToken = await xrpc(net.url, 'com.atproto.server.deleteAccount', { body: { did, password: 'judy-pw', token: 'CCCCC-CCCCC' } })
    expect(wrongToken.body.error).toBe('InvalidToken')

    const seq = net.pds.ctx.sequencer.lastSeq()
    await new AtpAgent({ service: net.url }).com.atproto.server.deleteAccount({ did, password: 'judy-pw', token })
    expect(eventsFor(did, seq)).toEqual([['#account', expect.objectContaining({ did, active: false, status: 'deleted' })]])
    expect(net.pds.ctx.actorStore.exists(did)).toBe(false)
    expect(await net.pds.ctx.blobstore.hasStored(did, blob.data.blob.ref.toString())).toBe(false)
    const status = await xrpc(net.url, 'com.atproto.sync.getRepoStatus', { params: { did } })
    expect(status.body.error).toBe('RepoNotFound')
    const login = await xrpc(net.url, 'com.atproto.server.createSession', { body: { identifier: 'judy.test', password: 'judy-pw' } })
    expect(login.status).toBe(401)
    const session = await xrpc(net.url, 'com.atproto.server.getSession', { token: judy.session!.accessJwt })
    expect(session.status).toBeGreaterThanOrEqual(400)
    // the handle is free again
    await newAccount('judy')
  })
})
