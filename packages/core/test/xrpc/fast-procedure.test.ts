import pino from 'pino'
import { describe, expect, it } from 'vitest'
import {
  AuthRequiredError,
  createXrpcServer,
  InvalidRequestError,
  type HandlerContext,
  type PlainMethodHandler,
  type XrpcServerOptions,
} from '@stratos/core/xrpc'
import { expectSameAnswer, lineSink, logFields, RecordingStore } from './_fast-path.js'

const didOf = (ctx: HandlerContext) => (ctx.auth.credentials as { did?: string } | null)?.did ?? null

/**
 * A server with com.atproto.repo.createRecord (fastProcedure and handler alike; a record text "fail" is
 * refused), auth by `Bearer <did>`, a per-IP global limit and a per-account budget charging the record
 * text's length, as the PDS's repo write limits charge by DID and by the input.
 */
function makeServer(opts: XrpcServerOptions, seen: { fast: number }, fastPath: boolean) {
  const server = createXrpcServer({ metrics: {}, trustedProxies: ['loopback'], fastQueries: fastPath, ...opts })
  const handler: PlainMethodHandler<{ did: string }> = ({ input, auth }) => {
    const body = input!.body as { repo: string; record: { text: string } }
    if (body.record.text === 'fail') throw new InvalidRequestError('refused by the handler', 'Refused')
    return { encoding: 'application/json', body: { uri: `at://${auth.credentials.did}/app.bsky.feed.post/x`, cid: 'bafy' }, headers: { 'x-extra': 'yes' } }
  }
  server.method('com.atproto.repo.createRecord', {
    auth: async ({ req }) => {
      const h = req.headers.authorization
      if (typeof h !== 'string' || !h.startsWith('Bearer ')) throw new AuthRequiredError('no token', undefined, { missing: true })
      return { credentials: { did: h.slice('Bearer '.length) } }
    },
    rateLimit: { points: 10, durationMs: 3_600_000, calcKey: didOf, calcPoints: (ctx) => String((ctx.input?.body as { record?: { text?: string } })?.record?.text ?? '').length },
    handler,
    fastProcedure: (ctx) => (seen.fast++, handler(ctx)),
    fastProcedureLimits: true,
  })
  return server
}

async function pair(opts: (side: 'fast' | 'regular') => XrpcServerOptions) {
  const seen = { fast: { fast: 0 }, regular: { fast: 0 } }
  const fast = makeServer(opts('fast'), seen.fast, true)
  const regular = makeServer(opts('regular'), seen.regular, false)
  const urls = { fast: await fast.listen(), regular: await regular.listen() }
  return { fast, regular, urls, seen, close: async () => (await fast.close(), await regular.close()) }
}

async function post(base: string, body: string, headers: Record<string, string>) {
  const res = await fetch(`${base}/xrpc/com.atproto.repo.createRecord`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
  const out = Object.fromEntries([...res.headers].filter(([k]) => k !== 'date' && k !== 'keep-alive' && k !== 'connection'))
  return { status: res.status, body: await res.text(), headers: out }
}

const write = (text: string, repo = 'did:plc:a') => JSON.stringify({ repo, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text, createdAt: '2026-12-07T12:00:00.000Z' } })

/** Writes by two accounts from three clients, past both limits: answered, refused by the handler, unauthenticated, bad input, bypassed. */
function sequence(): [string, Record<string, string>][] {
  const out: [string, Record<string, string>][] = []
  const clients = ['10.0.0.1', '10.0.0.2, 127.0.0.1', '']
  for (let i = 0; i < 7; i++) {
    for (const [c, xff] of clients.entries()) {
      const headers: Record<string, string> = xff ? { 'x-forwarded-for': xff } : {}
      const kind = (i + c) % 6
      if (kind !== 3) headers.authorization = `Bearer did:plc:${c === 1 ? 'b' : 'a'}`
      const body = kind === 1 ? write('fail') : kind === 2 ? '{"repo":"did:plc:a"}' : write('x'.repeat(1 + (i % 3)))
      out.push([body, headers])
    }
  }
  out.push([write('xx'), { 'x-forwarded-for': '10.0.0.1', authorization: 'Bearer did:plc:a', 'x-ratelimit-bypass': 'letmein' }])
  return out
}

describe('XrpcServer fastProcedure with rate limits and request logs', () => {
  it('charges the same buckets and answers the same statuses, headers, bodies and log lines as the regular path', async () => {
    const stores = { fast: new RecordingStore(), regular: new RecordingStore() }
    const lines = { fast: [] as string[], regular: [] as string[] }
    const p = await pair((side) => ({
      logger: pino({ level: 'info', base: { service: 'test' } }, lineSink(lines[side])),
      rateLimits: {
        global: [{ name: 'ip', points: 5, durationMs: 3_600_000 }],
        store: stores[side],
        bypass: (req) => req.headers['x-ratelimit-bypass'] === 'letmein',
      },
    }))
    try {
      lines.fast.length = lines.regular.length = 0 // "Server listening at <port>"
      const statuses: number[] = []
      for (const [body, headers] of sequence()) {
        const a = await post(p.urls.fast, body, headers)
        const b = await post(p.urls.regular, body, headers)
        expectSameAnswer({ body, headers }, a, b)
        statuses.push(a.status)
      }
      expect(stores.fast.charges).toEqual(stores.regular.charges)
      for (const s of [200, 400, 401, 429]) expect(statuses).toContain(s)
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(3)
      expect(p.seen.fast.fast).toBeGreaterThan(5)
      expect(p.seen.regular.fast).toBe(0)
      // both limits refused some writes: the per-IP one and the per-account one
      expect(stores.fast.charges.some((c) => c.startsWith('global:ip|10.0.0.2 ') && c.endsWith('refused'))).toBe(true)
      expect(stores.fast.charges.some((c) => c.startsWith('com.atproto.repo.createRecord:0|did:plc:a ') && c.endsWith('refused'))).toBe(true)

      await new Promise((r) => setTimeout(r, 50))
      expect(lines.fast.length).toBeGreaterThan(sequence().length * 2 - 1)
      expect(lines.fast.map(logFields)).toEqual(lines.regular.map(logFields))
      expect(lines.fast.map(logFields)).toContainEqual(expect.objectContaining({ msg: 'request completed', res: { statusCode: 429 } }))
    } finally {
      await p.close()
    }
  })

  it('keeps the regular path while rate limits apply to a method without fastProcedureLimits', async () => {
    const seen = { fast: 0 }
    const server = createXrpcServer({ metrics: false, rateLimits: { global: [{ points: 100, durationMs: 60_000 }] } })
    server.method('com.atproto.repo.createRecord', {
      auth: async () => ({ credentials: { did: 'did:plc:a' } }),
      handler: () => ({ encoding: 'application/json', body: { uri: 'at://did:plc:a/app.bsky.feed.post/x', cid: 'bafy' } }),
      fastProcedure: () => (seen.fast++, { encoding: 'application/json', body: { uri: 'at://did:plc:a/app.bsky.feed.post/x', cid: 'bafy' } }),
    })
    try {
      const res = await post(await server.listen(), write('x'), {})
      expect(res.status).toBe(200)
      expect(res.headers['ratelimit-limit']).toBe('100')
      expect(seen.fast).toBe(0)
    } finally {
      await server.close()
    }
  })
})
