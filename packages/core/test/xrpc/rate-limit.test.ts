import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemoryRateLimitStore, bearerAuth, createXrpcServer, tightest, type XrpcServer } from '@stratos/core/xrpc'

describe('MemoryRateLimitStore (token buckets)', () => {
  const spec = { points: 10, durationMs: 10_000 } // 1 point per second

  it('takes points until empty, then refuses with the wait until enough have refilled', () => {
    const store = new MemoryRateLimitStore()
    const t0 = 1_000_000
    expect(store.consume('k', 4, spec, t0)).toMatchObject({ allowed: true, remaining: 6, limit: 10, policy: '10;w=10' })
    expect(store.consume('k', 6, spec, t0)).toMatchObject({ allowed: true, remaining: 0 })
    const refused = store.consume('k', 3, spec, t0)
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 3000, resetAt: t0 + 10_000 })
    // a refusal takes nothing: after 3 s exactly 3 points are back
    expect(store.consume('k', 3, spec, t0 + 3000)).toMatchObject({ allowed: true, remaining: 0 })
    expect(store.consume('k', 1, spec, t0 + 3000).allowed).toBe(false)
    // refills up to the bucket size, no further
    expect(store.consume('k', 1, spec, t0 + 1_000_000)).toMatchObject({ allowed: true, remaining: 9 })
  })

  it('keeps keys apart, resets a key, and refuses a cost larger than the bucket for a full window', () => {
    const store = new MemoryRateLimitStore()
    expect(store.consume('a', 10, spec, 0).allowed).toBe(true)
    expect(store.consume('b', 10, spec, 0).allowed).toBe(true)
    expect(store.consume('a', 1, spec, 0).allowed).toBe(false)
    store.reset('a')
    expect(store.consume('a', 1, spec, 0).allowed).toBe(true)
    expect(store.consume('c', 11, spec, 0)).toMatchObject({ allowed: false, retryAfterMs: 10_000 })
  })

  it('drops full buckets when it sweeps', () => {
    const store = new MemoryRateLimitStore(1000)
    store.consume('a', 1, spec, 0)
    store.consume('b', 5, spec, 0)
    expect(store.size).toBe(2)
    store.consume('c', 1, spec, 2000) // sweep: a is full again (1 s), b is not (5 s)
    expect(store.size).toBe(2)
    store.consume('d', 1, spec, 6000) // sweep: b (full at 5 s) and c (full at 3 s) go; d is added
    expect(store.size).toBe(1)
  })

  it('reports the tightest of several limits', () => {
    const base = { resetAt: 0, retryAfterMs: 0, policy: '' }
    const a = { key: 'a', status: { ...base, allowed: true, limit: 100, remaining: 50 } }
    const b = { key: 'b', status: { ...base, allowed: true, limit: 10, remaining: 2 } }
    const c = { key: 'c', status: { ...base, allowed: false, limit: 10, remaining: 0, retryAfterMs: 5 } }
    expect(tightest([a, b])).toBe(b.status)
    expect(tightest([a, c, b])).toBe(c.status)
    expect(tightest([])).toBeUndefined()
  })
})

