import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import net from 'node:net'
import { isPublicAddress, safeFetch, SafeFetchError } from '@stratos/core/identity'
import { FakeServer } from './fake-servers.js'

async function fetchError(p: Promise<unknown>): Promise<SafeFetchError> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(SafeFetchError)
    return err as SafeFetchError
  }
  throw new Error('expected the fetch to fail')
}

describe('isPublicAddress', () => {
  it('classifies addresses', () => {
    const notPublic = [
      '127.0.0.1', '127.255.0.1', '10.0.0.1', '10.255.255.255', '172.16.0.1', '172.31.255.1', '192.168.1.1',
      '169.254.169.254', '169.254.0.1', '0.0.0.0', '100.64.0.1', '100.100.100.200', '224.0.0.1', '255.255.255.255',
      '192.0.2.1', '198.51.100.7', '203.0.113.9', '198.18.0.1',
      '::', '::1', '[::1]', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fd00:ec2::254', 'ff02::1',
      '::ffff:127.0.0.1', '::ffff:10.1.2.3', '::ffff:7f00:1', '64:ff9b::a9fe:a9fe', '2002:c0a8:0101::1',
      '2001:db8::1', 'not-an-ip', '',
    ]
    const publicAddrs = ['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111',
      '2001:4860:4860::8888', '::ffff:8.8.8.8', '64:ff9b::808:808']
    for (const ip of notPublic) expect([ip, isPublicAddress(ip)]).toEqual([ip, false])
    for (const ip of publicAddrs) expect([ip, isPublicAddress(ip)]).toEqual([ip, true])
  })
})

/** The routes both safeFetch suites use: a small and a large body, one streamed without a length, one that
 * never answers, a redirect and a redirect loop. */
function addCommonRoutes(server: FakeServer): void {
  server.routes.set('/hello', (_req, res) => res.end('hi there'))
  server.routes.set('/big', (_req, res) => res.end(Buffer.alloc(5000, 'a')))
  server.routes.set('/big-chunked', (_req, res) => {
    // no content-length: the limit has to be enforced while streaming
    let sent = 0
    const tick = () => {
      if (sent >= 20) return res.end()
      sent++
      res.write(Buffer.alloc(1000, 'b'))
      setTimeout(tick, 1)
    }
    tick()
  })
  server.routes.set('/slow', () => {
    // never answers
  })
  server.routes.set('/redirect', (_req, res) => {
    res.statusCode = 302
    res.setHeader('location', '/hello')
    res.end()
  })
  server.routes.set('/loop', (_req, res) => {
    res.statusCode = 301
    res.setHeader('location', '/loop')
    res.end()
  })
}

describe('safeFetch', () => {
  const server = new FakeServer()
  beforeAll(async () => {
    await server.start()
    addCommonRoutes(server)
    server.routes.set('/status', (_req, res) => {
      res.statusCode = 503
      res.end('busy')
    })
  })
  afterAll(() => server.stop())

  it('refuses non-public destinations unless allowed', async () => {
    for (const url of [
      `http://127.0.0.1:${server.port}/hello`,
      'http://10.1.2.3/',
      'http://169.254.169.254/latest/meta-data/',
      'http://[::1]/',
      'http://0.0.0.0/',
      'http://[::ffff:127.0.0.1]/',
    ]) {
      const err = await fetchError(safeFetch(url, { timeoutMs: 2000 }))
      expect([url, err.code]).toEqual([url, 'forbidden-address'])
    }
    const before = server.count('/hello')
    const err = await fetchError(safeFetch(`http://localhost:${server.port}/hello`, { timeoutMs: 2000 }))
    expect(err.code).toBe('forbidden-address')
    expect(server.count('/hello')).toBe(before) // never connected
  })

  it('checks every address a hostname resolves to', async () => {
    const lookup = async () => [
      { address: '93.184.216.34', family: 4 },
      { address: '10.0.0.7', family: 4 },
    ]
    const err = await fetchError(safeFetch('https://rebind.example.com/', { lookup, timeoutMs: 2000 }))
    expect(err.code).toBe('forbidden-address')
    // the resolved address is for the logs (detail), not the message a client may be shown
    expect(err.message).not.toContain('10.0.0.7')
    expect(err.detail).toContain('10.0.0.7')
  })

  it('fetches when private addresses are allowed', async () => {
    const res = await safeFetch(`http://127.0.0.1:${server.port}/hello`, { allowPrivateAddresses: true })
    expect(res.status).toBe(200)
    expect(res.ok).toBe(true)
    expect(res.text()).toBe('hi there')
    const viaName = await safeFetch(`http://localhost:${server.port}/hello`, { allowPrivateAddresses: true })
    expect(viaName.text()).toBe('hi there')
    const busy = await safeFetch(`${server.url}/status`, { allowPrivateAddresses: true })
    expect([busy.status, busy.ok, busy.text()]).toEqual([503, false, 'busy'])
  })

  it('times out', async () => {
    const started = Date.now()
    const err = await fetchError(safeFetch(`${server.url}/slow`, { allowPrivateAddresses: true, timeoutMs: 300 }))
    expect(err.code).toBe('timeout')
    expect(Date.now() - started).toBeLessThan(3000)
  })

  it('refuses oversized bodies, declared or streamed', async () => {
    const ok = await safeFetch(`${server.url}/big`, { allowPrivateAddresses: true, maxBytes: 5000 })
    expect(ok.body.length).toBe(5000)
    const declared = await fetchError(safeFetch(`${server.url}/big`, { allowPrivateAddresses: true, maxBytes: 4999 }))
    expect(declared.code).toBe('too-large')
    const streamed = await fetchError(safeFetch(`${server.url}/big-chunked`, { allowPrivateAddresses: true, maxBytes: 4500 }))
    expect(streamed.code).toBe('too-large')
  })

  it('follows a bounded number of redirects', async () => {
    const res = await safeFetch(`${server.url}/redirect`, { allowPrivateAddresses: true })
    expect(res.text()).toBe('hi there')
    expect(res.url).toBe(`${server.url}/hello`)
    const before = server.count('/loop')
    const err = await fetchError(safeFetch(`${server.url}/loop`, { allowPrivateAddresses: true, maxRedirects: 2 }))
    expect(err.code).toBe('too-many-redirects')
    expect(server.count('/loop') - before).toBe(3)
  })

  it('refuses non-http schemes, also as redirect targets', async () => {
    server.routes.set('/to-file', (_req, res) => {
      res.statusCode = 302
      res.setHeader('location', 'file:///etc/passwd')
      res.end()
    })
    const err = await fetchError(safeFetch(`${server.url}/to-file`, { allowPrivateAddresses: true }))
    expect(err.code).toBe('bad-url')
    expect((await fetchError(safeFetch('ftp://example.com/'))).code).toBe('bad-url')
    expect((await fetchError(safeFetch('not a url'))).code).toBe('bad-url')
  })
})

