import { EventEmitter } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import {
  encodeMessageFrame,
  MemoryEventLog,
  mountSubscription,
  SubscriptionServer,
  type EventLog,
  type LoggedEvent,
} from '@stratos/core/stream'
import { appendIdentity, Collector, NSID, range, seqOf, sleep, startServer, waitFor, type TestServer } from './helpers.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

async function serve(log: EventLog, opts: Parameters<typeof startServer>[1] = {}): Promise<TestServer> {
  const s = await startServer(log, opts)
  cleanups.push(() => s.close())
  return s
}

function consumer(url: string, opts?: ConstructorParameters<typeof WebSocket>[2]): Collector {
  const c = new Collector(url, opts)
  cleanups.push(() => c.ws.terminate())
  return c
}

/** raw HTTP request with upgrade headers, returns status and body */
function upgradeRequest(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      method,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': Buffer.from('0123456789abcdef').toString('base64'),
      },
    })
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve({ status: res.statusCode!, body: '' })
    })
    req.on('error', reject)
    req.end()
  })
}

describe('HTTP side of a subscription endpoint', () => {
  it('426 for plain GET, 405 for other methods, 400 for a bad cursor, 404 for other upgrade paths', async () => {
    const s = await serve(new MemoryEventLog())
    const base = `http://127.0.0.1:${s.port}/xrpc/${NSID}`

    const plain = await fetch(base)
    expect(plain.status).toBe(426)
    expect(plain.headers.get('content-type')).toMatch(/application\/json/)
    expect(((await plain.json()) as { error: string }).error).toBe('InvalidRequest')

    const post = await fetch(base, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } })
    expect(post.status).toBe(405)
    expect(((await post.json()) as { error: string }).error).toBe('InvalidRequest')

    for (const bad of ['abc', '-1', '1.5', '', '99999999999999999999']) {
      const res = await upgradeRequest(s.port, `/xrpc/${NSID}?cursor=${bad}`)
      expect(res.status, `cursor=${bad}`).toBe(400)
      expect(JSON.parse(res.body)).toMatchObject({ error: 'InvalidRequest' })
    }
    const twice = await upgradeRequest(s.port, `/xrpc/${NSID}?cursor=1&cursor=2`)
    expect(twice.status).toBe(400)

    const other = await upgradeRequest(s.port, '/xrpc/com.example.nothingHere')
    expect(other.status).toBe(404)
    expect(JSON.parse(other.body).error).toBe('NotFound')

    const ok = await upgradeRequest(s.port, `/xrpc/${NSID}?cursor=0`)
    expect(ok.status).toBe(101)
  })

  it('serves several nsids on one app', async () => {
    const app = Fastify()
    const logA = new MemoryEventLog()
    const logB = new MemoryEventLog()
    const a = new SubscriptionServer({ log: logA, pingIntervalMs: 0 })
    const b = new SubscriptionServer({ log: logB, pingIntervalMs: 0 })
    const seen: unknown[] = []
    mountSubscription(app, 'com.atproto.sync.subscribeRepos', (ws, _req, params) => a.attach(ws, params))
    mountSubscription(app, 'com.atproto.label.subscribeLabels', (ws, _req, params) => {
      seen.push(params)
      b.attach(ws, params)
    })
    expect(() => mountSubscription(app, 'com.atproto.label.subscribeLabels', () => undefined)).toThrow()
    app.get('/xrpc/_health', async () => ({ version: 'test' }))
    await app.listen({ host: '127.0.0.1', port: 0 })
    cleanups.push(async () => {
      await a.close()
      await b.close()
      await app.close()
    })
    const port = (app.server.address() as AddressInfo).port
    const ca = consumer(`ws://127.0.0.1:${port}/xrpc/com.atproto.sync.subscribeRepos`)
    const cb = consumer(`ws://127.0.0.1:${port}/xrpc/com.atproto.label.subscribeLabels?cursor=0&extra=1&extra=2`)
    await Promise.all([ca.opened, cb.opened])
    await waitFor(() => a.consumers().length === 1 && b.consumers().length === 1)
    appendIdentity(logA, a)
    const lb = logB.append((seq) => encodeMessageFrame('#labels', { seq, labels: [] }))
    b.publish(lb.seq, lb.frame)
    await ca.waitForFrames(1)
    await cb.waitForFrames(1)
    expect(ca.frames[0]).toMatchObject({ op: 1, t: '#identity' })
    expect(cb.frames[0]).toMatchObject({ op: 1, t: '#labels' })
    expect(seen).toEqual([{ cursor: 0, extra: ['1', '2'] }])
    expect((await fetch(`http://127.0.0.1:${port}/xrpc/_health`)).status).toBe(200)
  })
})

