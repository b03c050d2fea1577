import { Writable } from 'node:stream'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createXrpcServer, InvalidRequestError, MemoryRateLimitStore, type XrpcServer, type XrpcServerOptions } from '@stratos/core/xrpc'
import type { BucketSpec } from '../../src/xrpc/rate-limit.js'
import { expectSameAnswer, RecordingStore } from './_fast-path.js'
import { headerList, setListedHeader } from '../../src/xrpc/server.js'

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const CID_A = 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq'

/** What a test server's handlers saw, to tell the fast path from the regular one. */
interface Seen {
  fast: number
  regular: number
}

const recordText = (rkey: string) =>
  `{"uri":"at://${DID}/app.bsky.feed.post/${rkey}","cid":"${CID_A}","value":{"$type":"app.bsky.feed.post","text":"hi ${rkey}","createdAt":"2024-05-01T12:00:00.000Z"}}`

/**
 * A server with com.atproto.repo.getRecord answering rkeys starting with "a" (declining "b…" on the fast
 * path, which the regular handler then answers, and refusing "x…" on both as not found), and the same
 * answers on both paths.
 */
function makeServer(opts: XrpcServerOptions, seen: Seen, methodOpts: { rateLimit?: { points: number; durationMs: number } } = {}): XrpcServer {
  const server = createXrpcServer({ metrics: {}, ...opts })
  const answer = (rkey: string) => {
    if (rkey.startsWith('x')) throw new InvalidRequestError(`Could not locate record: ${rkey}`, 'RecordNotFound')
    return recordText(rkey)
  }
  server.method('com.atproto.repo.getRecord', {
    ...methodOpts,
    handler: ({ params, reply }) => {
      seen.regular++
      reply.header('x-extra', 'yes')
      return { encoding: 'application/json; charset=utf-8', body: answer(params.rkey as string) }
    },
    fastQuery: (params) => {
      seen.fast++
      const rkey = params.rkey as string
      if (rkey.startsWith('b')) return undefined
      return { body: answer(rkey), headers: { 'x-extra': 'yes' } }
    },
  })
  return server
}

async function get(base: string, path: string, init: RequestInit = {}) {
  const res = await fetch(`${base}${path}`, init)
  const headers = Object.fromEntries([...res.headers].filter(([k]) => k !== 'date' && k !== 'keep-alive' && k !== 'connection'))
  return { status: res.status, body: await res.text(), headers }
}

