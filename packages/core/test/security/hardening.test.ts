/**
 * Attacks on the shared XRPC server setup (issue 14, items 2, 4, 5 and 16): forged X-Forwarded-For,
 * admin password guessing, slow / withheld bodies, connection floods, oversized URLs and headers,
 * firehose subscriber floods.
 */
import { connect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { mountSubscription } from '@stratos/core/stream'
import { adminBasicAuth, createXrpcServer, parseTrustedProxies, type XrpcServer } from '@stratos/core/xrpc'

const servers: XrpcServer[] = []
const sockets: Socket[] = []
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  for (const s of servers.splice(0)) await s.close()
})

async function start(opts: Parameters<typeof createXrpcServer>[0] = {}): Promise<{ server: XrpcServer; url: string; port: number }> {
  const server = createXrpcServer({ metrics: false, ...opts })
  servers.push(server)
  server.method('com.atproto.server.createSession', {
    rateLimit: [{ points: 3, durationMs: 60_000 }],
    handler: ({ req }) => ({ encoding: 'application/json', body: { ip: req.ip } as never }),
  })
  server.method('com.atproto.server.describeServer', {
    auth: adminBasicAuth('correct horse battery staple'),
    handler: () => ({ encoding: 'application/json', body: { ok: true } as never }),
  })
  const url = await server.listen()
  return { server, url, port: Number(new URL(url).port) }
}

