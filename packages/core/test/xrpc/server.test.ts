import { Readable } from 'node:stream'
import { AtpAgent, XRPCError as ClientXRPCError } from '@atproto/api'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuthRequiredError,
  XRPCError,
  adminBasicAuth,
  bearerAuth,
  createXrpcServer,
  optional,
  type XrpcServer,
} from '@stratos/core/xrpc'

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const NOW = '2024-05-01T12:00:00.000Z'

async function rawCid(bytes: Uint8Array): Promise<string> {
  return CID.create(1, 0x55, await sha256.digest(bytes)).toString()
}

/** Calls that must fail: returns the client's XRPCError. */
async function clientError(p: Promise<unknown>): Promise<ClientXRPCError> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(ClientXRPCError)
    return err as ClientXRPCError
  }
  throw new Error('expected the call to fail')
}

let server: XrpcServer
let url: string
const received: { streamBytes?: number; streamError?: string } = {}

beforeAll(async () => {
  server = createXrpcServer({
    validateOutput: true,
    version: '1.2.3-test',
    bodyLimits: { json: 4096 },
  })
  const users = new Map([['good-token', { did: DID }]])
  const userAuth = bearerAuth(async (token) => {
    const user = users.get(token)
    if (!user) throw new AuthRequiredError('Token is not valid', 'InvalidToken')
    return user
  })

  server.method('app.bsky.feed.getAuthorFeed', ({ params }) => ({
    encoding: 'application/json',
    // echo what the handler received, so the client can see the coerced types
    body: { feed: [], cursor: `${typeof params.limit}:${params.limit}:${params.filter}:${params.includePins}` },
  }))

  // the same record as a lex value (a CID object) and as plain JSON ($link): both are sent as JSON
  const linkedRecord = (plain: boolean) => ({
    uri: `at://${DID}/app.bsky.feed.post/3kznmn7xqxl22`,
    cid: 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq',
    value: {
      $type: 'app.bsky.feed.post',
      text: 'hi',
      createdAt: NOW,
      embed: {
        $type: 'app.bsky.embed.external',
        external: {
          uri: 'https://example.com',
          title: 't',
          description: 'd',
          thumb: {
            $type: 'blob',
            ref: plain ? { $link: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' } : CID.parse('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'),
            mimeType: 'image/jpeg',
            size: 3,
          },
        },
      },
    },
  })
  server.method('com.atproto.repo.listRecords', ({ params }) => ({
    encoding: 'application/json',
    body: { records: [linkedRecord(params.collection === 'com.example.plain')] },
    plainJson: params.collection === 'com.example.plain',
  }))

  server.method('app.bsky.actor.getProfiles', ({ params }) => ({
    encoding: 'application/json',
    body: {
      profiles: (params.actors as string[]).map((a, i) => ({ did: `did:plc:${'a'.repeat(23)}${i}`, handle: a })),
    },
  }))

  server.method('com.atproto.repo.createRecord', {
    auth: userAuth,
    handler: ({ input, auth }) => {
      const body = input!.body as { repo: string; collection: string; record: { text: string } }
      return {
        encoding: 'application/json',
        body: {
          uri: `at://${(auth.credentials as { did: string }).did}/${body.collection}/3kznmn7xqxl22`,
          cid: 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq',
        },
        headers: { 'Atproto-Repo-Rev': '3kznmn7xqxl22' },
      }
    },
  })

  server.method('com.atproto.repo.getRecord', ({ params }) => {
    if (params.rkey === 'missing') throw new XRPCError(400, 'RecordNotFound', `Could not locate record: ${params.rkey}`)
    if (params.rkey === 'crash') throw new Error('database is on fire')
    const uri = `at://${params.repo}/${params.collection}/${params.rkey}`
    const value = { $type: 'app.bsky.feed.post', text: 'hi', createdAt: NOW }
    // "broken" leaves out the required uri: an invalid output
    return { encoding: 'application/json', body: params.rkey === 'broken' ? { value } : { uri, value } }
  })

  server.method('com.atproto.admin.getAccountInfo', {
    auth: adminBasicAuth('hunter2'),
    handler: ({ params }) => ({
      encoding: 'application/json',
      body: { did: params.did, handle: 'alice.test', indexedAt: NOW },
    }),
  })

  server.method('com.atproto.server.describeServer', {
    auth: optional(userAuth),
    handler: ({ auth }) => ({
      encoding: 'application/json',
      body: { did: 'did:web:pds.test', availableUserDomains: [auth.credentials ? '.signed-in.test' : '.test'] },
    }),
  })

  server.method('com.atproto.identity.resolveHandle', {
    rateLimit: { points: 2, durationMs: 60_000 },
    handler: () => ({ encoding: 'application/json', body: { did: DID } }),
  })

  server.method('com.atproto.repo.uploadBlob', {
    bodyLimit: 1024,
    handler: async ({ input }) => {
      const bytes = input!.body as Buffer
      expect(Buffer.isBuffer(bytes)).toBe(true)
      return {
        encoding: 'application/json',
        body: { blob: { $type: 'blob', ref: { $link: await rawCid(bytes) }, mimeType: input!.encoding, size: bytes.length } },
      }
    },
  })

  server.method('com.atproto.repo.importRepo', {
    rawInput: 'stream',
    bodyLimit: 10_000,
    handler: async ({ input }) => {
      const stream = input!.body as Readable
      expect(stream).toBeInstanceOf(Readable)
      let n = 0
      try {
        for await (const chunk of stream) n += (chunk as Buffer).length
      } catch (err) {
        received.streamError = (err as Error).message
        throw err
      }
      received.streamBytes = n
    },
  })

  url = await server.listen()
})

afterAll(async () => {
  await server?.close()
})

describe('xrpc server with the @atproto/api client', () => {
  it('serves a query, coercing params from the query string (limit as integer, defaults applied)', async () => {
    const agent = new AtpAgent({ service: url })
    const res = await agent.app.bsky.feed.getAuthorFeed({ actor: 'alice.test', limit: 7 })
    expect(res.success).toBe(true)
    expect(res.data.cursor).toBe('number:7:posts_with_replies:false')
    const dflt = await agent.app.bsky.feed.getAuthorFeed({ actor: 'alice.test' })
    expect(dflt.data.cursor).toBe('number:50:posts_with_replies:false')
  })

  it('JSON bodies: lex values are converted (a CID becomes $link); plainJson bodies are sent as they are', async () => {
    const get = async (collection: string) => {
      const res = await fetch(`${url}/xrpc/com.atproto.repo.listRecords?repo=${DID}&collection=${collection}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
      return res.text()
    }
    const lex = await get('app.bsky.feed.post')
    const plain = await get('com.example.plain')
    expect(JSON.parse(lex).records[0].value.embed.external.thumb.ref).toEqual({ $link: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' })
    expect(plain).toBe(lex)
  })

  it('turns repeated keys into arrays', async () => {
    const agent = new AtpAgent({ service: url })
    const res = await agent.app.bsky.actor.getProfiles({ actors: ['a.test', 'b.test', 'c.test'] })
    expect(res.data.profiles.map((p) => p.handle)).toEqual(['a.test', 'b.test', 'c.test'])
  })

  it('serves a procedure with JSON input, auth and response headers', async () => {
    const agent = new AtpAgent({ service: url })
    agent.setHeader('authorization', 'Bearer good-token')
    const res = await agent.com.atproto.repo.createRecord({
      repo: DID,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'hello', createdAt: NOW },
    })
    expect(res.data.uri).toBe(`at://${DID}/app.bsky.feed.post/3kznmn7xqxl22`)
    expect(res.headers['atproto-repo-rev']).toBe('3kznmn7xqxl22')
  })

  it('refuses invalid params with 400 InvalidRequest and the validator message', async () => {
    const agent = new AtpAgent({ service: url })
    const tooBig = await clientError(agent.app.bsky.feed.getAuthorFeed({ actor: 'alice.test', limit: 1000 }))
    expect(tooBig.status).toBe(400)
    expect(tooBig.error).toBe('InvalidRequest')
    expect(tooBig.message).toBe('limit can not be greater than 100')
    const missing = await clientError(agent.app.bsky.feed.getAuthorFeed({} as never))
    expect(missing.error).toBe('InvalidRequest')
    expect(missing.message).toBe('Params must have the property "actor"')
    const res = await fetch(`${url}/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.test&limit=seven`)
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: 'InvalidRequest', message: 'limit must be an integer' })
  })

  it('refuses invalid JSON input with 400', async () => {
    const agent = new AtpAgent({ service: url })
    agent.setHeader('authorization', 'Bearer good-token')
    const err = await clientError(agent.com.atproto.repo.createRecord({ repo: DID, record: {} } as never))
    expect(err.status).toBe(400)
    expect(err.error).toBe('InvalidRequest')
    expect(err.message).toBe('Input must have the property "collection"')
  })

  it('answers 401 (with WWW-Authenticate) when auth is required and missing or bad', async () => {
    const agent = new AtpAgent({ service: url })
    const input = { repo: DID, collection: 'app.bsky.feed.post', record: { text: 'x', createdAt: NOW } }
    const none = await clientError(agent.com.atproto.repo.createRecord(input))
    expect(none.status).toBe(401)
    expect(none.error).toBe('AuthenticationRequired')
    agent.setHeader('authorization', 'Bearer wrong-token')
    const bad = await clientError(agent.com.atproto.repo.createRecord(input))
    expect(bad.status).toBe(401)
    expect(bad.error).toBe('InvalidToken')

    const res = await fetch(`${url}/xrpc/com.atproto.repo.createRecord`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(input),
    })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe('Bearer')
    expect((await res.json()).error).toBe('AuthenticationRequired')
  })

  it('optional auth: anonymous without a header, the user with a good one, 401 with a bad one', async () => {
    const agent = new AtpAgent({ service: url })
    expect((await agent.com.atproto.server.describeServer()).data.availableUserDomains).toEqual(['.test'])
    agent.setHeader('authorization', 'Bearer good-token')
    expect((await agent.com.atproto.server.describeServer()).data.availableUserDomains).toEqual(['.signed-in.test'])
    agent.setHeader('authorization', 'Bearer nope')
    expect((await clientError(agent.com.atproto.server.describeServer())).status).toBe(401)
  })

  it('admin basic auth: the right password passes, a wrong one or user is 401', async () => {
    const call = (user: string, pw: string) =>
      fetch(`${url}/xrpc/com.atproto.admin.getAccountInfo?did=${DID}`, {
        headers: { authorization: 'Basic ' + Buffer.from(`${user}:${pw}`).toString('base64') },
      })
    const ok = await call('admin', 'hunter2')
    expect(ok.status).toBe(200)
    expect((await ok.json()).handle).toBe('alice.test')
    for (const [user, pw] of [['admin', 'hunter3'], ['admin', ''], ['root', 'hunter2'], ['admin', 'hunter2 ']]) {
      const res = await call(user!, pw!)
      expect(res.status, `${user}:${pw}`).toBe(401)
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="admin"/)
      expect(await res.json()).toEqual({ error: 'AuthenticationRequired', message: 'Invalid admin credentials' })
    }
    const agent = new AtpAgent({ service: url })
    agent.setHeader('authorization', 'Basic ' + Buffer.from('admin:hunter2').toString('base64'))
    expect((await agent.com.atproto.admin.getAccountInfo({ did: DID })).data.did).toBe(DID)
    agent.setHeader('authorization', 'Bearer good-token')
    expect((await clientError(agent.com.atproto.admin.getAccountInfo({ did: DID }))).status).toBe(401)
  })

  it("a lexicon error name thrown by a handler (getRecord's RecordNotFound) reaches the client", async () => {
    const agent = new AtpAgent({ service: url })
    const err = await clientError(agent.com.atproto.repo.getRecord({ repo: DID, collection: 'app.bsky.feed.post', rkey: 'missing' }))
    expect(err.status).toBe(400)
    expect(err.error).toBe('RecordNotFound')
    expect(err.message).toBe('Could not locate record: missing')
    expect(err.constructor.name).toBe('RecordNotFoundError') // the client's typed error class
    const ok = await agent.com.atproto.repo.getRecord({ repo: DID, collection: 'app.bsky.feed.post', rkey: 'fine' })
    expect(ok.data.uri).toBe(`at://${DID}/app.bsky.feed.post/fine`)
  })

  it('an output that breaks the lexicon is a 500 naming the problem (validateOutput on)', async () => {
    const res = await fetch(`${url}/xrpc/com.atproto.repo.getRecord?repo=${DID}&collection=app.bsky.feed.post&rkey=broken`)
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({
      error: 'InternalServerError',
      message: 'Invalid output for com.atproto.repo.getRecord: Output must have the property "uri"',
    })
  })

  it('an unexpected handler error is a 500 without internals', async () => {
    const res = await fetch(`${url}/xrpc/com.atproto.repo.getRecord?repo=${DID}&collection=app.bsky.feed.post&rkey=crash`)
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: 'InternalServerError', message: 'Internal Server Error' })
  })

  it('unknown methods and known methods without a handler are 501 MethodNotImplemented', async () => {
    const agent = new AtpAgent({ service: url })
    const known = await clientError(agent.app.bsky.feed.getTimeline({}))
    expect(known.status).toBe(501)
    expect(known.error).toBe('MethodNotImplemented')
    const res = await fetch(`${url}/xrpc/com.example.nothing.here`)
    expect(res.status).toBe(501)
    expect(await res.json()).toEqual({ error: 'MethodNotImplemented', message: 'Unknown method: com.example.nothing.here' })
    const post = await fetch(`${url}/xrpc/com.example.nothing.here`, { method: 'POST' })
    expect(post.status).toBe(501)
  })
})

