import { Readable, Writable } from 'node:stream'
import { AtpAgent } from '@atproto/api'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ForbiddenError,
  NotEnoughResourcesError,
  NotFoundError,
  createXrpcServer,
  type XrpcServer,
} from '@stratos/core/xrpc'

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'

describe('catchall, outputs, health, subscriptions mount point', () => {
  let upstream: XrpcServer
  let server: XrpcServer
  let url: string
  let healthy = true
  const proxied: string[] = []

  beforeAll(async () => {
    // an "AppView" the catchall forwards to
    upstream = createXrpcServer({ metrics: false })
    upstream.method('app.bsky.feed.getTimeline', () => ({ encoding: 'application/json', body: { feed: [], cursor: 'from-upstream' } }))
    const upstreamUrl = await upstream.listen()

    server = createXrpcServer({
      metrics: false,
      healthCheck: () => {
        if (!healthy) throw new Error('db down')
        return { db: 'ok' }
      },
      catchall: async ({ nsid, def, req, reply }) => {
        if (!nsid.startsWith('app.bsky.')) return // declined: 501
        proxied.push(`${req.method} ${nsid} ${def?.type}`)
        const res = await fetch(`${upstreamUrl}${req.url}`)
        reply.code(res.status).header('content-type', res.headers.get('content-type') ?? 'application/json')
        return reply.send(Buffer.from(await res.arrayBuffer()))
      },
    })
    server.method('com.atproto.sync.getBlob', ({ params }) => ({
      encoding: params.cid === 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' ? 'text/plain' : 'application/octet-stream',
      body: new Uint8Array([104, 105]),
      headers: { 'cache-control': 'public, max-age=60' },
    }))
    server.method('com.atproto.sync.getRepo', () => ({
      encoding: 'application/vnd.ipld.car',
      body: Readable.from([Buffer.from('car-'), Buffer.from('bytes')]),
    }))
    server.method('com.atproto.identity.resolveHandle', () => ({ encoding: 'json', body: { did: DID } }))
    server.method('com.atproto.repo.describeRepo', async () => {
      // a call to another service failing: its status and name are passed on
      const agent = new AtpAgent({ service: upstreamUrl })
      await agent.com.atproto.repo.describeRepo({ repo: DID })
    })
    server.method('com.atproto.repo.listRecords', async () => {
      // an upstream that cannot be reached: 502
      const agent = new AtpAgent({ service: 'http://127.0.0.1:1' })
      await agent.com.atproto.repo.listRecords({ repo: DID, collection: 'app.bsky.feed.post' })
    })
    server.method('app.bsky.actor.getProfile', ({ params }) => {
      if (params.actor === 'private.test') throw new ForbiddenError('Not allowed to see this profile')
      if (params.actor === 'busy.test') throw new NotEnoughResourcesError('Try again later')
      throw new NotFoundError('Profile not found', 'ProfileNotFound')
    })
    // what the stream helper does: a route of its own on the same app, which wins over /xrpc/:nsid
    server.app.get('/xrpc/com.atproto.sync.subscribeRepos', async (_req, reply) => {
      reply.code(426).send({ error: 'UpgradeRequired', message: 'use a WebSocket' })
    })
    url = await server.listen()
  })
  afterAll(async () => {
    await server?.close()
    await upstream?.close()
  })

  it('a catchall sees unregistered methods (after the verb check) and may answer them', async () => {
    const agent = new AtpAgent({ service: url })
    const res = await agent.app.bsky.feed.getTimeline({ limit: 5 })
    expect(res.data.cursor).toBe('from-upstream')
    expect(proxied).toEqual(['GET app.bsky.feed.getTimeline query'])
    const wrongVerb = await fetch(`${url}/xrpc/app.bsky.feed.getTimeline`, { method: 'POST' })
    expect(wrongVerb.status).toBe(400)
    expect(proxied.length).toBe(1)
  })

  it('sends bytes and streams with the encoding and headers the handler gives', async () => {
    const blob = await fetch(`${url}/xrpc/com.atproto.sync.getBlob?did=${DID}&cid=bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku`)
    expect(blob.status).toBe(200)
    expect(blob.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(blob.headers.get('cache-control')).toBe('public, max-age=60')
    expect(await blob.text()).toBe('hi')
    const car = await fetch(`${url}/xrpc/com.atproto.sync.getRepo?did=${DID}`)
    expect(car.headers.get('content-type')).toBe('application/vnd.ipld.car')
    expect(await car.text()).toBe('car-bytes')
    const head = await fetch(`${url}/xrpc/com.atproto.identity.resolveHandle?handle=alice.test`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    const json = await fetch(`${url}/xrpc/com.atproto.identity.resolveHandle?handle=alice.test`)
    expect(json.headers.get('content-type')).toBe('application/json; charset=utf-8')
    expect(await json.json()).toEqual({ did: DID })
  })

  it('errors from calls to other services keep their status and name; unreachable ones are 502', async () => {
    const passed = await fetch(`${url}/xrpc/com.atproto.repo.describeRepo?repo=${DID}`)
    expect(passed.status).toBe(501)
    expect((await passed.json()).error).toBe('MethodNotImplemented')
    const unreachable = await fetch(`${url}/xrpc/com.atproto.repo.listRecords?repo=${DID}&collection=app.bsky.feed.post`)
    expect(unreachable.status).toBe(502)
    expect((await unreachable.json()).error).toBe('UpstreamFailure')
  })

  it('403, 404 and 503 errors reach the client with their status and name', async () => {
    const agent = new AtpAgent({ service: url })
    const statusOf = async (actor: string) => {
      try {
        await agent.app.bsky.actor.getProfile({ actor })
      } catch (err) {
        const e = err as { status: number; error: string; message: string }
        return [e.status, e.error, e.message]
      }
      throw new Error('expected an error')
    }
    expect(await statusOf('private.test')).toEqual([403, 'Forbidden', 'Not allowed to see this profile'])
    expect(await statusOf('busy.test')).toEqual([503, 'NotEnoughResources', 'Try again later'])
    expect(await statusOf('nobody.test')).toEqual([404, 'ProfileNotFound', 'Profile not found'])
  })

  it('a route mounted on server.app takes precedence (subscriptions); unmounted subscriptions are 501', async () => {
    const res = await fetch(`${url}/xrpc/com.atproto.sync.subscribeRepos`)
    expect(res.status).toBe(426)
    const other = await fetch(`${url}/xrpc/com.atproto.label.subscribeLabels`)
    expect(other.status).toBe(501)
    // a method the catchall declines is 501 as well
    const declined = await fetch(`${url}/xrpc/com.atproto.server.getSession`)
    expect(declined.status).toBe(501)
    expect(await declined.json()).toEqual({ error: 'MethodNotImplemented', message: 'Method not implemented: com.atproto.server.getSession' })
  })

  it('_health reports the health check, and 503 when it fails', async () => {
    const ok = await fetch(`${url}/xrpc/_health`)
    expect(ok.status).toBe(200)
    const body = await ok.json()
    expect(body.db).toBe('ok')
    expect(typeof body.version).toBe('string')
    healthy = false
    const down = await fetch(`${url}/xrpc/_health`)
    expect(down.status).toBe(503)
    expect(await down.json()).toEqual({ version: body.version, error: 'Service Unavailable' })
    healthy = true
  })
})

describe('logging', () => {
  it('writes pino JSON lines through the logger option, with 5xx errors logged', async () => {
    const lines: Record<string, unknown>[] = []
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line))
        cb()
      },
    })
    const server = createXrpcServer({ logger: pino({ level: 'info' }, sink), metrics: false })
    server.method('com.atproto.identity.resolveHandle', () => {
      throw new Error('resolver exploded')
    })
    const url = await server.listen()
    try {
      const res = await fetch(`${url}/xrpc/com.atproto.identity.resolveHandle?handle=alice.test`)
      expect(res.status).toBe(500)
      await new Promise((r) => setTimeout(r, 20))
      const completed = lines.find((l) => l.msg === 'request completed')
      expect(completed).toMatchObject({ level: 30, res: { statusCode: 500 } })
      const failure = lines.find((l) => l.msg === 'xrpc request failed')
      expect(failure).toMatchObject({ level: 50, err: { message: 'resolver exploded' } })
    } finally {
      await server.close()
    }
  })

  it('internal error messages can be exposed on request', async () => {
    const server = createXrpcServer({ metrics: false, exposeInternalErrors: true })
    server.method('com.atproto.identity.resolveHandle', () => {
      throw new Error('resolver exploded')
    })
    const url = await server.listen()
    try {
      const res = await fetch(`${url}/xrpc/com.atproto.identity.resolveHandle?handle=alice.test`)
      expect(await res.json()).toEqual({ error: 'InternalServerError', message: 'resolver exploded' })
    } finally {
      await server.close()
    }
  })
})
