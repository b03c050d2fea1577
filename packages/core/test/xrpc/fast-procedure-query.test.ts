import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { AuthRequiredError, createXrpcServer, InvalidRequestError, type PlainMethodHandler, type XrpcServerOptions } from '@stratos/core/xrpc'
import { expectSameAnswer, lineSink, logFields, RecordingStore } from './_fast-path.js'

/**
 * A server with the query app.bsky.feed.getTimeline (fastProcedure and handler alike: its answer names the
 * viewer and echoes a request header; the cursor "fail" is refused), auth by `Bearer <did>`, a per-IP global
 * limit: an authenticated query answered by a worker, as the AppView's read methods are.
 */
function makeServer(opts: XrpcServerOptions, seen: { fast: number }, fastPath: boolean) {
  const server = createXrpcServer({ metrics: {}, trustedProxies: ['loopback'], fastQueries: fastPath, ...opts })
  const handler: PlainMethodHandler<{ did: string }, { limit?: number; cursor?: string }> = async ({ params, auth, req }) => {
    await new Promise((r) => setImmediate(r))
    if (params.cursor === 'fail') throw new InvalidRequestError('refused by the handler', 'Refused')
    const echo = req?.headers['x-echo']
    return {
      encoding: 'application/json',
      body: { feed: [], cursor: `${auth.credentials.did}:${params.limit ?? 'none'}` },
      headers: { 'x-echo': typeof echo === 'string' ? echo : '-' },
    }
  }
  server.method('app.bsky.feed.getTimeline', {
    auth: async ({ req }) => {
      const h = req.headers.authorization
      if (typeof h !== 'string' || !h.startsWith('Bearer ')) throw new AuthRequiredError('no token', undefined, { missing: true })
      return { credentials: { did: h.slice('Bearer '.length) } }
    },
    handler,
    fastProcedure: (ctx) => (seen.fast++, handler(ctx)),
    fastProcedureLimits: true,
  })
  return server
}

async function get(base: string, path: string, headers: Record<string, string>, method = 'GET') {
  const res = await fetch(`${base}${path}`, { method, headers })
  const out = Object.fromEntries([...res.headers].filter(([k]) => k !== 'date' && k !== 'keep-alive' && k !== 'connection'))
  return { status: res.status, body: await res.text(), headers: out }
}

/** Answered, unauthenticated, bad params, refused by the handler, a HEAD, past the per-IP limit. */
function sequence(): [string, Record<string, string>, string][] {
  const out: [string, Record<string, string>, string][] = []
  const clients = ['10.0.0.1', '10.0.0.2, 127.0.0.1']
  for (let i = 0; i < 5; i++) {
    for (const [c, xff] of clients.entries()) {
      const headers: Record<string, string> = { 'x-forwarded-for': xff, 'x-echo': `e${i}` }
      const kind = (i + c) % 5
      if (kind !== 1) headers.authorization = `Bearer did:plc:${c === 1 ? 'b' : 'a'}`
      const query = kind === 2 ? '?limit=abc' : kind === 3 ? '?cursor=fail' : `?limit=${10 + i}`
      out.push([`/xrpc/app.bsky.feed.getTimeline${query}`, headers, kind === 4 && c === 0 ? 'HEAD' : 'GET'])
    }
  }
  return out
}

