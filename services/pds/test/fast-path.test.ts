import { Writable } from 'node:stream'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startNetwork, xrpc, type TestNetwork } from './_network.js'

/**
 * The production defaults (rate limits on, requests logged at info) keep getRecord on core's fast path
 * (XrpcServer fastQuery): counted by xrpc_fast_path_requests_total, with the rate-limit headers and the
 * request log lines of the regular path.
 */
describe('getRecord on the fast path with the default configuration', () => {
  let net: TestNetwork
  let did: string
  let rkey: string
  let token: string
  const lines: string[] = []
  const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(...String(chunk).split('\n').filter(Boolean)), cb()) })

  const fastServed = async (nsid = 'com.atproto.repo.getRecord'): Promise<number> => {
    const text = await (await fetch(`${net.url}/metrics`)).text()
    const line = text.split('\n').find((l) => l.startsWith(`xrpc_fast_path_requests_total{nsid="${nsid}"}`))
    return Number(line?.split(' ').pop() ?? 0)
  }
  const getRecord = (key: string) => xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: did, collection: 'app.bsky.feed.post', rkey: key } })

  beforeAll(async () => {
    // LOG_LEVEL and PDS_RATE_LIMITS_ENABLED as a production PDS has them when unset (the test env turns both off)
    net = await startNetwork({ LOG_LEVEL: 'info', PDS_RATE_LIMITS_ENABLED: 'true' }, { logger: pino({ level: 'info', base: { service: 'pds' } }, sink) })
    const acct = await xrpc(net.url, 'com.atproto.server.createAccount', { body: { handle: 'fast.test', email: 'fast@example.com', password: 'fast-password' } })
    expect(acct.status).toBe(200)
    did = acct.body.did
    token = acct.body.accessJwt
    const rec = await xrpc(net.url, 'com.atproto.repo.createRecord', {
      token: acct.body.accessJwt,
      body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'fast', createdAt: new Date().toISOString() } },
    })
    expect(rec.status).toBe(200)
    rkey = rec.body.uri.split('/').pop()
  })
  afterAll(() => net?.close())

  it('serves getRecord without fastify, rate-limited and logged', async () => {
    expect(net.cfg.logLevel).toBe('info')
    expect(net.cfg.rateLimits.enabled).toBe(true)
    const before = await fastServed()
    lines.length = 0
    const remaining: number[] = []
    for (let i = 0; i < 5; i++) {
      const res = await getRecord(rkey)
      expect(res.status).toBe(200)
      expect(res.body).toMatchObject({ uri: `at://${did}/app.bsky.feed.post/${rkey}`, value: { text: 'fast' } })
      expect(res.headers.get('ratelimit-limit')).toBe('3000')
      remaining.push(Number(res.headers.get('ratelimit-remaining')))
    }
    // the per-IP bucket (3000 per 5 minutes, refilling 10 a second) is charged by each request
    for (const r of remaining) expect(r).toBeGreaterThan(2900)
    for (const r of remaining) expect(r).toBeLessThan(3000)
    expect(await fastServed()).toBe(before + 5)

    // not found: the regular path answers, as before
    expect((await getRecord('3kzzzzzzzzz22')).status).toBe(400)
    expect(await fastServed()).toBe(before + 5)

    await new Promise((r) => setTimeout(r, 50))
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; reqId?: string; service?: string; req?: { url: string }; res?: { statusCode: number } })
    const incoming = logged.filter((l) => l.msg === 'incoming request' && l.req?.url.startsWith('/xrpc/com.atproto.repo.getRecord'))
    expect(incoming).toHaveLength(6)
    expect(incoming.every((l) => l.service === 'pds' && typeof l.reqId === 'string')).toBe(true)
    const completed = logged.filter((l) => l.msg === 'request completed' && incoming.some((i) => i.reqId === l.reqId))
    expect(completed.map((l) => l.res?.statusCode)).toEqual([200, 200, 200, 200, 200, 400])
  })

  it('serves repo writes without fastify, charged to the account\'s write budget and logged, as the regular path does', async () => {
    const nsid = 'com.atproto.repo.createRecord'
    const before = await fastServed(nsid)
    lines.length = 0
    // plain (the fast path) and chunked (which the fast path leaves to fastify), in turn
    const send = async (rkey: string, chunked: boolean, auth = `Bearer ${token}`) => {
      const bytes = new TextEncoder().encode(
        JSON.stringify({ repo: did, collection: 'app.bsky.feed.post', rkey, record: { $type: 'app.bsky.feed.post', text: rkey, createdAt: '2026-12-07T12:00:00.000Z' } }),
      )
      const body = chunked ? new ReadableStream({ start: (c) => (c.enqueue(bytes), c.close()) }) : bytes
      const res = await fetch(`${net.url}/xrpc/${nsid}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: auth },
        body,
        ...(chunked ? { duplex: 'half' } : {}),
      } as RequestInit)
      const headers = Object.fromEntries([...res.headers].filter(([k]) => !['date', 'keep-alive', 'connection', 'content-length', 'transfer-encoding', 'ratelimit-reset'].includes(k)))
      return { status: res.status, headers, body: (await res.json()) as Record<string, unknown> }
    }
    const answers = []
    for (const [i, rkey] of ['3kfastlimit22', '3kslowlimit22', '3kfastlimi222', '3kslowlimi222'].entries()) answers.push(await send(rkey, i % 2 === 1))
    expect(await fastServed(nsid)).toBe(before + 2)
    // the tightest limit is the account's hourly write budget (5000 points, a create costs 3), charged by each write
    expect(answers.map((a) => [a.status, a.headers['ratelimit-limit'], a.headers['ratelimit-policy']])).toEqual(Array(4).fill([200, '5000', '5000;w=3600']))
    const remaining = answers.map((a) => Number(a.headers['ratelimit-remaining']))
    expect(remaining.slice(1).map((r, i) => remaining[i]! - r)).toEqual([3, 3, 3])
    const [fast, regular] = answers.map(({ headers }) => ({ ...headers, 'ratelimit-remaining': 'n' }))
    expect(fast).toEqual(regular)
    // a write with a bad token: the same error on both paths, with the per-IP limit's headers
    const [a, b] = [await send('3kfastnoauth2', false, 'Bearer nope'), await send('3kslownoauth2', true, 'Bearer nope')]
    expect([400, 401]).toContain(a.status)
    expect({ ...a, headers: { ...a.headers, 'ratelimit-remaining': 'n' } }).toEqual({ ...b, headers: { ...b.headers, 'ratelimit-remaining': 'n' } })
    expect(a.headers['ratelimit-limit']).toBe('3000')
    expect(await fastServed(nsid)).toBe(before + 3)

    await new Promise((r) => setTimeout(r, 50))
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; reqId?: string; req?: { url: string; method: string }; res?: { statusCode: number } })
    const incoming = logged.filter((l) => l.msg === 'incoming request' && l.req?.url === `/xrpc/${nsid}`)
    expect(incoming.map((l) => l.req?.method)).toEqual(Array(6).fill('POST'))
    const completed = logged.filter((l) => l.msg === 'request completed' && incoming.some((i) => i.reqId === l.reqId))
    expect(completed.map((l) => l.res?.statusCode)).toEqual([200, 200, 200, 200, a.status, a.status])
  })
})

/**
 * The repo writes (createRecord, putRecord, deleteRecord, applyWrites) with rate limits off and no request
 * log (the test env; a PDS with PDS_RATE_LIMITS_ENABLED=false and LOG_LEVEL=warn) are answered ahead of
 * fastify (XrpcServer fastProcedure), with the responses of the regular path: each request below is sent
 * once as a plain request (the fast path) and once with a chunked body (which the fast path leaves to
 * fastify), and the two answers must be the same, errors included.
 */
describe('repo writes on the fast path', () => {
  let net: TestNetwork
  let did: string
  let token: string
  let otherDid: string

  const fastServed = async (nsid: string): Promise<number> => {
    const text = await (await fetch(`${net.url}/metrics`)).text()
    const line = text.split('\n').find((l) => l.startsWith(`xrpc_fast_path_requests_total{nsid="${nsid}"}`))
    return Number(line?.split(' ').pop() ?? 0)
  }

  /** A POST as a client sends it: plain (Content-Length) or chunked (taken by fastify). */
  const post = async (nsid: string, body: string, opts: { chunked?: boolean; headers?: Record<string, string> } = {}) => {
    const bytes = new TextEncoder().encode(body)
    const res = await fetch(`${net.url}/xrpc/${nsid}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...opts.headers },
      body: opts.chunked
        ? new ReadableStream({
            start(c) {
              c.enqueue(bytes)
              c.close()
            },
          })
        : bytes,
      ...(opts.chunked ? { duplex: 'half' } : {}),
    } as RequestInit)
    const keep = ['content-type', 'www-authenticate', 'access-control-allow-origin', 'access-control-expose-headers']
    const headers = Object.fromEntries([...res.headers].filter(([k]) => keep.includes(k)))
    return { status: res.status, headers, body: (await res.json()) as Record<string, unknown> }
  }

  const post1 = (rkey: string, text = 'fast write') =>
    JSON.stringify({ repo: did, collection: 'app.bsky.feed.post', rkey, record: { $type: 'app.bsky.feed.post', text, createdAt: '2026-12-07T12:00:00.000Z' } })

  beforeAll(async () => {
    net = await startNetwork()
    expect(net.cfg.rateLimits.enabled).toBe(false)
    const acct = await xrpc(net.url, 'com.atproto.server.createAccount', { body: { handle: 'writer.test', email: 'writer@example.com', password: 'writer-password' } })
    expect(acct.status).toBe(200)
    did = acct.body.did
    token = acct.body.accessJwt
    const other = await xrpc(net.url, 'com.atproto.server.createAccount', { body: { handle: 'other.test', email: 'other@example.com', password: 'other-password' } })
    otherDid = other.body.did
  })
  afterAll(() => net?.close())

  it('answers createRecord, putRecord, deleteRecord and applyWrites without fastify', async () => {
    const auth = { authorization: `Bearer ${token}` }
    const created = await post('com.atproto.repo.createRecord', post1('3kfastaaaaa22'), { headers: auth })
    expect(created.status).toBe(200)
    expect(created.body).toMatchObject({ uri: `at://${did}/app.bsky.feed.post/3kfastaaaaa22`, validationStatus: 'valid' })
    expect(created.headers['access-control-allow-origin']).toBe('*')
    expect(await fastServed('com.atproto.repo.createRecord')).toBe(1)
    // read-after-write
    const read = await xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: did, collection: 'app.bsky.feed.post', rkey: '3kfastaaaaa22' } })
    expect(read.body).toMatchObject({ cid: created.body.cid, value: { text: 'fast write' } })

    const put = await post('com.atproto.repo.putRecord', post1('3kfastaaaaa22', 'edited'), { headers: auth })
    expect(put.status).toBe(200)
    const applied = await post(
      'com.atproto.repo.applyWrites',
      JSON.stringify({ repo: did, writes: [{ $type: 'com.atproto.repo.applyWrites#delete', collection: 'app.bsky.feed.post', rkey: '3kfastaaaaa22' }] }),
      { headers: auth },
    )
    expect(applied.status).toBe(200)
    expect(applied.body).toMatchObject({ results: [{ $type: 'com.atproto.repo.applyWrites#deleteResult' }] })
    const deleted = await post('com.atproto.repo.deleteRecord', JSON.stringify({ repo: did, collection: 'app.bsky.feed.post', rkey: '3kfastaaaaa22' }), { headers: auth })
    expect(deleted.status).toBe(200)
    expect(await fastServed('com.atproto.repo.putRecord')).toBe(1)
    expect(await fastServed('com.atproto.repo.applyWrites')).toBe(1)
    expect(await fastServed('com.atproto.repo.deleteRecord')).toBe(1)
    // a chunked body is left to fastify
    expect((await post('com.atproto.repo.createRecord', post1('3kfastbbbbb22'), { headers: auth, chunked: true })).status).toBe(200)
    expect(await fastServed('com.atproto.repo.createRecord')).toBe(1)
  })

  it('refuses bad writes with the XRPC errors of the regular path', async () => {
    const auth = { authorization: `Bearer ${token}` }
    const head = await xrpc(net.url, 'com.atproto.sync.getLatestCommit', { params: { did } })
    const cases: { name: string; nsid?: string; body: string; headers?: Record<string, string>; status: number; error: string }[] = [
      { name: 'no token', body: post1('3kfastccccc22'), status: 401, error: 'AuthenticationRequired' },
      { name: 'bad token', body: post1('3kfastccccc22'), headers: { authorization: 'Bearer not-a-jwt' }, status: 400, error: 'InvalidToken' },
      { name: 'not JSON', body: '{"repo":', headers: auth, status: 400, error: 'InvalidRequest' },
      { name: 'input schema', body: JSON.stringify({ repo: did, record: {} }), headers: auth, status: 400, error: 'InvalidRequest' },
      {
        name: 'invalid record',
        body: JSON.stringify({ repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 5 } }),
        headers: auth,
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'float in record',
        body: JSON.stringify({ repo: did, collection: 'com.example.thing', record: { n: 1.5 } }),
        headers: auth,
        status: 400,
        error: 'InvalidRequest',
      },
      { name: 'another account', body: post1('3kfastccccc22').replace(did, otherDid), headers: auth, status: 403, error: 'Forbidden' },
      { name: 'existing record', body: post1('3kfastbbbbb22'), headers: auth, status: 400, error: 'InvalidRequest' },
      {
        name: 'swapCommit',
        body: JSON.stringify({ ...JSON.parse(post1('3kfastccccc22')), swapCommit: 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq' }),
        headers: auth,
        status: 400,
        error: 'InvalidSwap',
      },
      {
        name: 'swapRecord',
        nsid: 'com.atproto.repo.putRecord',
        body: JSON.stringify({ ...JSON.parse(post1('3kfastbbbbb22')), swapRecord: 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq' }),
        headers: auth,
        status: 400,
        error: 'InvalidSwap',
      },
    ]
    for (const c of cases) {
      const nsid = c.nsid ?? 'com.atproto.repo.createRecord'
      const before = await fastServed(nsid)
      const fast = await post(nsid, c.body, { headers: c.headers })
      expect(await fastServed(nsid), c.name).toBe(before + 1)
      const regular = await post(nsid, c.body, { headers: c.headers, chunked: true })
      expect(await fastServed(nsid), c.name).toBe(before + 1)
      expect({ name: c.name, status: fast.status, error: fast.body.error }).toEqual({ name: c.name, status: c.status, error: c.error })
      expect(fast, c.name).toEqual(regular)
    }
    // nothing was written by the refused requests
    expect((await xrpc(net.url, 'com.atproto.sync.getLatestCommit', { params: { did } })).body).toEqual(head.body)
  })
})