describe('live delivery', () => {
  it('three consumers receive identical bytes, in order', async () => {
    const log = new MemoryEventLog()
    const s = await serve(log)
    const cs = [consumer(s.url), consumer(s.url), consumer(s.url)]
    await Promise.all(cs.map((c) => c.opened))
    await waitFor(() => s.server.consumers().length === 3)
    const frames: Uint8Array[] = []
    for (let i = 0; i < 50; i++) {
      const evt = log.append((seq) => encodeMessageFrame('#identity', { seq, did: 'did:plc:abc', time: 'now' }))
      frames.push(evt.frame)
      s.server.publish(evt.seq, evt.frame)
    }
    for (const c of cs) {
      await c.waitForFrames(50)
      expect(c.seqs()).toEqual(range(1, 50))
      c.raw.forEach((buf, i) => expect(buf.equals(Buffer.from(frames[i]!))).toBe(true))
    }
    expect(s.server.consumers().map((c) => c.sent)).toEqual([50, 50, 50])
  })

  it('publishBatch: consumers live and replaying get the batch in order, identical bytes', async () => {
    const log = new MemoryEventLog()
    const s = await serve(log)
    const early = log.append((seq) => encodeMessageFrame('#identity', { seq, did: 'did:plc:abc', time: 'now' }))
    s.server.publish(early.seq, early.frame)
    const cs = [consumer(s.url), consumer(s.url), consumer(`${s.url}?cursor=0`)]
    await Promise.all(cs.map((c) => c.opened))
    await waitFor(() => s.server.consumers().length === 3)
    const frames: Uint8Array[] = [early.frame]
    for (let b = 0; b < 5; b++) {
      const batch = range(1, 10).map(() => log.append((seq) => encodeMessageFrame('#identity', { seq, did: 'did:plc:abc', time: 'now' })))
      frames.push(...batch.map((e) => e.frame))
      s.server.publishBatch(batch)
    }
    for (const [i, c] of cs.entries()) {
      const from = i < 2 ? 2 : 1 // live consumers attached after seq 1; the third replays from cursor 0
      await c.waitForFrames(52 - from)
      expect(c.seqs()).toEqual(range(from, 51))
      c.raw.forEach((buf, j) => expect(buf.equals(Buffer.from(frames[j + from - 1]!))).toBe(true))
    }
  })

  it('publishBatch: frames of every WebSocket length form (7-bit, 16-bit, 64-bit) arrive intact and in order', async () => {
    const log = new MemoryEventLog()
    const s = await serve(log)
    const cs = [consumer(s.url), consumer(s.url)]
    await Promise.all(cs.map((c) => c.opened))
    await waitFor(() => s.server.consumers().length === 2)
    const frames: Uint8Array[] = []
    const sizes = [1, 60, 120, 125, 126, 127, 300, 65_000, 65_535, 65_536, 70_000, 5]
    for (let b = 0; b < 3; b++) {
      const batch = sizes.map((n) => log.append((seq) => encodeMessageFrame('#identity', { seq, did: 'did:plc:abc', handle: 'x'.repeat(n + b) })))
      frames.push(...batch.map((e) => e.frame))
      s.server.publishBatch(batch)
    }
    for (const c of cs) {
      await c.waitForFrames(frames.length)
      expect(c.seqs()).toEqual(range(1, frames.length))
      c.raw.forEach((buf, j) => expect(buf.equals(Buffer.from(frames[j]!))).toBe(true))
    }
    expect(s.server.consumers().map((c) => c.sent)).toEqual([frames.length, frames.length])
  })

  it('hands the same buffer object to every socket (encode once)', () => {
    const server = new SubscriptionServer({ log: new MemoryEventLog(), pingIntervalMs: 0 })
    const fakes = [0, 1, 2].map(() => {
      const ws = new EventEmitter() as EventEmitter & Record<string, unknown>
      const sent: unknown[] = []
      Object.assign(ws, {
        readyState: WebSocket.OPEN,
        bufferedAmount: 0,
        sent,
        send: (data: unknown, _opts: unknown, cb?: () => void) => {
          sent.push(data)
          cb?.()
        },
        close: () => undefined,
        terminate: () => undefined,
        ping: () => undefined,
      })
      return ws
    })
    for (const ws of fakes) server.attach(ws as unknown as WebSocket)
    const frame = encodeMessageFrame('#identity', { seq: 1, did: 'did:plc:abc', time: 'now' })
    server.publish(1, frame)
    for (const ws of fakes) {
      expect((ws.sent as unknown[]).length).toBe(1)
      expect((ws.sent as unknown[])[0]).toBe(frame)
    }
  })
})