describe('XrpcServer fastProcedure for a query', () => {
  it('answers an authenticated GET ahead of fastify with the same statuses, headers, bodies, charges, log lines and metrics as the regular path', async () => {
    const stores = { fast: new RecordingStore(), regular: new RecordingStore() }
    const lines = { fast: [] as string[], regular: [] as string[] }
    const seen = { fast: { fast: 0 }, regular: { fast: 0 } }
    const opts = (side: 'fast' | 'regular'): XrpcServerOptions => ({
      logger: pino({ level: 'info', base: { service: 'test' } }, lineSink(lines[side])),
      rateLimits: { global: [{ name: 'ip', points: 4, durationMs: 3_600_000 }], store: stores[side] },
    })
    const fast = makeServer(opts('fast'), seen.fast, true)
    const regular = makeServer(opts('regular'), seen.regular, false)
    const urls = { fast: await fast.listen(), regular: await regular.listen() }
    try {
      lines.fast.length = lines.regular.length = 0 // "Server listening at <port>"
      const statuses: number[] = []
      for (const [path, headers, method] of sequence()) {
        const a = await get(urls.fast, path, headers, method)
        const b = await get(urls.regular, path, headers, method)
        expectSameAnswer({ path, headers, method }, a, b)
        statuses.push(a.status)
      }
      for (const s of [200, 400, 401, 429]) expect(statuses).toContain(s)
      expect(stores.fast.charges).toEqual(stores.regular.charges)
      expect(seen.fast.fast).toBeGreaterThan(2)
      expect(seen.regular.fast).toBe(0)

      await new Promise((r) => setTimeout(r, 50))
      expect(lines.fast.length).toBeGreaterThan(sequence().length * 2 - 1)
      expect(lines.fast.map(logFields)).toEqual(lines.regular.map(logFields))

      const counts = async (base: string) =>
        (await get(base, '/metrics', {})).body
          .split('\n')
          .filter((l) => l.startsWith('http_requests_total{') && l.includes('app.bsky.feed.getTimeline'))
          .sort()
      expect(await counts(urls.fast)).toEqual(await counts(urls.regular))
    } finally {
      await fast.close()
      await regular.close()
    }
  })

  it('keeps a query string\'s validated params (frozen, shared by its requests); bad ones are checked each time', async () => {
    const seen: unknown[] = []
    const server = createXrpcServer({ metrics: false })
    server.method('app.bsky.feed.getTimeline', {
      auth: async () => ({ credentials: { did: 'did:plc:a' } }),
      handler: () => ({ encoding: 'application/json', body: { feed: [] } }),
      fastProcedure: ({ params }) => (seen.push(params), { encoding: 'application/json', body: { feed: [] } }),
    })
    try {
      const base = await server.listen()
      for (const q of ['limit=5', 'limit=5', 'limit=6', 'limit=abc', 'limit=abc']) {
        const res = await get(base, `/xrpc/app.bsky.feed.getTimeline?${q}`, {})
        expect(res.status).toBe(q === 'limit=abc' ? 400 : 200)
      }
      expect(seen.length).toBe(3)
      expect(seen[0]).toBe(seen[1])
      expect(Object.isFrozen(seen[0])).toBe(true)
      expect(seen[2]).toEqual({ limit: 6 })
    } finally {
      await server.close()
    }
  })

  it('freezes a kept array param too: a handler cannot change what later requests with that string get', async () => {
    const seen: { actors: string[] }[] = []
    const server = createXrpcServer({ metrics: false })
    server.method('app.bsky.actor.getProfiles', {
      handler: () => ({ encoding: 'application/json', body: { profiles: [] } }),
      fastProcedure: ({ params }) => {
        const p = params as { actors: string[] }
        seen.push(p)
        // a careless handler sorting in place: refused on the shared array, not silently applied
        expect(() => p.actors.sort()).toThrow(TypeError)
        return { encoding: 'application/json', body: { profiles: [] } }
      },
    })
    try {
      const base = await server.listen()
      for (let i = 0; i < 2; i++) {
        const res = await get(base, '/xrpc/app.bsky.actor.getProfiles?actors=did:plc:b&actors=did:plc:a', {})
        expect(res.status).toBe(200)
      }
      expect(seen[0]).toBe(seen[1])
      expect(seen[1]!.actors).toEqual(['did:plc:b', 'did:plc:a'])
      expect(Object.isFrozen(seen[0]!.actors)).toBe(true)
    } finally {
      await server.close()
    }
  })
})
