import { Writable } from 'node:stream'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createXrpcServer, InvalidRequestError, type XrpcServer, type XrpcServerOptions } from '@stratos/core/xrpc'

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
function makeServer(opts: XrpcServerOptions, seen: Seen): XrpcServer {
  const server = createXrpcServer({ metrics: {}, ...opts })
  const answer = (rkey: string) => {
    if (rkey.startsWith('x')) throw new InvalidRequestError(`Could not locate record: ${rkey}`, 'RecordNotFound')
    return recordText(rkey)
  }
  server.method('com.atproto.repo.getRecord', {
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

  it('is not used while fastify logs each request, nor with a rate limit on the method', async () => {
    const lines: string[] = []
    const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) })
    const seen: Seen = { fast: 0, regular: 0 }
    const logged = makeServer({ logger: pino({ level: 'info' }, sink) }, seen)
    const limitedSeen: Seen = { fast: 0, regular: 0 }
    const limited = makeServer({ rateLimits: { global: [{ name: 'all', points: 1000, durationMs: 60_000 }] } }, limitedSeen)
    try {
      const base = await logged.listen()
      expect((await get(base, q('a1'))).status).toBe(200)
      expect(seen).toEqual({ fast: 0, regular: 1 })
      expect(lines.some((l) => l.includes('request completed'))).toBe(true)
      const limitedBase = await limited.listen()
      const res = await get(limitedBase, q('a1'))
      expect(res.status).toBe(200)
      expect(res.headers['ratelimit-limit']).toBe('1000')
      expect(limitedSeen).toEqual({ fast: 0, regular: 1 })
    } finally {
      await logged.close()
      await limited.close()
    }
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
