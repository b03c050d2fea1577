import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { generateKeypair } from '@stratos/core/crypto'
import { SessionTokens, AuthScope } from '../src/account/tokens.js'
import { startNetwork, xrpc, type TestNetwork } from './_network.js'

describe('PDS accounts and sessions (AtpAgent against loopback + PLC)', () => {
  let net: TestNetwork
  let alice: AtpAgent
  let recoveryKey: string

  beforeAll(async () => {
    net = await startNetwork()
    recoveryKey = (await generateKeypair('p256')).did()
    alice = new AtpAgent({ service: net.url })
    await alice.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: 'alice-pw', recoveryKey })
  })
  afterAll(async () => {
    await net?.close()
  })

  it('describes the server', async () => {
    const res = await new AtpAgent({ service: net.url }).com.atproto.server.describeServer()
    expect(res.data.did).toBe('did:web:127.0.0.1')
    expect(res.data.availableUserDomains).toEqual(['.test'])
    expect(res.data.inviteCodeRequired).toBe(false)
  })

  it('creates a did:plc with the recovery key above the PDS rotation key', async () => {
    const did = alice.session!.did
    expect(did).toMatch(/^did:plc:[a-z2-7]{24}$/)
    const data = (await (await fetch(`${net.plc.url}/${did}/data`)).json()) as Record<string, any>
    expect(data.rotationKeys).toEqual([recoveryKey, net.pds.ctx.plcRotationKey.did()])
    expect(data.alsoKnownAs).toEqual(['at://alice.test'])
    expect(data.services.atproto_pds.endpoint).toBe(net.cfg.service.publicUrl)
    const key = await net.pds.ctx.accounts.getSigningKey(did)
    expect(data.verificationMethods.atproto).toBe(key!.did())
    const resolved = await alice.com.atproto.identity.resolveHandle({ handle: 'alice.test' })
    expect(resolved.data.did).toBe(did)
  })

  it('refuses bad and taken handles, and a taken email', async () => {
    const short = await xrpc(net.url, 'com.atproto.server.createAccount', {
      body: { handle: 'ab.test', email: 'x@example.com', password: 'pw' },
    })
    expect(short.status).toBe(400)
    expect(short.body).toEqual({ error: 'InvalidHandle', message: 'Handle too short' })
    const reserved = await xrpc(net.url, 'com.atproto.server.createAccount', {
      body: { handle: 'admin.test', email: 'x@example.com', password: 'pw' },
    })
    expect(reserved.body.error).toBe('HandleNotAvailable')
    // not a handle at all: refused by the lexicon's format check
    const bad = await xrpc(net.url, 'com.atproto.server.createAccount', {
      body: { handle: 'no', email: 'x@example.com', password: 'pw' },
    })
    expect(bad.status).toBe(400)
    const taken = await xrpc(net.url, 'com.atproto.server.createAccount', {
      body: { handle: 'alice.test', email: 'other@example.com', password: 'pw' },
    })
    expect(taken.body.error).toBe('HandleNotAvailable')
    const elsewhere = await xrpc(net.url, 'com.atproto.server.createAccount', {
      body: { handle: 'carol.example.com', email: 'carol@example.com', password: 'pw' },
    })
    expect(elsewhere.body.error).toBe('UnsupportedDomain')
    const email = await xrpc(net.url, 'com.atproto.server.createAccount', {
      body: { handle: 'alice2.test', email: 'ALICE@example.com', password: 'pw' },
    })
    expect(email.status).toBe(400)
    expect(email.body.message).toMatch(/Email already taken/)
  })

  it('logs in by handle, email and DID; getSession shows the account', async () => {
    for (const identifier of ['alice.test', 'alice@example.com', alice.session!.did]) {
      const agent = new AtpAgent({ service: net.url })
      await agent.login({ identifier, password: 'alice-pw' })
      const s = await agent.com.atproto.server.getSession()
      expect(s.data).toMatchObject({ did: alice.session!.did, handle: 'alice.test', email: 'alice@example.com', active: true })
    }
    const wrong = await xrpc(net.url, 'com.atproto.server.createSession', { body: { identifier: 'alice.test', password: 'nope' } })
    expect(wrong.status).toBe(401)
    expect(wrong.body.error).toBe('AuthenticationRequired')
  })

  it('rotates refresh tokens; a logged-out session cannot refresh', async () => {
    const login = await xrpc(net.url, 'com.atproto.server.createSession', { body: { identifier: 'alice.test', password: 'alice-pw' } })
    const r1 = await xrpc(net.url, 'com.atproto.server.refreshSession', { method: 'POST', token: login.body.refreshJwt })
    expect(r1.status).toBe(200)
    expect(r1.body.refreshJwt).not.toBe(login.body.refreshJwt)
    expect(r1.body.did).toBe(alice.session!.did)
    // a refresh token is not an access token, nor the reverse
    const asAccess = await xrpc(net.url, 'com.atproto.server.getSession', { token: r1.body.refreshJwt })
    expect(asAccess.status).toBe(400)
    expect(asAccess.body.error).toBe('InvalidToken')
    const asRefresh = await xrpc(net.url, 'com.atproto.server.refreshSession', { method: 'POST', token: r1.body.accessJwt })
    expect(asRefresh.body.error).toBe('InvalidToken')
    // logout revokes the family
    const del = await xrpc(net.url, 'com.atproto.server.deleteSession', { method: 'POST', token: r1.body.refreshJwt })
    expect(del.status).toBe(200)
    const after = await xrpc(net.url, 'com.atproto.server.refreshSession', { method: 'POST', token: r1.body.refreshJwt })
    expect(after.status).toBe(400)
    expect(after.body.error).toBe('ExpiredToken')
  })

  it('lets AtpAgent refresh an expired access token by itself', async () => {
    const agent = new AtpAgent({ service: net.url })
    await agent.login({ identifier: 'alice.test', password: 'alice-pw' })
    // swap in an access token that expired an hour ago (same secret: only the expiry is wrong)
    const tokens = new SessionTokens(net.env.PDS_JWT_SECRET!, net.cfg.service.did, 60, 3600)
    const expired = tokens.createAccessToken(agent.session!.did, AuthScope.Access, Date.now() - 3600_000)
    const direct = await xrpc(net.url, 'com.atproto.server.getSession', { token: expired })
    expect(direct.status).toBe(400)
    expect(direct.body.error).toBe('ExpiredToken')
    agent.session!.accessJwt = expired
    const res = await agent.com.atproto.server.getSession()
    expect(res.data.did).toBe(agent.session!.did)
    expect(agent.session!.accessJwt).not.toBe(expired)
  })

  it('refuses forged and missing tokens', async () => {
    const forger = new SessionTokens('not-the-secret', net.cfg.service.did, 3600, 3600)
    const forged = forger.createAccessToken(alice.session!.did, AuthScope.Access)
    const res = await xrpc(net.url, 'com.atproto.server.getSession', { token: forged })
    expect(res.status).toBe(400)
    expect(res.body.error).toBe('InvalidToken')
    const none = await xrpc(net.url, 'com.atproto.server.getSession')
    expect(none.status).toBe(401)
    expect(none.body.error).toBe('AuthenticationRequired')
    expect(none.headers.get('www-authenticate')).toBeTruthy()
  })

  it('app passwords: log in, cannot manage account settings, revocable', async () => {
    const created = await alice.com.atproto.server.createAppPassword({ name: 'phone' })
    expect(created.data.password).toMatch(/^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/)
    const list = await alice.com.atproto.server.listAppPasswords()
    expect(list.data.passwords.map((p) => p.name)).toEqual(['phone'])

    const phone = new AtpAgent({ service: net.url })
    await phone.login({ identifier: 'alice.test', password: created.data.password })
    const s = await phone.com.atproto.server.getSession()
    expect(s.data.did).toBe(alice.session!.did)
    expect(s.data.email).toBeUndefined()
    const post = await phone.com.atproto.repo.createRecord({
      repo: phone.session!.did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'from my phone', createdAt: new Date().toISOString() },
    })
    expect(post.data.uri).toMatch(/^at:\/\//)
    const settings = await xrpc(net.url, 'com.atproto.server.createAppPassword', { token: phone.session!.accessJwt, body: { name: 'other' } })
    expect(settings.status).toBe(400)
    expect(settings.body.error).toBe('InvalidToken')

    await alice.com.atproto.server.revokeAppPassword({ name: 'phone' })
    const relogin = await xrpc(net.url, 'com.atproto.server.createSession', { body: { identifier: 'alice.test', password: created.data.password } })
    expect(relogin.status).toBe(401)
    const refresh = await xrpc(net.url, 'com.atproto.server.refreshSession', { method: 'POST', token: phone.session!.refreshJwt })
    expect(refresh.body.error).toBe('ExpiredToken')
  })

  it('requires invite codes when configured', async () => {
    const net2 = await startNetwork({ PDS_INVITE_REQUIRED: 'true' })
    try {
      const agent = new AtpAgent({ service: net2.url })
      const desc = await agent.com.atproto.server.describeServer()
      expect(desc.data.inviteCodeRequired).toBe(true)
      const none = await xrpc(net2.url, 'com.atproto.server.createAccount', { body: { handle: 'dan.test', email: 'd@example.com', password: 'pw' } })
      expect(none.body.error).toBe('InvalidInviteCode')
      const basic = `Basic ${Buffer.from('admin:admin-pass').toString('base64')}`
      const code = await xrpc(net2.url, 'com.atproto.server.createInviteCode', { body: { useCount: 1 }, headers: { authorization: basic } })
      expect(code.status).toBe(200)
      const badAdmin = await xrpc(net2.url, 'com.atproto.server.createInviteCode', {
        body: { useCount: 1 },
        headers: { authorization: `Basic ${Buffer.from('admin:wrong').toString('base64')}` },
      })
      expect(badAdmin.status).toBe(401)
      await agent.createAccount({ handle: 'dan.test', email: 'd@example.com', password: 'pw', inviteCode: code.body.code })
      expect(agent.session?.handle).toBe('dan.test')
      const reused = await xrpc(net2.url, 'com.atproto.server.createAccount', {
        body: { handle: 'erin.test', email: 'e@example.com', password: 'pw', inviteCode: code.body.code },
      })
      expect(reused.body.error).toBe('InvalidInviteCode')
    } finally {
      await net2.close()
    }
  })

  it('rate-limits logins per identifier when enabled', async () => {
    const net3 = await startNetwork({ PDS_RATE_LIMITS_ENABLED: 'true' })
    try {
      const attempt = () => xrpc(net3.url, 'com.atproto.server.createSession', { body: { identifier: 'nobody.test', password: 'x' } })
      for (let i = 0; i < 30; i++) expect((await attempt()).status).toBe(401)
      const limited = await attempt()
      expect(limited.status).toBe(429)
      expect(limited.body.error).toBe('RateLimitExceeded')
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
      // another identifier has its own budget
      const other = await xrpc(net3.url, 'com.atproto.server.createSession', { body: { identifier: 'somebody.test', password: 'x' } })
      expect(other.status).toBe(401)
    } finally {
      await net3.close()
    }
  })

  it('deactivates and reactivates an account, announcing each change', async () => {
    const frank = new AtpAgent({ service: net.url })
    await frank.createAccount({ handle: 'frank.test', email: 'frank@example.com', password: 'frank-pw' })
    const did = frank.session!.did
    const seqBefore = net.pds.ctx.sequencer.lastSeq()
    await frank.com.atproto.server.deactivateAccount({})
    const status = await frank.com.atproto.sync.getRepoStatus({ did })
    expect(status.data).toEqual({ did, active: false, status: 'deactivated' })
    const repo = await xrpc(net.url, 'com.atproto.sync.getRepo', { params: { did } })
    expect(repo.body.error).toBe('RepoDeactivated')
    const write = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: frank.session!.accessJwt,
      body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'x', createdAt: new Date().toISOString() } },
    })
    expect(write.status).toBe(401)
    expect(write.body.error).toBe('AccountDeactivated')
    const session = await frank.com.atproto.server.getSession()
    expect(session.data).toMatchObject({ active: false, status: 'deactivated' })
    const checked = await frank.com.atproto.server.checkAccountStatus()
    expect(checked.data).toMatchObject({ activated: false, validDid: true, indexedRecords: 0 })

    await frank.com.atproto.server.activateAccount()
    expect((await frank.com.atproto.sync.getRepoStatus({ did })).data.active).toBe(true)
    const events = net.pds.ctx.sequencer.log.readRowsAfter(seqBefore, 100).filter((e) => e.did === did)
    expect(events.map((e) => e.type)).toEqual(['#account', '#identity', '#account', '#sync'])
  })

  it('mints service-auth tokens signed with the repo key in the DID document', async () => {
    const { verifyServiceJwt } = await import('@stratos/core/auth')
    const res = await alice.com.atproto.server.getServiceAuth({ aud: 'did:web:feeds.example.com', lxm: 'app.bsky.feed.getFeedSkeleton' })
    const getSigningKey = async (iss: string) => {
      const doc = (await (await fetch(`${net.plc.url}/${iss}`)).json()) as { verificationMethod: { id: string; publicKeyMultibase: string }[] }
      return `did:key:${doc.verificationMethod.find((m) => m.id.endsWith('#atproto'))!.publicKeyMultibase}`
    }
    const payload = await verifyServiceJwt(res.data.token, {
      audience: 'did:web:feeds.example.com',
      lxm: 'app.bsky.feed.getFeedSkeleton',
      getSigningKey,
    })
    expect(payload.iss).toBe(alice.session!.did)
    const tooLong = await xrpc(net.url, 'com.atproto.server.getServiceAuth', {
      token: alice.session!.accessJwt,
      params: { aud: 'did:web:x.example.com', exp: String(Math.floor(Date.now() / 1000) + 7200) },
    })
    expect(tooLong.body.error).toBe('BadExpiration')
  })

  it('answers the well-known routes, the front page and health', async () => {
    const { request } = await import('node:http')
    const get = (path: string, host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const u = new URL(net.url)
        const req = request({ host: u.hostname, port: u.port, path, headers: { host } }, (res) => {
          let body = ''
          res.on('data', (c) => (body += c))
          res.on('end', () => resolve({ status: res.statusCode!, body }))
        })
        req.on('error', reject)
        req.end()
      })
    expect(await get('/.well-known/atproto-did', 'alice.test')).toEqual({ status: 200, body: alice.session!.did })
    expect((await get('/.well-known/atproto-did', 'nobody.test')).status).toBe(404)
    const didJson = JSON.parse((await get('/.well-known/did.json', '127.0.0.1')).body)
    expect(didJson.id).toBe('did:web:127.0.0.1')
    expect(didJson.service[0]).toMatchObject({ id: '#atproto_pds', serviceEndpoint: net.cfg.service.publicUrl })
    expect((await get('/', '127.0.0.1')).body).toMatch(/AT Protocol Personal Data Server/)
    const health = await xrpc(net.url, '_health')
    expect(health.status).toBe(200)
    expect(health.body.version).toBeTruthy()
  })

  it('subscribeRepos replays from a cursor and refuses a future one', async () => {
    const { WebSocket } = await import('ws')
    const { decodeFrame } = await import('@stratos/core/stream')
    const last = net.pds.ctx.sequencer.lastSeq()
    const collect = (cursor: number, count: number) =>
      new Promise<any[]>((resolve, reject) => {
        const ws = new WebSocket(`${net.url.replace('http', 'ws')}/xrpc/com.atproto.sync.subscribeRepos?cursor=${cursor}`)
        const frames: any[] = []
        const timer = setTimeout(() => {
          ws.terminate()
          resolve(frames)
        }, 3000)
        ws.on('message', (data: Buffer) => {
          frames.push(decodeFrame(new Uint8Array(data)))
          if (frames.length >= count) {
            clearTimeout(timer)
            ws.close()
            resolve(frames)
          }
        })
        ws.on('error', reject)
      })
    const replay = await collect(last - 2, 2)
    expect(replay.map((f) => f.body.seq)).toEqual([last - 1, last])
    const future = await collect(last + 100, 1)
    expect(future[0]).toMatchObject({ op: -1, error: 'FutureCursor' })
    const plain = await fetch(`${net.url}/xrpc/com.atproto.sync.subscribeRepos`)
    expect(plain.status).toBe(426)
  })
})