describe('XrpcServer fastQuery', () => {
  const seenFast: Seen = { fast: 0, regular: 0 }
  const seenRegular: Seen = { fast: 0, regular: 0 }
  let fast: XrpcServer
  let regular: XrpcServer
  let fastUrl: string
  let regularUrl: string

  beforeAll(async () => {
    fast = makeServer({}, seenFast)
    regular = makeServer({ fastQueries: false }, seenRegular)
    fastUrl = await fast.listen()
    regularUrl = await regular.listen()
  })
  afterAll(async () => {
    await fast?.close()
    await regular?.close()
  })

  const q = (rkey: string, extra = '') => `/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(DID)}&collection=app.bsky.feed.post&rkey=${rkey}${extra}`

  it('answers as the regular path does: status, body and headers (CORS, content type and length)', async () => {
    const cases: [string, RequestInit?][] = [
      [q('a1')],
      [q('a2'), { headers: { origin: 'https://app.example' } }],
      [q('b1')], // declined by the fast handler
      [q('x1')], // not found: thrown on both paths
      [q('a3', '&cid=notacid')], // bad params: 400 from the validation
      ['/xrpc/com.atproto.repo.getRecord?collection=app.bsky.feed.post&rkey=a4'], // missing param
      [q('a5'), { method: 'HEAD' }],
      [q('a6'), { method: 'POST' }],
      [q('a7'), { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } }],
      ['/xrpc/com.atproto.repo.getRecord/' + q('a8').slice('/xrpc/com.atproto.repo.getRecord'.length)],
    ]
    for (const [path, init] of cases) {
      const a = await get(fastUrl, path, init)
      const b = await get(regularUrl, path, init)
      expect({ path, ...a }).toEqual({ path, ...b })
    }
    const ok = await get(fastUrl, q('a1'))
    expect(ok.status).toBe(200)
    expect(ok.headers['access-control-allow-origin']).toBe('*')
    expect(ok.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(JSON.parse(ok.body)).toMatchObject({ uri: `at://${DID}/app.bsky.feed.post/a1` })
  })

  it('takes the fast path for what it answers, and the regular path for the rest', async () => {
    seenFast.fast = seenFast.regular = 0
    seenRegular.fast = seenRegular.regular = 0
    await get(fastUrl, q('a10'))
    await get(fastUrl, q('a11'))
    expect(seenFast).toEqual({ fast: 2, regular: 0 })
    await get(fastUrl, q('b10'))
    expect(seenFast).toEqual({ fast: 3, regular: 1 })
    await get(regularUrl, q('a10'))
    expect(seenRegular).toEqual({ fast: 0, regular: 1 })
  })

  it('counts fast answers in the request metrics like regular ones', async () => {
    const count = async (base: string) => {
      const text = (await get(base, '/metrics')).body
      const line = text.split('\n').find((l) => l.startsWith('http_requests_total{') && l.includes('nsid="com.atproto.repo.getRecord"') && l.includes('status="200"'))
      const hist = text.split('\n').find((l) => l.startsWith('http_request_duration_seconds_count{') && l.includes('nsid="com.atproto.repo.getRecord"') && l.includes('status="200"'))
      return [Number(line?.split(' ').pop() ?? 0), Number(hist?.split(' ').pop() ?? 0)]
    }
    const before = await count(fastUrl)
    for (let i = 0; i < 3; i++) await get(fastUrl, q(`a2${i}`))
    const after = await count(fastUrl)
    expect(after).toEqual([before[0]! + 3, before[1]! + 3])
  })

  it('checks its output against the lexicon where the server validates output (an invalid one gets the regular 500)', async () => {
    const seen: Seen = { fast: 0, regular: 0 }
    const server = createXrpcServer({ metrics: false, validateOutput: true })
    server.method('com.atproto.repo.getRecord', {
      handler: () => {
        seen.regular++
        return { encoding: 'application/json', body: { uri: 'not a uri', value: {} } }
      },
      fastQuery: () => {
        seen.fast++
        return { body: '{"uri":"not a uri","value":{}}' }
      },
    })
    try {
      const base = await server.listen()
      const res = await get(base, q('a1'))
      expect(res.status).toBe(500)
      expect(seen).toEqual({ fast: 1, regular: 1 })
    } finally {
      await server.close()
    }
  })
})

/** Two servers alike but for the fast path, given the same requests in turn. */
async function pair(opts: (side: 'fast' | 'regular') => XrpcServerOptions, methodOpts: { rateLimit?: { points: number; durationMs: number } } = {}) {
  const seen = { fast: { fast: 0, regular: 0 }, regular: { fast: 0, regular: 0 } }
  const fast = makeServer(opts('fast'), seen.fast, methodOpts)
  const regular = makeServer({ ...opts('regular'), fastQueries: false }, seen.regular, methodOpts)
  const urls = { fast: await fast.listen(), regular: await regular.listen() }
  return { fast, regular, urls, seen, close: async () => (await fast.close(), await regular.close()) }
}

const rq = (rkey: string, extra = '') => `/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(DID)}&collection=app.bsky.feed.post&rkey=${rkey}${extra}`

/**
 * Requests from several clients (X-Forwarded-For through a trusted loopback proxy, in the shapes proxies
 * send it, and forged by hand), past the limits: answered fast (a…), declined by the fast handler (b…), not
 * found (x…), with bad params, with the bypass key.
 */
function limitSequence(): [string, Record<string, string>][] {
  const out: [string, Record<string, string>][] = []
  const clients = ['10.0.0.1', ' 10.0.0.2 ,\t10.0.0.3 ', '10.0.0.4,, 127.0.0.1', '::ffff:10.0.0.5', 'not-an-ip', '', '127.0.0.1, 127.0.0.2']
  for (let i = 0; i < 8; i++) {
    for (const [c, xff] of clients.entries()) {
      const headers: Record<string, string> = xff ? { 'x-forwarded-for': xff } : {}
      const kind = (i + c) % 5
      const path = kind === 0 ? rq(`b${i}`) : kind === 1 ? rq(`x${i}`) : kind === 2 && c === 1 ? rq(`a${i}`, '&cid=notacid') : rq(`a${i}c${c}`)
      out.push([path, headers])
    }
  }
  out.push([rq('a99'), { 'x-forwarded-for': '10.0.0.1', 'x-ratelimit-bypass': 'letmein' }])
  return out
}