describe('safeFetch with keepAlive', () => {
  const server = new FakeServer()
  let connections = 0
  beforeAll(async () => {
    await server.start()
    server.server.on('connection', () => connections++)
    addCommonRoutes(server)
  })
  afterAll(() => server.stop())

  const opts = { allowPrivateAddresses: true, keepAlive: true } as const

  it('reuses one connection for requests one after another, and opens one per request without it', async () => {
    const before = connections
    for (let i = 0; i < 5; i++) expect((await safeFetch(`${server.url}/hello`, opts)).text()).toBe('hi there')
    expect(connections - before).toBe(1)
    const plain = connections
    for (let i = 0; i < 3; i++) await safeFetch(`${server.url}/hello`, { allowPrivateAddresses: true })
    expect(connections - plain).toBe(3)
  })

  it('still refuses non-public destinations, by address or by name', async () => {
    for (const url of [`http://127.0.0.1:${server.port}/hello`, `http://localhost:${server.port}/hello`, 'http://169.254.169.254/', 'http://[::1]/']) {
      const err = await fetchError(safeFetch(url, { keepAlive: true, timeoutMs: 2000 }))
      expect([url, err.code]).toEqual([url, 'forbidden-address'])
    }
    // a name that resolves to a private address is checked at every new connection
    const lookup = async () => [{ address: '10.0.0.7', family: 4 }]
    expect((await fetchError(safeFetch('http://rebind.example.com/', { keepAlive: true, lookup, timeoutMs: 2000 }))).code).toBe('forbidden-address')
  })

  it('never hands a connection made with private addresses allowed to a request that refuses them', async () => {
    // one resolver for both requests: pooled.example resolves to this loopback server
    const lookup = async () => [{ address: '127.0.0.1', family: 4 }]
    const url = `http://pooled.example:${server.port}/hello`
    const ok = await safeFetch(url, { allowPrivateAddresses: true, keepAlive: true, lookup })
    expect(ok.text()).toBe('hi there')
    const hits = server.count('/hello')
    const err = await fetchError(safeFetch(url, { keepAlive: true, lookup, timeoutMs: 2000 }))
    expect(err.code).toBe('forbidden-address')
    expect(server.count('/hello')).toBe(hits)
  })

  it('does not pool a connection whose response was refused, cut short or redirected', async () => {
    await safeFetch(`${server.url}/hello`, opts)
    const before = connections
    expect((await fetchError(safeFetch(`${server.url}/big`, { ...opts, maxBytes: 4999 }))).code).toBe('too-large')
    expect((await fetchError(safeFetch(`${server.url}/big-chunked`, { ...opts, maxBytes: 4500 }))).code).toBe('too-large')
    expect((await fetchError(safeFetch(`${server.url}/slow`, { ...opts, timeoutMs: 200 }))).code).toBe('timeout')
    // each of those took a connection and closed it: the next request still gets a working one
    expect((await safeFetch(`${server.url}/hello`, opts)).text()).toBe('hi there')
    expect((await safeFetch(`${server.url}/big`, { ...opts, maxBytes: 5000 })).body.length).toBe(5000)
    expect(connections - before).toBeGreaterThanOrEqual(3)
    const res = await safeFetch(`${server.url}/redirect`, opts)
    expect([res.url, res.text()]).toEqual([`${server.url}/hello`, 'hi there'])
    const loops = server.count('/loop')
    expect((await fetchError(safeFetch(`${server.url}/loop`, { ...opts, maxRedirects: 2 }))).code).toBe('too-many-redirects')
    expect(server.count('/loop') - loops).toBe(3)
  })

  it('sends a read again on a new connection when the server closed the pooled one', async () => {
    // answers the first request of each connection, then drops the connection at the next one
    let conns = 0
    const raw = net.createServer((socket) => {
      conns++
      let served = false
      socket.on('data', () => {
        if (served) return socket.destroy()
        served = true
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\nkeep-alive: timeout=30\r\n\r\nok')
      })
    })
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(raw.address() as net.AddressInfo).port}/`
      expect((await safeFetch(url, opts)).text()).toBe('ok')
      expect((await safeFetch(url, opts)).text()).toBe('ok')
      expect(conns).toBe(2)
    } finally {
      raw.close()
    }
  })
})