describe('rate limits on a server', () => {
  let server: XrpcServer
  let url: string
  const NOW = '2024-05-01T12:00:00.000Z'

  beforeAll(async () => {
    server = createXrpcServer({
      rateLimits: {
        global: [{ points: 1000, durationMs: 60_000 }],
        // the PDS's write budget: points per account, creates cost 3
        shared: [{ name: 'repo-write-hour', points: 7, durationMs: 3_600_000 }],
        bypass: (req) => req.headers['x-ratelimit-bypass'] === 'letmein',
      },
    })
    const auth = bearerAuth(async (token) => ({ did: `did:example:${token}` }))
    const byAccount = (ctx: { auth: { credentials: unknown } }) => (ctx.auth.credentials as { did: string }).did
    server.method('com.atproto.repo.createRecord', {
      auth,
      rateLimit: { name: 'repo-write-hour', calcKey: byAccount, calcPoints: () => 3 },
      handler: () => ({ encoding: 'application/json', body: { uri: 'at://did:example:a/app.bsky.feed.post/3kznmn7xqxl22', cid: 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq' } }),
    })
    server.method('com.atproto.repo.deleteRecord', {
      auth,
      rateLimit: { name: 'repo-write-hour', calcKey: byAccount, calcPoints: () => 1 },
      handler: () => undefined,
    })
    server.method('com.atproto.server.createSession', {
      rateLimit: { points: 2, durationMs: 60_000, calcKey: (ctx) => String((ctx.input?.body as { identifier: string }).identifier) },
      handler: async (ctx) => {
        const body = ctx.input!.body as { identifier: string; password: string }
        if (body.password !== 'right') {
          const { AuthRequiredError } = await import('@stratos/core/xrpc')
          throw new AuthRequiredError('Invalid identifier or password')
        }
        await ctx.resetRouteRateLimits()
        return { encoding: 'application/json', body: { did: 'did:example:alice', handle: 'alice.test', accessJwt: 'a', refreshJwt: 'r' } }
      },
    })
    url = await server.listen()
  })
  afterAll(async () => {
    await server?.close()
  })

  const write = (nsid: string, account: string, headers: Record<string, string> = {}) =>
    fetch(`${url}/xrpc/${nsid}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${account}`, ...headers },
      body: JSON.stringify(
        nsid.endsWith('createRecord')
          ? { repo: `did:example:${account}`, collection: 'app.bsky.feed.post', record: { text: 'x', createdAt: NOW } }
          : { repo: `did:example:${account}`, collection: 'app.bsky.feed.post', rkey: '3kznmn7xqxl22' },
      ),
    })

  it('a shared limit counts points per account across methods', async () => {
    expect((await write('com.atproto.repo.createRecord', 'alice')).status).toBe(200) // 4 left
    const second = await write('com.atproto.repo.createRecord', 'alice') // 1 left
    expect(second.status).toBe(200)
    expect(second.headers.get('ratelimit-remaining')).toBe('1')
    expect(second.headers.get('ratelimit-policy')).toBe('7;w=3600')
    const third = await write('com.atproto.repo.createRecord', 'alice')
    expect(third.status).toBe(429)
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(1000) // ~2/7 of an hour
    expect((await write('com.atproto.repo.deleteRecord', 'alice')).status).toBe(200) // the last point
    expect((await write('com.atproto.repo.deleteRecord', 'alice')).status).toBe(429)
    // another account has its own budget
    expect((await write('com.atproto.repo.createRecord', 'bob')).status).toBe(200)
    // the bypass skips every limit
    expect((await write('com.atproto.repo.createRecord', 'alice', { 'x-ratelimit-bypass': 'letmein' })).status).toBe(200)
  })

  it('resetRouteRateLimits refills the route buckets (a good login after failed ones)', async () => {
    const login = (password: string) =>
      fetch(`${url}/xrpc/com.atproto.server.createSession`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ identifier: 'carol.test', password }),
      })
    expect((await login('wrong')).status).toBe(401)
    expect((await login('right')).status).toBe(200) // resets
    expect((await login('wrong')).status).toBe(401)
    expect((await login('wrong')).status).toBe(401)
    expect((await login('right')).status).toBe(429)
  })

  it('global limits apply to every XRPC request, known or not', async () => {
    const res = await fetch(`${url}/xrpc/com.example.unknown.method`)
    expect(res.status).toBe(501)
    expect(Number(res.headers.get('ratelimit-limit'))).toBe(1000)
  })

  it('can be switched off', async () => {
    const off = createXrpcServer({ rateLimits: { enabled: false }, metrics: false })
    off.method('com.atproto.identity.resolveHandle', {
      rateLimit: { points: 1, durationMs: 60_000 },
      handler: () => ({ encoding: 'application/json', body: { did: 'did:example:alice' } }),
    })
    const base = await off.listen()
    try {
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${base}/xrpc/com.atproto.identity.resolveHandle?handle=alice.test`)
        expect(res.status).toBe(200)
        expect(res.headers.get('ratelimit-limit')).toBeNull()
      }
    } finally {
      await off.close()
    }
  })

  it('a method naming an undefined shared limit is refused at registration', () => {
    expect(() => server.method('com.atproto.repo.putRecord', { rateLimit: { name: 'nope' }, handler: () => undefined })).toThrow(/unknown shared rate limit nope/)
  })
})
