import fs from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { startNetwork, xrpc, type TestNetwork } from './_network.js'

const DAY = 24 * 60 * 60 * 1000

describe('com.atproto.server.getAccountInviteCodes and disabled account invites', () => {
  let net: TestNetwork
  let admin: AtpAgent
  let alice: AtpAgent
  let did: string

  const adminCode = async (forAccount?: string) =>
    (await admin.com.atproto.server.createInviteCode({ useCount: 1, ...(forAccount ? { forAccount } : {}) })).data.code
  /** makes alice's account look `days` old */
  const ageAlice = async (days: number) => {
    const createdAt = new Date(Date.now() - days * DAY).toISOString()
    await net.pds.ctx.accountDb.db.updateTable('account').set({ createdAt }).where('did', '=', did).execute()
  }
  const signUp = (handle: string, inviteCode: string) =>
    xrpc(net.url, 'com.atproto.server.createAccount', {
      body: { handle, email: `${handle.split('.')[0]}@example.com`, password: 'pw-pw-pw', inviteCode },
    })

  beforeAll(async () => {
    net = await startNetwork({ PDS_INVITE_REQUIRED: 'true', PDS_INVITE_INTERVAL: String(DAY) })
    admin = new AtpAgent({ service: net.url })
    admin.setHeader('authorization', `Basic ${Buffer.from(`admin:${net.env.PDS_ADMIN_PASSWORD}`).toString('base64')}`)
    alice = new AtpAgent({ service: net.url })
    await alice.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: 'alice-pw', inviteCode: await adminCode() })
    did = alice.session!.did
  })
  afterAll(async () => {
    await net?.close()
    if (net) fs.rmSync(net.dir, { recursive: true, force: true })
  })

  it('needs a session', async () => {
    const res = await xrpc(net.url, 'com.atproto.server.getAccountInviteCodes')
    expect(res.status).toBe(401)
  })

  it('creates the codes an account earned (one per PDS_INVITE_INTERVAL) only when createAvailable', async () => {
    expect((await alice.com.atproto.server.getAccountInviteCodes()).data.codes).toEqual([])
    await ageAlice(2.5)
    expect((await alice.com.atproto.server.getAccountInviteCodes({ createAvailable: false })).data.codes).toEqual([])
    const { codes } = (await alice.com.atproto.server.getAccountInviteCodes()).data
    expect(codes).toHaveLength(2)
    for (const c of codes) expect(c).toMatchObject({ forAccount: did, createdBy: did, available: 1, disabled: false, uses: [] })
    // asking again creates nothing more
    const again = (await alice.com.atproto.server.getAccountInviteCodes()).data.codes
    expect(again.map((c) => c.code).sort()).toEqual(codes.map((c) => c.code).sort())
  })

  it('lists codes an admin gave the account too, without counting them against earned ones', async () => {
    const gift = await adminCode(did)
    await ageAlice(3.5)
    const { codes } = (await alice.com.atproto.server.getAccountInviteCodes()).data
    expect(codes).toHaveLength(4) // 3 earned + the gift
    expect(codes.filter((c) => c.createdBy === did)).toHaveLength(3)
    expect(codes.find((c) => c.code === gift)).toMatchObject({ createdBy: 'admin', forAccount: did })
  })

  it('includeUsed=false leaves out used-up codes; disabled codes are never listed', async () => {
    const before = (await alice.com.atproto.server.getAccountInviteCodes({ createAvailable: false })).data.codes
    const [used, disabled] = before
    const signed = await signUp('bob.test', used!.code)
    expect(signed.status).toBe(200)
    await admin.com.atproto.admin.disableInviteCodes({ codes: [disabled!.code] })

    const all = (await alice.com.atproto.server.getAccountInviteCodes({ createAvailable: false })).data.codes
    expect(all).toHaveLength(before.length - 1)
    expect(all.find((c) => c.code === used!.code)?.uses.map((u) => u.usedBy)).toEqual([signed.body.did])
    expect(all.some((c) => c.code === disabled!.code)).toBe(false)
    const unused = (await alice.com.atproto.server.getAccountInviteCodes({ includeUsed: false, createAvailable: false })).data.codes
    expect(unused.map((c) => c.code).sort()).toEqual(all.filter((c) => c.code !== used!.code).map((c) => c.code).sort())
  })

  it('an account with invites disabled gets no codes, earns none, and its codes sign nobody up', async () => {
    const usable = (await alice.com.atproto.server.getAccountInviteCodes({ includeUsed: false })).data.codes
    expect(usable.length).toBeGreaterThan(0)
    const stored = (await admin.com.atproto.admin.getAccountInfo({ did })).data.invites!.length

    await admin.com.atproto.admin.disableAccountInvites({ account: did })
    await ageAlice(10)
    expect((await alice.com.atproto.server.getAccountInviteCodes()).data.codes).toEqual([])
    expect((await admin.com.atproto.admin.getAccountInfo({ did })).data.invites!.length).toBe(stored)
    const refused = await signUp('carol.test', usable[0]!.code)
    expect(refused.status).toBe(400)
    expect(refused.body.error).toBe('InvalidInviteCode')

    await admin.com.atproto.admin.enableAccountInvites({ account: did })
    const back = (await alice.com.atproto.server.getAccountInviteCodes()).data.codes
    const info = (await admin.com.atproto.admin.getAccountInfo({ did })).data.invites!
    const disabledOwn = info.filter((c) => c.createdBy === did && c.disabled).length
    expect(info.filter((c) => c.createdBy === did)).toHaveLength(10) // 10 days: 10 earned in all
    expect(back.filter((c) => c.createdBy === did)).toHaveLength(10 - disabledOwn)
    expect((await signUp('carol.test', usable[0]!.code)).status).toBe(200)
  })
})