const login = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/xrpc/com.atproto.server.createSession`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ identifier: 'alice.test', password: 'x' }),
  })

/** Opens a raw TCP connection (optionally from another loopback address) and resolves once connected. */
function raw(port: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress })
    sockets.push(s)
    s.once('connect', () => resolve(s))
    s.once('error', reject)
  })
}

/** Everything the server sends until it closes the socket (or `ms` pass). */
function readAll(s: Socket, ms = 5000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    let text = ''
    s.on('data', (d) => (text += d.toString()))
    const t = setTimeout(() => resolve({ text, closed: false }), ms)
    s.once('close', () => {
      clearTimeout(t)
      resolve({ text, closed: true })
    })
    s.on('error', () => undefined)
  })
}

describe('trusted proxies (item 2)', () => {
  it('by default X-Forwarded-For is ignored: a client cannot pick a fresh IP per request to dodge limits', async () => {
    const { url } = await start()
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) statuses.push((await login(url, { 'x-forwarded-for': `203.0.113.${i}` })).status)
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200])
    expect(statuses.slice(3)).toEqual([429, 429, 429])
  })

  it('from a configured proxy the forwarded address is the client', async () => {
    const { url } = await start({ trustedProxies: ['loopback'] })
    const res = await login(url, { 'x-forwarded-for': '203.0.113.7' })
    expect(await res.json()).toEqual({ ip: '203.0.113.7' })
    for (let i = 0; i < 3; i++) expect((await login(url, { 'x-forwarded-for': `203.0.113.${10 + i}` })).status).toBe(200)
  })

  it('refuses malformed proxy lists', () => {
    expect(parseTrustedProxies(' 10.0.0.0/8, ::1 ,loopback', 'X')).toEqual(['10.0.0.0/8', '::1', 'loopback'])
    expect(parseTrustedProxies(undefined)).toEqual([])
    expect(() => parseTrustedProxies('10.0.0.0/33', 'PDS_TRUSTED_PROXIES')).toThrow(/PDS_TRUSTED_PROXIES.*10\.0\.0\.0\/33/)
    expect(() => parseTrustedProxies('example.com')).toThrow(/not an IP/)
  })
})

describe('admin Basic auth failures are limited per IP (item 4)', () => {
  it('after 10 wrong passwords the IP is refused before its password is checked, even the right one', async () => {
    const { url } = await start({ rateLimits: { enabled: false } })
    const basic = (pw: string) => ({ authorization: `Basic ${Buffer.from(`admin:${pw}`).toString('base64')}` })
    const call = (pw: string) => fetch(`${url}/xrpc/com.atproto.server.describeServer`, { headers: basic(pw) })
    const t0 = Date.now()
    const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => call(`guess-${i}`).then((r) => r.status)))
    expect(statuses.filter((s) => s === 401).length).toBe(10)
    expect(statuses.filter((s) => s === 429).length).toBe(190)
    const locked = await call('correct horse battery staple')
    expect(locked.status).toBe(429)
    expect(locked.headers.get('retry-after')).toBeTruthy()
    expect(await locked.json()).toMatchObject({ error: 'RateLimitExceeded' })
    expect(Date.now() - t0).toBeLessThan(10_000)
  })
})

describe('timeouts and connection caps (item 5)', () => {
  it('a trickled body is cut with an XRPC 408 once the request timeout passes', async () => {
    const { port } = await start({ connections: { requestTimeoutMs: 800, headersTimeoutMs: 800 } })
    const s = await raw(port)
    s.write('POST /xrpc/com.atproto.server.createSession HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{')
    const trickle = setInterval(() => s.writable && s.write(' '), 100)
    const t0 = Date.now()
    const { text, closed } = await readAll(s, 5000)
    clearInterval(trickle)
    expect(closed).toBe(true)
    expect(Date.now() - t0).toBeLessThan(4000)
    expect(text).toMatch(/^HTTP\/1\.1 408/)
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'RequestTimeout' })
  })

  it('a connection that never sends its headers is closed', async () => {
    const { port } = await start({ connections: { headersTimeoutMs: 600 } })
    const s = await raw(port)
    s.write('GET /xrpc/_health HTTP/1.1\r\nHost: x\r\n')
    const { closed } = await readAll(s, 4000)
    expect(closed).toBe(true)
  })

  it('one address cannot hold more than its share of connections; others are still served', async () => {
    const { url, port } = await start({ connections: { maxConnectionsPerIp: 5 } })
    const held: Socket[] = []
    for (let i = 0; i < 5; i++) held.push(await raw(port, '127.0.0.2'))
    const sixth = await raw(port, '127.0.0.2')
    expect((await readAll(sixth, 3000)).closed).toBe(true)
    for (const s of held) expect(s.destroyed).toBe(false)
    // a client at another address is served while the flood holds its 5
    expect((await fetch(`${url}/xrpc/_health`)).status).toBe(200)
  })

  it('a client aborting its upload mid-body is logged once at info, never as an error', async () => {
    const lines: { level: number; msg: string }[] = []
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line))
        cb()
      },
    })
    const { port } = await start({ logger: pino({ level: 'info' }, sink) })
    const s = await raw(port)
    s.write('POST /xrpc/com.atproto.server.createSession HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"ide')
    await new Promise((r) => setTimeout(r, 150))
    s.destroy()
    await new Promise((r) => setTimeout(r, 300))
    expect(lines.filter((l) => l.level >= 50)).toEqual([])
    expect(lines.filter((l) => l.msg === 'request aborted by the client' && l.level === 30)).toHaveLength(1)
  })
})

describe('XRPC-shaped bodies for 413, 414 and 431 (item 16)', () => {
  it('answers oversized bodies, URIs and headers with {error, message}', async () => {
    const { url, port } = await start({ bodyLimits: { json: 1000 } })
    const big = await fetch(`${url}/xrpc/com.atproto.server.createSession`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ identifier: 'x'.repeat(5000), password: 'x' }),
    })
    expect(big.status).toBe(413)
    expect(await big.json()).toMatchObject({ error: 'PayloadTooLarge', message: expect.any(String) })

    const long = await fetch(`${url}/xrpc/${'a'.repeat(200)}.b.c`)
    expect(long.status).toBe(414)
    expect(await long.json()).toEqual({ error: 'URITooLong', message: expect.any(String) })

    const s = await raw(port)
    s.write(`GET /xrpc/_health HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(40_000)}\r\n\r\n`)
    const { text } = await readAll(s)
    expect(text).toMatch(/^HTTP\/1\.1 431/)
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toEqual({ error: 'RequestHeaderFieldsTooLarge', message: expect.any(String) })
  })
})

describe('firehose subscribers per IP (item 16)', () => {
  it('refuses the subscriptions of one address beyond the cap with 429, and serves other addresses', async () => {
    const server = createXrpcServer({ metrics: false })
    servers.push(server)
    mountSubscription(server.app, 'com.atproto.sync.subscribeRepos', () => undefined, { maxPerIp: 3 })
    const url = (await server.listen()).replace('http', 'ws')
    const open = (localAddress?: string) =>
      new Promise<{ ok: boolean; status?: number; ws: WebSocket }>((resolve) => {
        const ws = new WebSocket(`${url}/xrpc/com.atproto.sync.subscribeRepos`, { localAddress })
        ws.once('open', () => resolve({ ok: true, ws }))
        ws.once('unexpected-response', (_req, res) => resolve({ ok: false, status: res.statusCode, ws }))
        ws.once('error', () => resolve({ ok: false, ws }))
      })
    const results = []
    for (let i = 0; i < 5; i++) results.push(await open('127.0.0.2'))
    expect(results.map((r) => r.ok)).toEqual([true, true, true, false, false])
    expect(results[3]!.status).toBe(429)
    expect((await open('127.0.0.3')).ok).toBe(true)
    // a closed subscription frees its slot
    results[0]!.ws.close()
    await new Promise((r) => setTimeout(r, 100))
    expect((await open('127.0.0.2')).ok).toBe(true)
    for (const r of results) r.ws.terminate()
  })
})

describe('error messages do not leak internal addresses (item 13)', () => {
  it('a refused private address and a failed connection name the host only', async () => {
    const { safeFetch } = await import('@stratos/core/identity')
    const refused = await safeFetch('http://internal.example.com/x', { lookup: async () => [{ address: '10.1.2.3', family: 4 }] }).catch((e) => e)
    expect(refused.code).toBe('forbidden-address')
    expect(refused.message).not.toContain('10.1.2.3')
    expect(refused.detail).toContain('10.1.2.3')
    const down = await safeFetch('http://down.example.com:9/x', { lookup: async () => [{ address: '127.0.0.1', family: 4 }], allowPrivateAddresses: true }).catch((e) => e)
    expect(down.code).toBe('network')
    expect(down.message).not.toMatch(/127\.0\.0\.1/)
    expect(down.message).toContain('down.example.com')
  })

  it("a service token whose issuer cannot be resolved is refused without the resolver's error text", async () => {
    const { createServiceJwt, verifyServiceJwt } = await import('@stratos/core/auth')
    const { generateKeypair } = await import('@stratos/core/crypto')
    const keypair = await generateKeypair('k256')
    const token = await createServiceJwt({ iss: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', aud: 'did:web:svc.example', lxm: null, keypair })
    const err = await verifyServiceJwt(token, {
      audience: 'did:web:svc.example',
      lxm: null,
      getSigningKey: async () => {
        throw new Error('request to 10.9.8.7:443 failed: connect ECONNREFUSED 10.9.8.7:443')
      },
    } as never).catch((e) => e)
    expect(err.message).toMatch(/could not get the signing key/)
    expect(err.message).not.toContain('10.9.8.7')
  })
})