describe('XrpcServer fastQuery with rate limits', () => {
  it('charges the same buckets once and answers the same statuses, headers and bodies as the regular path', async () => {
    const stores = { fast: new RecordingStore(), regular: new RecordingStore() }
    const p = await pair(
      (side) => ({
        trustedProxies: ['loopback'],
        rateLimits: {
          global: [{ name: 'ip', points: 6, durationMs: 3_600_000 }],
          store: stores[side],
          bypass: (req) => req.headers['x-ratelimit-bypass'] === 'letmein',
        },
      }),
      { rateLimit: { points: 4, durationMs: 3_600_000 } },
    )
    try {
      const statuses: number[] = []
      for (const [path, headers] of limitSequence()) {
        const a = await get(p.urls.fast, path, { headers })
        const b = await get(p.urls.regular, path, { headers })
        expectSameAnswer({ path, headers }, a, b)
        statuses.push(a.status)
      }
      expect(stores.fast.charges).toEqual(stores.regular.charges)
      // the sequence went past the limits, and the fast path answered part of it
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(5)
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(5)
      expect(p.seen.fast.fast).toBeGreaterThan(5)
      expect(stores.fast.charges.some((c) => c.startsWith('global:ip|10.0.0.3 '))).toBe(true)
      expect(stores.fast.charges.some((c) => c.startsWith('com.atproto.repo.getRecord:0|10.0.0.1 '))).toBe(true)
    } finally {
      await p.close()
    }
  })

  it('sends the RateLimit-* headers of the tightest limit on its own answers', async () => {
    const p = await pair(() => ({ rateLimits: { global: [{ points: 1000, durationMs: 60_000 }] } }), { rateLimit: { points: 3, durationMs: 60_000 } })
    try {
      const res = await get(p.urls.fast, rq('a1'))
      expect(res.status).toBe(200)
      expect(res.headers).toMatchObject({ 'ratelimit-limit': '3', 'ratelimit-remaining': '2', 'ratelimit-policy': '3;w=60' })
      expect(p.seen.fast).toEqual({ fast: 1, regular: 0 })
      await get(p.urls.fast, rq('a2'))
      await get(p.urls.fast, rq('a3'))
      const refused = await get(p.urls.fast, rq('a4'))
      expect(refused.status).toBe(429)
      expect(JSON.parse(refused.body)).toEqual({ error: 'RateLimitExceeded', message: 'Rate Limit Exceeded' })
      // refused by the fast path's charge, answered by the regular path without running the handler
      expect(p.seen.fast).toEqual({ fast: 4, regular: 0 })
    } finally {
      await p.close()
    }
  })

  it('keeps the regular path for a store that may answer later and for method limits with their own key', async () => {
    const asyncStore = new (class {
      inner = new MemoryRateLimitStore()
      consume(key: string, cost: number, spec: BucketSpec, now: number) {
        return Promise.resolve(this.inner.consume(key, cost, spec, now))
      }
      reset(key: string) {
        this.inner.reset(key)
      }
    })()
    const seenA: Seen = { fast: 0, regular: 0 }
    const a = makeServer({ rateLimits: { global: [{ points: 100, durationMs: 60_000 }], store: asyncStore } }, seenA)
    const seenB: Seen = { fast: 0, regular: 0 }
    const b = createXrpcServer({ metrics: false })
    b.method('com.atproto.repo.getRecord', {
      rateLimit: { points: 5, durationMs: 60_000, calcKey: (ctx) => String(ctx.params.repo) },
      handler: () => (seenB.regular++, { encoding: 'application/json', body: JSON.parse(recordText('a1')) }),
      fastQuery: () => (seenB.fast++, { body: recordText('a1') }),
    })
    try {
      expect((await get(await a.listen(), rq('a1'))).headers['ratelimit-limit']).toBe('100')
      expect(seenA).toEqual({ fast: 0, regular: 1 })
      expect((await get(await b.listen(), rq('a1'))).headers['ratelimit-limit']).toBe('5')
      expect(seenB).toEqual({ fast: 0, regular: 1 })
    } finally {
      await a.close()
      await b.close()
    }
  })
})