describe('cursor replay', () => {
  it('replays from a cursor and continues live with events published during the replay: no gap, no duplicate', async () => {
    const mem = new MemoryEventLog()
    let server: SubscriptionServer | undefined
    for (let i = 0; i < 40; i++) appendIdentity(mem)
    let reads = 0
    let shortReads = 0
    // a log whose reads are slow and interleaved with new events being appended and published
    const log: EventLog = {
      latestSeq: () => mem.latestSeq(),
      earliestSeq: () => mem.earliestSeq(),
      async readAfter(seq: number, limit: number): Promise<LoggedEvent[]> {
        reads++
        const before = reads <= 6 ? 3 : 0
        for (let i = 0; i < before; i++) appendIdentity(mem, server) // published before this read sees them
        await sleep(5)
        const rows = await mem.readAfter(seq, limit)
        // published after the read took its snapshot, including right after the first read that caught up
        const short = rows.length < limit && shortReads++ === 0
        if (reads <= 6 || short) for (let i = 0; i < 2; i++) appendIdentity(mem, server)
        await sleep(5)
        return rows
      },
    }
    const s = await serve(log, { replayBatchSize: 7 })
    server = s.server
    // a live-only consumer for comparison
    const live = consumer(s.url)
    await live.opened
    await waitFor(() => s.server.consumers().length === 1)
    const c = consumer(`${s.url}?cursor=10`)
    await c.opened
    await waitFor(() => s.server.consumers().some((x) => x.cursor === 10 && x.phase === 'live'), 10_000, 'hand-off')
    expect(reads).toBeGreaterThan(6)
    for (let i = 0; i < 5; i++) appendIdentity(mem, s.server)
    const last = (await mem.latestSeq())!
    await c.waitForSeq(last)
    expect(c.seqs()).toEqual(range(11, last))
    expect(c.frames.every((f) => f.op === 1 && f.t === '#identity')).toBe(true)
    await live.waitForSeq(last)
    expect(live.seqs()).toEqual(range(41, last))
  })

  it('keeps order when the live buffer overflows during a replay', async () => {
    const mem = new MemoryEventLog()
    let server: SubscriptionServer | undefined
    for (let i = 0; i < 30; i++) appendIdentity(mem)
    let reads = 0
    let shortReads = 0
    const log: EventLog = {
      latestSeq: () => mem.latestSeq(),
      earliestSeq: () => mem.earliestSeq(),
      async readAfter(seq, limit) {
        reads++
        const rows = await mem.readAfter(seq, limit)
        // a burst right after a read that looked "caught up" (and during the first reads) overflows the buffer
        const short = rows.length < limit && shortReads++ < 2
        if (reads <= 2 || short) for (let i = 0; i < 12; i++) appendIdentity(mem, server)
        await sleep(2)
        return rows
      },
    }
    const s = await serve(log, { replayBatchSize: 5, maxQueuedFrames: 8 })
    server = s.server
    const c = consumer(`${s.url}?cursor=3`)
    await c.opened
    await waitFor(() => s.server.consumers().some((x) => x.phase === 'live'), 10_000, 'hand-off')
    appendIdentity(mem, s.server)
    const last = (await mem.latestSeq())!
    expect(last).toBe(30 + 4 * 12 + 1)
    await c.waitForSeq(last)
    expect(c.seqs()).toEqual(range(4, last))
  })

  it('cursor older than the window: #info OutdatedCursor, then the whole window, then live', async () => {
    const log = new MemoryEventLog()
    for (let i = 0; i < 20; i++) appendIdentity(log)
    log.prune({ maxBytes: 10 * (await log.readAfter(0, 1))[0]!.frame.byteLength })
    expect(await log.earliestSeq()).toBe(11)
    const s = await serve(log)
    const c = consumer(`${s.url}?cursor=5`)
    await c.waitForFrames(11)
    expect(c.frames[0]).toEqual({ op: 1, t: '#info', body: { name: 'OutdatedCursor', message: expect.any(String) } })
    expect(c.seqs()).toEqual(range(11, 20))
    appendIdentity(log, s.server)
    await c.waitForSeq(21)
    expect(c.seqs()).toEqual(range(11, 21))

    // the cursor right before the window is not outdated
    const d = consumer(`${s.url}?cursor=10`)
    await d.waitForSeq(21)
    expect(d.frames.some((f) => f.op === 1 && f.t === '#info')).toBe(false)
    expect(d.seqs()).toEqual(range(11, 21))
  })

  it('after retention emptied the log, a restarted server still tells an old cursor from a future one', async () => {
    const log = new MemoryEventLog()
    for (let i = 0; i < 8; i++) appendIdentity(log)
    log.prune({ maxAgeMs: 0, now: Date.now() + 1000 })
    expect(await log.earliestSeq()).toBeNull()
    const s = await serve(log) // fresh server: has published nothing itself
    const old = consumer(`${s.url}?cursor=3`)
    await old.waitForFrames(1)
    expect(old.frames[0]).toMatchObject({ op: 1, t: '#info', body: { name: 'OutdatedCursor' } })
    appendIdentity(log, s.server)
    await old.waitForSeq(9)
    expect(old.seqs()).toEqual([9])
    const future = consumer(`${s.url}?cursor=10`)
    await future.closed
    expect(future.frames).toEqual([{ op: -1, error: 'FutureCursor', message: expect.any(String) }])
  })

  it('cursor=0: the whole window, then live', async () => {
    const log = new MemoryEventLog()
    for (let i = 0; i < 12; i++) appendIdentity(log)
    log.deleteThrough(4)
    const s = await serve(log)
    const c = consumer(`${s.url}?cursor=0`)
    await c.waitForSeq(12)
    appendIdentity(log, s.server)
    await c.waitForSeq(13)
    expect(c.frames.length).toBe(9)
    expect(c.seqs()).toEqual(range(5, 13))
  })

  it('no cursor: live only', async () => {
    const log = new MemoryEventLog()
    for (let i = 0; i < 5; i++) appendIdentity(log)
    const s = await serve(log)
    const c = consumer(s.url)
    await c.opened
    await waitFor(() => s.server.consumers().length === 1)
    appendIdentity(log, s.server)
    await c.waitForSeq(6)
    expect(c.seqs()).toEqual([6])
  })

  it('cursor in the future: error frame FutureCursor, then close', async () => {
    const log = new MemoryEventLog()
    for (let i = 0; i < 3; i++) appendIdentity(log)
    const s = await serve(log)
    const c = consumer(`${s.url}?cursor=4`)
    const closed = await c.closed
    expect(c.frames).toEqual([{ op: -1, error: 'FutureCursor', message: expect.any(String) }])
    expect(closed.code).toBe(1008)
    expect(s.server.consumers()).toEqual([])

    // an empty log: any cursor above 0 is in the future, 0 is fine
    const s2 = await serve(new MemoryEventLog())
    const e = consumer(`${s2.url}?cursor=1`)
    await e.closed
    expect(e.frames).toEqual([{ op: -1, error: 'FutureCursor', message: expect.any(String) }])
    const z = consumer(`${s2.url}?cursor=0`)
    await z.opened
    await sleep(50)
    expect(z.ws.readyState).toBe(WebSocket.OPEN)
  })
})