describe('xrpc server over plain HTTP', () => {
  it('the wrong HTTP verb for a known method is 400 InvalidRequest', async () => {
    const q = await fetch(`${url}/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.test`, { method: 'POST' })
    expect(q.status).toBe(400)
    expect(await q.json()).toEqual({ error: 'InvalidRequest', message: 'Incorrect HTTP method (POST) expected GET' })
    const p = await fetch(`${url}/xrpc/com.atproto.repo.createRecord`)
    expect(p.status).toBe(400)
    expect((await p.json()).message).toBe('Incorrect HTTP method (GET) expected POST')
  })

  it('a path that is not an NSID is 400', async () => {
    const res = await fetch(`${url}/xrpc/not_an_nsid`)
    expect(res.status).toBe(400)
    expect((await res.json()).error).toBe('InvalidRequest')
  })

  it('bad JSON is a 400 JSON error', async () => {
    const res = await fetch(`${url}/xrpc/com.atproto.repo.createRecord`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer good-token' },
      body: '{"repo": "did:plc:x",',
    })
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    const body = await res.json()
    expect(body.error).toBe('InvalidRequest')
    expect(body.message).toMatch(/^Invalid JSON body/)
  })

  it('a body needs a Content-Type, of the encoding the lexicon names', async () => {
    const noType = await fetch(`${url}/xrpc/com.atproto.repo.createRecord`, {
      method: 'POST',
      headers: { authorization: 'Bearer good-token' },
      body: new Uint8Array(Buffer.from('{}')),
    })
    expect(noType.status).toBe(400)
    expect((await noType.json()).message).toBe('Request encoding (Content-Type) required but not provided')
    const wrongType = await fetch(`${url}/xrpc/com.atproto.repo.createRecord`, {
      method: 'POST',
      headers: { authorization: 'Bearer good-token', 'content-type': 'text/plain' },
      body: '{}',
    })
    expect(wrongType.status).toBe(400)
    expect((await wrongType.json()).message).toBe('Wrong request encoding (Content-Type): text/plain, expected application/json')
    const noBody = await fetch(`${url}/xrpc/com.atproto.repo.createRecord`, { method: 'POST', headers: { authorization: 'Bearer good-token' } })
    expect(noBody.status).toBe(400)
    expect((await noBody.json()).message).toBe('A request body is expected but none was provided')
  })

  it('a JSON body over the limit is 413 PayloadTooLarge', async () => {
    const res = await fetch(`${url}/xrpc/com.atproto.repo.createRecord`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer good-token' },
      body: JSON.stringify({ repo: DID, collection: 'app.bsky.feed.post', record: { text: 'x'.repeat(5000) } }),
    })
    expect(res.status).toBe(413)
    expect(await res.json()).toEqual({ error: 'PayloadTooLarge', message: 'Request body is larger than the limit of 4096 bytes' })
  })

  it('blob uploads (*/*) take any MIME type as a Buffer, up to the method limit', async () => {
    const agent = new AtpAgent({ service: url })
    const bytes = new Uint8Array(Buffer.from('\x89PNG fake image bytes'))
    const res = await agent.com.atproto.repo.uploadBlob(bytes, { encoding: 'image/png' })
    expect(res.data.blob.mimeType).toBe('image/png')
    expect(res.data.blob.size).toBe(bytes.length)
    expect(res.data.blob.ref.toString()).toBe(await rawCid(bytes))

    const big = await fetch(`${url}/xrpc/com.atproto.repo.uploadBlob`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(2048),
    })
    expect(big.status).toBe(413)
    expect((await big.json()).error).toBe('PayloadTooLarge')
  })

  it('blob uploads over the limit without a Content-Length (chunked) are 413 too', async () => {
    const chunks = [new Uint8Array(600), new Uint8Array(600)]
    const body = new ReadableStream({
      pull(controller) {
        const next = chunks.shift()
        if (next) controller.enqueue(next)
        else controller.close()
      },
    })
    const res = await fetch(`${url}/xrpc/com.atproto.repo.uploadBlob`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body,
      duplex: 'half',
    } as RequestInit)
    expect(res.status).toBe(413)
    expect((await res.json()).error).toBe('PayloadTooLarge')
  })

  it('raw bodies can be streamed to the handler (CAR import), with the limit enforced on the stream', async () => {
    const ok = await fetch(`${url}/xrpc/com.atproto.repo.importRepo`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.ipld.car' },
      body: new Uint8Array(5000),
    })
    expect(ok.status).toBe(200)
    expect(received.streamBytes).toBe(5000)

    const wrong = await fetch(`${url}/xrpc/com.atproto.repo.importRepo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
    expect(wrong.status).toBe(400)

    const chunks = Array.from({ length: 4 }, () => new Uint8Array(3000))
    const res = await fetch(`${url}/xrpc/com.atproto.repo.importRepo`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.ipld.car' },
      body: new ReadableStream({
        pull(controller) {
          const next = chunks.shift()
          if (next) controller.enqueue(next)
          else controller.close()
        },
      }),
      duplex: 'half',
    } as RequestInit)
    expect(res.status).toBe(413)
    expect(received.streamError).toBe('Request body is larger than the limit of 10000 bytes')
  })

  it('rate limits: RateLimit-* headers, then 429 RateLimitExceeded with Retry-After', async () => {
    const call = () => fetch(`${url}/xrpc/com.atproto.identity.resolveHandle?handle=alice.test`)
    const first = await call()
    expect(first.status).toBe(200)
    expect(first.headers.get('ratelimit-limit')).toBe('2')
    expect(first.headers.get('ratelimit-remaining')).toBe('1')
    expect(first.headers.get('ratelimit-policy')).toBe('2;w=60')
    expect(Number(first.headers.get('ratelimit-reset'))).toBeGreaterThan(Date.now() / 1000)
    expect((await call()).status).toBe(200)
    const limited = await call()
    expect(limited.status).toBe(429)
    expect(limited.headers.get('retry-after')).toBe('30')
    expect(limited.headers.get('ratelimit-remaining')).toBe('0')
    expect(await limited.json()).toEqual({ error: 'RateLimitExceeded', message: 'Rate Limit Exceeded' })

    const agent = new AtpAgent({ service: url })
    const err = await clientError(agent.com.atproto.identity.resolveHandle({ handle: 'alice.test' }))
    expect(err.status).toBe(429)
    expect(err.error).toBe('RateLimitExceeded')
    // other methods are not affected
    expect((await fetch(`${url}/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.test`)).status).toBe(200)
  })

  it('GET /xrpc/_health answers the version', async () => {
    const res = await fetch(`${url}/xrpc/_health`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ version: '1.2.3-test' })
  })

  it('GET /metrics has default metrics and requests counted by nsid and status', async () => {
    await fetch(`${url}/xrpc/com.example.nothing.here`)
    const res = await fetch(`${url}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    const text = await res.text()
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m)
    expect(text).toMatch(/^http_requests_total\{nsid="app\.bsky\.feed\.getAuthorFeed",method="GET",status="200"\} [1-9]/m)
    expect(text).toMatch(/^http_requests_total\{nsid="com\.atproto\.identity\.resolveHandle",method="GET",status="429"\} [1-9]/m)
    expect(text).toMatch(/^http_requests_total\{nsid="_unknown",method="GET",status="501"\} [1-9]/m)
    expect(text).toMatch(/^http_request_duration_seconds_bucket\{le="0\.1",nsid="_health",status="200"\} 1/m)
    expect(text).not.toMatch(/com\.example\.nothing/)
  })

  it('other routes that do not exist are 404 JSON errors', async () => {
    const res = await fetch(`${url}/no/such/path?x=1`)
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await res.json()).toEqual({ error: 'NotFound', message: 'Not found: GET /no/such/path' })
  })

  it('CORS: any origin, atproto headers exposed, preflight answered', async () => {
    const res = await fetch(`${url}/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.test`, { headers: { origin: 'https://app.example' } })
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(res.headers.get('access-control-expose-headers')).toMatch(/atproto-repo-rev/)
    const pre = await fetch(`${url}/xrpc/com.atproto.repo.createRecord`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    })
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-origin')).toBe('*')
    expect(pre.headers.get('access-control-allow-headers')).toMatch(/authorization/)
  })
})