/** A log line without what differs between two servers or two runs: time, pid, host name, timings, ports. */
function logFields(line: string): Record<string, unknown> {
  const { time, pid, hostname, responseTime, ...rest } = JSON.parse(line) as Record<string, unknown>
  expect(typeof time).toBe('number')
  if (rest.msg === 'request completed') expect(typeof responseTime).toBe('number')
  const req = rest.req as Record<string, unknown> | undefined
  if (req) {
    expect(typeof req.remotePort).toBe('number')
    rest.req = { ...req, remotePort: 'port', host: String(req.host).replace(/:\d+$/, ':port') }
  }
  return rest
}

describe('XrpcServer fastQuery request logs', () => {
  it('writes the lines fastify writes (same reqIds, serializers, levels) at level info, and none at warn', async () => {
    const lines = { fast: [] as string[], regular: [] as string[] }
    const sink = (into: string[]) => new Writable({ write: (chunk, _enc, cb) => (into.push(...String(chunk).split('\n').filter(Boolean)), cb()) })
    const p = await pair(
      (side) => ({
        trustedProxies: ['loopback'],
        logger: pino({ level: 'info', base: { service: 'test' } }, sink(lines[side])),
        rateLimits: { global: [{ points: 5, durationMs: 3_600_000 }] },
      }),
    )
    try {
      lines.fast.length = lines.regular.length = 0 // "Server listening at <port>"
      const requests: [string, Record<string, string>][] = [
        [rq('a1'), {}],
        [rq('a2'), { 'x-forwarded-for': '10.1.1.1, 127.0.0.1', 'x-forwarded-host': 'pds.example, proxy.example', 'accept-version': '1' }],
        [rq('b1'), {}],
        [rq('x1'), { 'x-forwarded-for': '10.1.1.2' }],
        [rq('a3', '&cid=notacid'), {}],
        ...Array.from({ length: 6 }, (_, i): [string, Record<string, string>] => [rq(`a1${i}`), { 'x-forwarded-for': '10.1.1.3' }]),
      ]
      for (const [path, headers] of requests) {
        const a = await get(p.urls.fast, path, { headers })
        const b = await get(p.urls.regular, path, { headers })
        expect(a.status).toBe(b.status)
      }
      // request completed is written on 'finish', after the client may have its answer
      await new Promise((r) => setTimeout(r, 50))
      expect(p.seen.fast.fast).toBeGreaterThan(5)
      expect(lines.fast.length).toBeGreaterThan(requests.length * 2 - 1)
      expect(lines.fast.map(logFields)).toEqual(lines.regular.map(logFields))
      const first = logFields(lines.fast[0]!)
      expect(first).toMatchObject({ level: 30, service: 'test', reqId: 'req-1', msg: 'incoming request', req: { method: 'GET', url: rq('a1'), remoteAddress: '127.0.0.1' } })
      expect(lines.fast.map(logFields)).toContainEqual(
        expect.objectContaining({ msg: 'incoming request', req: expect.objectContaining({ remoteAddress: '10.1.1.1', host: 'proxy.example', version: '1' }) }),
      )
      expect(lines.fast.map(logFields)).toContainEqual(expect.objectContaining({ msg: 'request completed', res: { statusCode: 429 } }))

      // at warn, nothing per request on either path
      lines.fast.length = lines.regular.length = 0
      p.fast.app.log.level = 'warn'
      p.regular.app.log.level = 'warn'
      const before = p.seen.fast.fast
      await get(p.urls.fast, rq('a5'), { headers: { 'x-forwarded-for': '10.1.1.9' } })
      await get(p.urls.regular, rq('a5'), { headers: { 'x-forwarded-for': '10.1.1.9' } })
      await new Promise((r) => setTimeout(r, 20))
      expect(p.seen.fast.fast).toBe(before + 1)
      expect(lines).toEqual({ fast: [], regular: [] })
    } finally {
      await p.close()
    }
  })
})

