import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createTestAccount, startNetwork, xrpc, type TestNetwork } from './_network.js'

/**
 * The account rows and record rows the read paths keep between writes (AccountManager's row cache,
 * ActorRepo's getRecord rows): each read below comes after the same read was served (and cached), so a
 * cache that missed a change would answer with what it held before.
 */
describe('read caches follow every change', () => {
  let net: TestNetwork
  let did: string
  let token: string
  const admin = { authorization: `Basic ${Buffer.from('admin:admin-pass').toString('base64')}` }

  const getRecord = (rkey: string) => xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: did, collection: 'app.bsky.feed.post', rkey } })
  const getByHandle = (handle: string, rkey: string) =>
    xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: handle, collection: 'app.bsky.feed.post', rkey } })
  const post = async (text: string, rkey?: string) => {
    const res = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token,
      body: { repo: did, collection: 'app.bsky.feed.post', rkey, record: { $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() } },
    })
    expect(res.status).toBe(200)
    return res.body as { uri: string; cid: string }
  }

  beforeAll(async () => {
    net = await startNetwork()
    ;({ did, token } = await createTestAccount(net.url, 'cache'))
  })
  afterAll(() => net?.close())

  it('getRecord sees creates, updates, deletes and record takedowns', async () => {
    // a record asked for before it exists: the miss is not kept past the write that creates it
    expect((await getRecord('3kcacherkey22')).status).toBe(400)
    const created = await post('first', '3kcacherkey22')
    const first = await getRecord('3kcacherkey22')
    expect(first.status).toBe(200)
    expect(first.body).toMatchObject({ uri: created.uri, cid: created.cid, value: { text: 'first' } })
    expect((await getRecord('3kcacherkey22')).body.cid).toBe(created.cid)

    const put = await xrpc(net.url, 'com.atproto.repo.putRecord', {
      token,
      body: { repo: did, collection: 'app.bsky.feed.post', rkey: '3kcacherkey22', record: { $type: 'app.bsky.feed.post', text: 'second', createdAt: new Date().toISOString() } },
    })
    expect(put.status).toBe(200)
    const second = await getRecord('3kcacherkey22')
    expect(second.body).toMatchObject({ cid: put.body.cid, value: { text: 'second' } })
    // an older version asked for by CID is not found once replaced
    expect((await xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: did, collection: 'app.bsky.feed.post', rkey: '3kcacherkey22', cid: created.cid } })).status).toBe(400)

    // a record takedown is not a repo write (no commit): the read must still see it at once
    const takedown = await xrpc(net.url, 'com.atproto.admin.updateSubjectStatus', {
      headers: admin,
      body: { subject: { $type: 'com.atproto.repo.strongRef', uri: created.uri, cid: put.body.cid }, takedown: { applied: true, ref: 't-1' } },
    })
    expect(takedown.status).toBe(200)
    const hidden = await getRecord('3kcacherkey22')
    expect(hidden.status).toBe(400)
    expect(hidden.body.error).toBe('RecordNotFound')
    await xrpc(net.url, 'com.atproto.admin.updateSubjectStatus', {
      headers: admin,
      body: { subject: { $type: 'com.atproto.repo.strongRef', uri: created.uri, cid: put.body.cid }, takedown: { applied: false } },
    })
    expect((await getRecord('3kcacherkey22')).status).toBe(200)

    const del = await xrpc(net.url, 'com.atproto.repo.deleteRecord', { token, body: { repo: did, collection: 'app.bsky.feed.post', rkey: '3kcacherkey22' } })
    expect(del.status).toBe(200)
    expect((await getRecord('3kcacherkey22')).status).toBe(400)
  })

  it('reads and writes see account takedowns, deactivation and handle changes', async () => {
    const { uri } = await post('visible')
    const rkey = uri.split('/').pop()!
    expect((await getRecord(rkey)).status).toBe(200)
    expect((await getByHandle('cache.test', rkey)).status).toBe(200)

    // handle change: the old handle no longer resolves, the new one does
    const handle = await xrpc(net.url, 'com.atproto.identity.updateHandle', { token, body: { handle: 'cache2.test' } })
    expect(handle.status).toBe(200)
    expect((await getByHandle('cache.test', rkey)).status).toBe(400)
    expect((await getByHandle('cache2.test', rkey)).status).toBe(200)

    // account takedown: reads find nothing, and the session no longer writes
    const down = await xrpc(net.url, 'com.atproto.admin.updateSubjectStatus', {
      headers: admin,
      body: { subject: { $type: 'com.atproto.admin.defs#repoRef', did }, takedown: { applied: true, ref: 'acct-1' } },
    })
    expect(down.status).toBe(200)
    expect((await getRecord(rkey)).status).toBe(400)
    await xrpc(net.url, 'com.atproto.admin.updateSubjectStatus', {
      headers: admin,
      body: { subject: { $type: 'com.atproto.admin.defs#repoRef', did }, takedown: { applied: false } },
    })
    expect((await getRecord(rkey)).status).toBe(200)
    // the takedown ended the session: log in again
    const login = await xrpc(net.url, 'com.atproto.server.createSession', { body: { identifier: did, password: 'cache-password' } })
    expect(login.status).toBe(200)
    token = login.body.accessJwt

    // deactivation by the owner: reads find nothing, writes are refused; and back
    expect((await xrpc(net.url, 'com.atproto.server.deactivateAccount', { token, body: {} })).status).toBe(200)
    expect((await getRecord(rkey)).status).toBe(400)
    const refused = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token,
      body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'no', createdAt: new Date().toISOString() } },
    })
    expect(refused.status).toBe(401)
    expect(refused.body.error).toBe('AccountDeactivated')
    expect((await xrpc(net.url, 'com.atproto.server.activateAccount', { token, method: 'POST' })).status).toBe(200)
    expect((await getRecord(rkey)).status).toBe(200)
    await post('after reactivation')
  })

  it('a change made straight through the service database connection is seen', async () => {
    const { uri } = await post('direct')
    const rkey = uri.split('/').pop()!
    expect((await getRecord(rkey)).status).toBe(200)
    net.pds.ctx.accountDb.sqlite.prepare('UPDATE account SET takedownRef = ? WHERE did = ?').run('direct', did)
    expect((await getRecord(rkey)).status).toBe(400)
    net.pds.ctx.accountDb.sqlite.prepare('UPDATE account SET takedownRef = NULL WHERE did = ?').run(did)
    expect((await getRecord(rkey)).status).toBe(200)
  })

  it("getRecord's fast path (core's fastQuery) answers as the regular handler does", async () => {
    const { uri } = await post('fast path')
    const rkey = uri.split('/').pop()!
    const { accounts } = net.pds.ctx
    const slow = vi.spyOn(accounts, 'getAccount')
    const fast = vi.spyOn(accounts, 'getAccountSync')
    try {
      const url = `${net.url}/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(did)}&collection=app.bsky.feed.post&rkey=${rkey}`
      const read = async (headers: Record<string, string> = {}) => {
        const res = await fetch(url, { headers })
        const keep = ['content-type', 'content-length', 'access-control-allow-origin', 'access-control-expose-headers']
        return { status: res.status, body: await res.text(), headers: Object.fromEntries(keep.map((k) => [k, res.headers.get(k)])) }
      }
      const viaFast = await read()
      expect(fast).toHaveBeenCalledTimes(1)
      expect(slow).not.toHaveBeenCalled()
      // a request with a DPoP proof is declined (the OAuth hook answers those with a nonce): regular path
      const viaRegular = await read({ dpop: 'not-a-proof' })
      expect(slow).toHaveBeenCalledTimes(1)
      expect(viaFast).toEqual(viaRegular)
      expect(viaFast.status).toBe(200)
      expect(JSON.parse(viaFast.body)).toMatchObject({ uri, value: { text: 'fast path' } })
    } finally {
      slow.mockRestore()
      fast.mockRestore()
    }
  })

  it('an account row read inside a transaction that rolls back is not kept', async () => {
    const { accounts, accountDb } = net.pds.ctx
    const ghost = 'did:plc:ghostaccountxxxxxxxxxxx'
    expect(await accounts.getAccount(ghost)).toBeNull()
    accountDb.sqlite.exec('BEGIN')
    accountDb.sqlite
      .prepare('INSERT INTO account (did, handle, email, passwordScrypt, createdAt, invitesDisabled) VALUES (?, ?, ?, ?, ?, 0)')
      .run(ghost, 'ghost.test', 'ghost@example.com', null, new Date().toISOString())
    expect((await accounts.getAccount(ghost))?.handle).toBe('ghost.test')
    accountDb.sqlite.exec('ROLLBACK')
    expect(await accounts.getAccount(ghost)).toBeNull()
    expect(await accounts.getAccount('ghost.test')).toBeNull()
  })
})