describe('errors fastify raises on its own routes', () => {
  let app: XrpcServer
  let base: string
  beforeAll(async () => {
    app = createXrpcServer({ metrics: false })
    app.app.post('/plain', async (req) => ({ got: req.body }))
    app.app.get('/boom', async () => {
      throw new Error('secret detail')
    })
    base = await app.listen()
  })
  afterAll(async () => {
    await app?.close()
  })

  it('bad JSON on a non-XRPC route is still an XRPC JSON error', async () => {
    const res = await fetch(`${base}/plain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' })
    expect(res.status).toBe(400)
    const body = await res.json()
    expect(body.error).toBe('InvalidRequest')
    expect(typeof body.message).toBe('string')
    const ok = await fetch(`${base}/plain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' })
    expect(await ok.json()).toEqual({ got: { a: 1 } })
  })

  it("fastify's body limit is a 413 JSON error", async () => {
    const res = await fetch(`${base}/plain`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ a: 'x'.repeat(1024 * 1024 + 10) }),
    })
    expect(res.status).toBe(413)
    expect((await res.json()).error).toBe('PayloadTooLarge')
  })

  it('errors thrown by plain routes are 500 JSON without the detail', async () => {
    const res = await fetch(`${base}/boom`)
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: 'InternalServerError', message: 'Internal Server Error' })
  })

  it('/metrics can be turned off', async () => {
    expect((await fetch(`${base}/metrics`)).status).toBe(404)
  })

  it('a handler for a name that is not a query or procedure is refused at registration', () => {
    expect(() => app.method('app.bsky.feed.post', () => undefined)).toThrow(/not a query or procedure/)
    expect(() => app.method('com.atproto.sync.subscribeRepos', () => undefined)).toThrow(/not a query or procedure/)
    app.method('com.atproto.server.deleteSession', () => undefined)
    expect(() => app.method('com.atproto.server.deleteSession', () => undefined)).toThrow(/already has a handler/)
  })
})