describe('slow consumers and keepalive', () => {
  it('cuts a consumer that does not read with ConsumerTooSlow; a reading consumer gets everything', async () => {
    const log = new MemoryEventLog()
    const cut: string[] = []
    const s = await serve(log, {
      maxQueuedBytes: 512 * 1024,
      closeTimeoutMs: 20_000,
      onConsumerClose: (_c, reason) => cut.push(reason),
    })
    const normal = consumer(s.url)
    const slow = consumer(s.url)
    await Promise.all([normal.opened, slow.opened])
    await waitFor(() => s.server.consumers().length === 2)
    const slowId = s.server.consumers()[1]!.id
    slow.ws.pause()
    const blob = new Uint8Array(128 * 1024).fill(7)
    let published = 0
    // lockstep with the normal consumer, until the slow one is cut, then a few more
    let after = 0
    while (after < 5) {
      const evt = log.append((seq) => encodeMessageFrame('#commit', { seq, blocks: blob }))
      s.server.publish(evt.seq, evt.frame)
      published = evt.seq
      await normal.waitForSeq(published)
      if (cut.includes('ConsumerTooSlow')) after++
      if (published > 2000) throw new Error('slow consumer was never cut')
    }
    expect(s.server.consumers().map((c) => c.id)).not.toContain(slowId)
    expect(s.server.consumers().length).toBe(1)
    expect(normal.seqs()).toEqual(range(1, published))

    // the slow consumer, once it reads again, sees a gap-free prefix, then the error frame, then the close
    slow.ws.resume()
    const closed = await slow.closed
    expect(closed.code).toBe(1008)
    const last = slow.frames[slow.frames.length - 1]
    expect(last).toEqual({ op: -1, error: 'ConsumerTooSlow', message: expect.any(String) })
    const got = slow.seqs()
    expect(got.length).toBeGreaterThan(0)
    expect(got.length).toBeLessThan(published)
    expect(got).toEqual(range(1, got.length))
  })

  it('pings keep an answering consumer; one that never answers is terminated', async () => {
    const log = new MemoryEventLog()
    const s = await serve(log, { pingIntervalMs: 250 })
    const good = consumer(s.url)
    const mute = consumer(s.url, { autoPong: false })
    await Promise.all([good.opened, mute.opened])
    const closed = await mute.closed
    expect(closed.code).toBe(1006) // terminated, no close frame
    await good.waitUntil(() => good.pings >= 4, 5_000, 'pings')
    expect(good.ws.readyState).toBe(WebSocket.OPEN)
    expect(s.server.consumers().length).toBe(1)
    appendIdentity(log, s.server)
    await good.waitForSeq(1)
  })

  it('lists consumers and closes them all', async () => {
    const log = new MemoryEventLog()
    for (let i = 0; i < 3; i++) appendIdentity(log)
    const s = await serve(log)
    const a = consumer(`${s.url}?cursor=1`)
    const b = consumer(s.url)
    await a.waitForSeq(3)
    await b.opened
    await waitFor(() => s.server.consumers().length === 2)
    const list = s.server.consumers().sort((x, y) => x.id - y.id)
    expect(list[0]).toMatchObject({ remoteAddress: '127.0.0.1', cursor: 1, sent: 2, phase: 'live', lastSeq: 3 })
    expect(list[1]).toMatchObject({ remoteAddress: '127.0.0.1', cursor: undefined, sent: 0, queued: 0 })
    expect(new Date(list[0]!.connectedAt).getTime()).toBeGreaterThan(Date.now() - 60_000)
    await s.server.close()
    expect((await a.closed).code).toBe(1001)
    expect((await b.closed).code).toBe(1001)
    expect(s.server.consumers()).toEqual([])
    // closing the app with sockets open does not hang
    const s2 = await serve(log)
    const c = consumer(s2.url)
    await c.opened
    await s2.app.close()
    expect((await c.closed).code).toBe(1001)
  })
})

void seqOf