describe('headerList (the fast path\'s response heads)', () => {
  it('gives the names, order and values an object spread of the same parts gives', () => {
    const names = ['a', 'b', 'content-type', 'content-length', 'x-extra', 'ratelimit-limit']
    let seed = 7
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n)
    const part = (): Record<string, string | number> | undefined => {
      if (rand(4) === 0) return undefined
      const out: Record<string, string | number> = {}
      for (let i = rand(4); i > 0; i--) out[names[rand(names.length)]!] = rand(2) ? `v${rand(100)}` : rand(100)
      return out
    }
    for (let i = 0; i < 500; i++) {
      const base = part() ?? {}
      const parts = [part(), part(), part()]
      const set: [string, number][] = rand(2) ? [['content-length', rand(1000)]] : []
      const spread: Record<string, string | number> = Object.assign({ ...base }, ...parts.map((p) => ({ ...p })))
      for (const [k, v] of set) spread[k] = v
      const list = headerList(Object.entries(base).flat(), ...parts)
      for (const [k, v] of set) setListedHeader(list, k, v)
      expect(list).toEqual(Object.entries(spread).flat())
    }
  })
})

describe('fastQuery params (validated once per query string)', () => {
  it('hands the same frozen params to requests with the same query string, and checks each new one', async () => {
    const seen: Record<string, unknown>[] = []
    const server = createXrpcServer({ metrics: false })
    server.method('com.atproto.repo.getRecord', {
      handler: ({ params }) => ({ encoding: 'application/json', body: { rkey: params.rkey, regular: true } }),
      fastQuery: (params) => {
        seen.push(params)
        return { body: JSON.stringify({ rkey: params.rkey }) }
      },
    })
    const url = await server.listen()
    try {
      const path = (rkey: string, extra = '') =>
        `/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(DID)}&collection=app.bsky.feed.post&rkey=${rkey}${extra}`
      expect((await get(url, path('a1'))).body).toBe('{"rkey":"a1"}')
      expect((await get(url, path('a1'))).body).toBe('{"rkey":"a1"}')
      expect((await get(url, path('a2'))).body).toBe('{"rkey":"a2"}')
      expect(seen).toHaveLength(3)
      expect(seen[1]).toBe(seen[0])
      expect(Object.isFrozen(seen[0])).toBe(true)
      expect(seen[2]).not.toBe(seen[0])
      expect(seen[2]).toEqual({ repo: DID, collection: 'app.bsky.feed.post', rkey: 'a2' })
      // bad params are never kept: each such request gets the regular path's 400
      for (let i = 0; i < 2; i++) {
        const bad = await get(url, path('a3', '&cid=notacid'))
        expect(bad.status).toBe(400)
      }
      expect(seen).toHaveLength(3)
    } finally {
      await server.close()
    }
  })
})

describe('fastQuery request counters (added when read)', () => {
  it('adds fast answers to the counters when they are read, not with a counter call per request', async () => {
    const server = createXrpcServer({ metrics: { defaultMetrics: false } })
    server.method('com.atproto.repo.getRecord', {
      handler: () => ({ encoding: 'application/json', body: { regular: true } }),
      fastQuery: (params) => ({ body: JSON.stringify({ rkey: params.rkey }) }),
    })
    const url = await server.listen()
    try {
      const metrics = server.metrics!
      const path = (rkey: string) => `/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(DID)}&collection=app.bsky.feed.post&rkey=${rkey}`
      const incs = vi.spyOn(metrics.requests, 'inc')
      for (let i = 0; i < 3; i++) expect((await get(url, path(`a${i}`))).status).toBe(200)
      expect(incs).not.toHaveBeenCalled()
      const value = async (name: string) =>
        (await metrics.registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.nsid === 'com.atproto.repo.getRecord' && !('le' in v.labels))?.value
      expect(await value('http_requests_total')).toBe(3)
      expect(await value('xrpc_fast_path_requests_total')).toBe(3)
      incs.mockRestore()
      for (let i = 0; i < 2; i++) await get(url, path(`b${i}`))
      const text = (await get(url, '/metrics')).body
      expect(text).toContain('http_requests_total{nsid="com.atproto.repo.getRecord",method="GET",status="200"} 5')
      expect(text).toContain('xrpc_fast_path_requests_total{nsid="com.atproto.repo.getRecord"} 5')
      expect(text).toContain('http_request_duration_seconds_count{nsid="com.atproto.repo.getRecord",status="200"} 5')
    } finally {
      await server.close()
    }
  })
})
