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
  const lines: string[] = []
  const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(...String(chunk).split('\n').filter(Boolean)), cb()) })

  const fastServed = async (): Promise<number> => {
    const text = await (await fetch(`${net.url}/metrics`)).text()
    const line = text.split('\n').find((l) => l.startsWith('xrpc_fast_path_requests_total{nsid="com.atproto.repo.getRecord"}'))
    return Number(line?.split(' ').pop() ?? 0)
  }
  const getRecord = (key: string) => xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: did, collection: 'app.bsky.feed.post', rkey: key } })

  beforeAll(async () => {
    // LOG_LEVEL and PDS_RATE_LIMITS_ENABLED as a production PDS has them when unset (the test env turns both off)
    net = await startNetwork({ LOG_LEVEL: 'info', PDS_RATE_LIMITS_ENABLED: 'true' }, { logger: pino({ level: 'info', base: { service: 'pds' } }, sink) })
    const acct = await xrpc(net.url, 'com.atproto.server.createAccount', { body: { handle: 'fast.test', email: 'fast@example.com', password: 'fast-password' } })
    expect(acct.status).toBe(200)
    did = acct.body.did
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
})
