import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { jsonLines, runCli, sendJson, startServer, xrpcError, type RecordedRequest, type TestServer } from './helpers.js'

const PASSWORD = 'hunter2-admin'
const BASIC = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`
const did = (n: number) => `did:plc:${'a'.repeat(23)}${'bcdefg'[n]}`

function isAdmin(req: RecordedRequest): boolean {
  return req.headers.authorization === BASIC
}

/** A PDS admin API: 3 accounts (the second taken down), invite codes, Basic auth on admin methods. */
async function startAdminPds(opts: { inviteRequired: boolean }): Promise<TestServer> {
  const accounts = [
    { did: did(0), handle: 'alice.test', email: 'alice@example.com' },
    { did: did(1), handle: 'bob.test', email: 'bob@example.com' },
    { did: did(2), handle: 'carol.test', email: 'carol@example.com' },
  ]
  const admin = new Set([
    'com.atproto.admin.getAccountInfos',
    'com.atproto.admin.updateSubjectStatus',
    'com.atproto.admin.deleteAccount',
    'com.atproto.server.createInviteCode',
    'com.atproto.server.createInviteCodes',
  ])
  let codes = 0
  return startServer((req, res) => {
    const nsid = req.path.replace('/xrpc/', '')
    if (admin.has(nsid) && !isAdmin(req)) return xrpcError(res, 401, 'AuthRequired', 'bad admin password')
    const body = req.body as Record<string, any>
    switch (nsid) {
      case 'com.atproto.server.describeServer':
        return sendJson(res, 200, { did: 'did:web:pds.test', availableUserDomains: ['.test'], inviteCodeRequired: opts.inviteRequired })
      case 'com.atproto.server.createInviteCode':
        return sendJson(res, 200, { code: `pds-test-code${++codes}` })
      case 'com.atproto.server.createInviteCodes':
        return sendJson(res, 200, {
          codes: (body.forAccounts ?? ['admin']).map((account: string) => ({
            account,
            codes: Array.from({ length: body.codeCount }, () => `pds-test-code${++codes}`),
          })),
        })
      case 'com.atproto.server.createAccount':
        if (req.headers.authorization) return xrpcError(res, 400, 'InvalidRequest', 'unexpected credentials')
        if (opts.inviteRequired && !body.inviteCode) return xrpcError(res, 400, 'InvalidInviteCode', 'invite code required')
        return sendJson(res, 200, { did: did(3), handle: body.handle, accessJwt: 'a', refreshJwt: 'r' })
      case 'com.atproto.identity.resolveHandle': {
        const a = accounts.find((x) => x.handle === req.query.get('handle'))
        return a ? sendJson(res, 200, { did: a.did }) : xrpcError(res, 400, 'HandleNotFound', 'no such handle')
      }
      case 'com.atproto.sync.listRepos': {
        // two per page
        const cursor = req.query.get('cursor')
        const start = cursor ? Number(cursor) : 0
        const page = accounts.slice(start, start + 2).map((a, i) => ({
          did: a.did,
          head: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm',
          rev: '3kaaaaaaaaa22',
          active: a.did !== did(1),
          ...(a.did === did(1) ? { status: 'takendown' } : {}),
          _i: i,
        }))
        return sendJson(res, 200, { repos: page.map(({ _i, ...r }) => r), ...(page.length ? { cursor: String(start + page.length) } : {}) })
      }
      case 'com.atproto.admin.getAccountInfos': {
        const dids = req.query.getAll('dids')
        return sendJson(res, 200, {
          infos: accounts.filter((a) => dids.includes(a.did)).map((a) => ({ ...a, indexedAt: '2024-05-01T00:00:00.000Z' })),
        })
      }
      case 'com.atproto.admin.updateSubjectStatus':
        return sendJson(res, 200, { subject: body.subject, takedown: body.takedown })
      case 'com.atproto.admin.deleteAccount':
        res.statusCode = 200
        return res.end()
      default:
        return xrpcError(res, 501, 'MethodNotImplemented', nsid)
    }
  })
}

const calls = (s: TestServer, nsid: string) => s.requests.filter((r) => r.path === `/xrpc/${nsid}`)

describe('stratos account / invite', () => {
  let pds: TestServer
  let open: TestServer
  let env: Record<string, string>
  beforeAll(async () => {
    pds = await startAdminPds({ inviteRequired: true })
    open = await startAdminPds({ inviteRequired: false })
    env = { STRATOS_PDS_URL: pds.url, STRATOS_ADMIN_PASSWORD: PASSWORD }
  })
  afterEach(() => {
    pds.requests.length = 0
    open.requests.length = 0
  })
  afterAll(async () => {
    await pds?.close()
    await open?.close()
  })

  it('account create makes an invite code with the admin password, then signs up without credentials', async () => {
    const r = await runCli(['account', 'create', '--handle', 'dave', '--email', 'dave@example.com', '--password', 'pw-123456', '--json'], { env })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ did: did(3), handle: 'dave.test', email: 'dave@example.com', pds: pds.url })
    const [invite] = calls(pds, 'com.atproto.server.createInviteCode')
    expect(invite!.headers.authorization).toBe(BASIC)
    expect(invite!.body).toEqual({ useCount: 1 })
    const [create] = calls(pds, 'com.atproto.server.createAccount')
    expect(create!.headers.authorization).toBeUndefined()
    expect(create!.body).toEqual({ handle: 'dave.test', email: 'dave@example.com', password: 'pw-123456', inviteCode: 'pds-test-code1' })
    expect(r.stderr).toContain('created invite code pds-test-code1')
  })

  it('account create generates a password and needs no invite where none is required', async () => {
    const r = await runCli(['account', 'create', '--handle', 'erin.test', '--pds', open.url])
    expect(r.code).toBe(0)
    expect(calls(open, 'com.atproto.server.createInviteCode')).toHaveLength(0)
    const body = calls(open, 'com.atproto.server.createAccount')[0]!.body as Record<string, string>
    expect(body.email).toBe('erin.test@example.com')
    expect(body.password).toMatch(/^[A-Za-z0-9_-]{24}$/)
    expect(r.stdout).toContain(`password  ${body.password}`)
    expect(r.stdout).toContain(`did       ${did(3)}`)
  })

  it('account create without a password where invites are required is a usage error', async () => {
    const r = await runCli(['account', 'create', '--handle', 'frank', '--pds', pds.url])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('this PDS requires an invite code')
  })

  it('account list pages listRepos and merges getAccountInfos (admin)', async () => {
    const r = await runCli(['account', 'list', '--json'], { env })
    expect(r.code).toBe(0)
    const rows = jsonLines(r.stdout)
    expect(rows.map((x) => [x.did, x.handle, x.status])).toEqual([
      [did(0), 'alice.test', 'active'],
      [did(1), 'bob.test', 'takendown'],
      [did(2), 'carol.test', 'active'],
    ])
    expect(calls(pds, 'com.atproto.sync.listRepos').length).toBeGreaterThanOrEqual(2)
    for (const c of calls(pds, 'com.atproto.admin.getAccountInfos')) expect(c.headers.authorization).toBe(BASIC)

    const search = await runCli(['account', 'list', '--search', 'CAROL'], { env })
    expect(search.code).toBe(0)
    expect(search.stdout.split('\n')[0]).toMatch(/^DID +HANDLE +EMAIL +STATUS +CREATED$/)
    expect(search.stdout).toContain('carol@example.com')
    expect(search.stdout).not.toContain('alice')
    expect(search.stderr).toContain("1 account matching 'CAROL' (of 3)")
  })

  it('account takedown / --reverse send updateSubjectStatus for the repo', async () => {
    const r = await runCli(['account', 'takedown', 'bob.test', '--ref', 'ticket-7'], { env })
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`${did(1)}: taken down (ref ticket-7)\n`)
    const [call] = calls(pds, 'com.atproto.admin.updateSubjectStatus')
    expect(call!.method).toBe('POST')
    expect(call!.headers.authorization).toBe(BASIC)
    expect(call!.body).toEqual({
      subject: { $type: 'com.atproto.admin.defs#repoRef', did: did(1) },
      takedown: { applied: true, ref: 'ticket-7' },
    })
    const rev = await runCli(['account', 'takedown', did(1), '--reverse'], { env })
    expect(rev.code).toBe(0)
    expect(rev.stdout).toBe(`${did(1)}: restored\n`)
    expect(calls(pds, 'com.atproto.admin.updateSubjectStatus')[1]!.body).toMatchObject({ takedown: { applied: false } })
  })

  it('account delete needs --yes without a terminal, and asks on one', async () => {
    const refused = await runCli(['account', 'delete', 'alice.test'], { env })
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('refusing to delete without --yes')
    expect(calls(pds, 'com.atproto.admin.deleteAccount')).toHaveLength(0)

    const declined = await runCli(['account', 'delete', 'alice.test'], { env, confirm: async () => false })
    expect(declined.code).toBe(1)
    expect(calls(pds, 'com.atproto.admin.deleteAccount')).toHaveLength(0)

    const ok = await runCli(['account', 'delete', 'alice.test', '--yes'], { env })
    expect(ok.code).toBe(0)
    expect(ok.stdout).toBe(`${did(0)}: deleted\n`)
    const [call] = calls(pds, 'com.atproto.admin.deleteAccount')
    expect(call!.body).toEqual({ did: did(0) })
    expect(call!.headers.authorization).toBe(BASIC)
  })

  it('a wrong admin password is a clear failure (exit 1); a missing one a usage error (exit 2)', async () => {
    const wrong = await runCli(['account', 'takedown', did(0), '--admin-password', 'nope'], { env })
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/com\.atproto\.admin\.updateSubjectStatus on http:\/\/127\.0\.0\.1:\d+ failed: HTTP 401 AuthRequired: bad admin password/)
    const missing = await runCli(['account', 'list', '--pds', pds.url])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('the admin password is required')
  })

  it('invite create makes one code, or several with createInviteCodes', async () => {
    const one = await runCli(['invite', 'create', '--uses', '5'], { env })
    expect(one.code).toBe(0)
    expect(one.stdout).toMatch(/^pds-test-code\d+\n$/)
    expect(calls(pds, 'com.atproto.server.createInviteCode')[0]!.body).toEqual({ useCount: 5 })

    const many = await runCli(['invite', 'create', '--count', '3', '--for', did(0), '--json'], { env })
    expect(many.code).toBe(0)
    const codes = jsonLines(many.stdout)
    expect(codes).toHaveLength(3)
    expect(codes.every((c) => c.account === did(0))).toBe(true)
    expect(calls(pds, 'com.atproto.server.createInviteCodes')[0]!.body).toEqual({ codeCount: 3, useCount: 1, forAccounts: [did(0)] })
  })

  it('cannot reach a PDS: exit 1 naming it', async () => {
    const r = await runCli(['invite', 'create', '--pds', 'http://127.0.0.1:1', '--admin-password', 'x'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('cannot reach http://127.0.0.1:1')
  })
})

describe('stratos relay', () => {
  let relay: TestServer
  const hosts = [
    { hostname: 'pds1.example.com', seq: 10, accountCount: 3, status: 'active' },
    { hostname: 'pds2.example.com', seq: 20, accountCount: 1, status: 'idle' },
    { hostname: 'pds3.example.com', seq: 30, accountCount: 0, status: 'banned' },
  ]
  beforeAll(async () => {
    relay = await startServer((req, res) => {
      const nsid = req.path.replace('/xrpc/', '')
      if (nsid.startsWith('com.stratos.relay.admin.') && !isAdmin(req)) return xrpcError(res, 401, 'AuthRequired', 'admin only')
      switch (nsid) {
        case 'com.atproto.sync.listHosts': {
          const start = Number(req.query.get('cursor') ?? 0)
          const page = hosts.slice(start, start + 2).filter((h) => h.status !== 'banned')
          return sendJson(res, 200, { hosts: page, ...(start + 2 < hosts.length ? { cursor: String(start + 2) } : {}) })
        }
        case 'com.stratos.relay.admin.listHosts':
          return sendJson(res, 200, { hosts })
        case 'com.stratos.relay.admin.banHost':
        case 'com.stratos.relay.admin.unbanHost':
          if (typeof (req.body as { hostname?: unknown })?.hostname !== 'string') return xrpcError(res, 400, 'InvalidRequest', 'hostname')
          res.statusCode = 200
          return res.end()
        default:
          return xrpcError(res, 501, 'MethodNotImplemented', nsid)
      }
    })
  })
  afterEach(() => {
    relay.requests.length = 0
  })
  afterAll(async () => {
    await relay?.close()
  })

  it('relay hosts lists the public hosts (paged) as a table or JSON lines', async () => {
    const r = await runCli(['relay', 'hosts', '--relay', relay.url])
    expect(r.code).toBe(0)
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^HOSTNAME +STATUS +ACCOUNTS +SEQ$/)
    expect(lines[1]).toMatch(/^pds1\.example\.com +active +3 +10$/)
    expect(lines).toHaveLength(3)
    expect(relay.requests.every((q) => q.headers.authorization === undefined)).toBe(true)
    expect(relay.requests.map((q) => q.query.get('cursor'))).toEqual([null, '2'])

    const admin = await runCli(['relay', 'hosts', '--admin', '--json'], { env: { STRATOS_RELAY_URL: relay.url, STRATOS_ADMIN_PASSWORD: PASSWORD } })
    expect(admin.code).toBe(0)
    expect(jsonLines(admin.stdout).map((h) => h.hostname)).toEqual(hosts.map((h) => h.hostname))
    const table = await runCli(['relay', 'hosts', '--admin', '--relay', relay.url, '--admin-password', PASSWORD])
    expect(table.code).toBe(0)
    expect(table.stdout.split('\n')[0]).toMatch(/^HOSTNAME +STATUS +TRUSTED +ACCOUNTS +SEQ +ADDED BY +LAST EVENT$/)
    expect(table.stdout).toMatch(/^pds3\.example\.com +banned +- +0 +30 +- +-$/m)
    const last = relay.requests.at(-1)!
    expect(last.path).toBe('/xrpc/com.stratos.relay.admin.listHosts')
    expect(last.headers.authorization).toBe(BASIC)
  })

  it('relay ban / unban post {hostname} with Basic auth', async () => {
    const env = { STRATOS_RELAY_URL: relay.url, RELAY_ADMIN_PASSWORD: PASSWORD }
    const ban = await runCli(['relay', 'ban', 'https://Evil.Example.com/'], { env })
    expect(ban.code).toBe(0)
    expect(ban.stdout).toBe('evil.example.com: banned\n')
    const unban = await runCli(['relay', 'unban', 'evil.example.com'], { env })
    expect(unban.code).toBe(0)
    expect(unban.stdout).toBe('evil.example.com: unbanned\n')
    expect(relay.requests.map((q) => [q.method, q.path, q.headers.authorization, q.body])).toEqual([
      ['POST', '/xrpc/com.stratos.relay.admin.banHost', BASIC, { hostname: 'evil.example.com' }],
      ['POST', '/xrpc/com.stratos.relay.admin.unbanHost', BASIC, { hostname: 'evil.example.com' }],
    ])
  })

  it('relay ban without a password is a usage error; a bad hostname too', async () => {
    const r = await runCli(['relay', 'ban', 'x.example.com', '--relay', relay.url])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('the admin password is required')
    const bad = await runCli(['relay', 'ban', 'not a host', '--relay', relay.url, '--admin-password', PASSWORD])
    expect(bad.code).toBe(2)
    expect(relay.requests).toHaveLength(0)
  })

  it('unknown subcommands and no subcommand are usage errors', async () => {
    const r = await runCli(['relay', 'explode'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("unknown command 'explode'")
    const none = await runCli(['account'])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('Usage: stratos account <command>')
  })
})
