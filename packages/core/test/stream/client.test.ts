import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { WebSocket } from 'ws'
import {
  encodeMessageFrame,
  FrameError,
  MemoryEventLog,
  mountSubscription,
  StreamErrorFrame,
  StreamHttpError,
  SubscriptionClient,
  type StreamEvent,
  type StreamInfo,
} from '@stratos/core/stream'
import { appendIdentity, NSID, range, sleep, startServer, waitFor, type TestServer } from './helpers.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
  vi.restoreAllMocks()
})

function track(s: TestServer): TestServer {
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await s.close()
  }
  cleanups.push(close)
  return { ...s, close }
}

function client(opts: ConstructorParameters<typeof SubscriptionClient>[0]): SubscriptionClient {
  const c = new SubscriptionClient({ minBackoffMs: 20, maxBackoffMs: 100, ...opts })
  cleanups.push(() => c.stop())
  return c.start()
}

describe('SubscriptionClient', () => {
  it('resumes from its cursor after the server restarts, with no gap and no duplicate', async () => {
    const log = new MemoryEventLog()
    for (let i = 0; i < 5; i++) appendIdentity(log)
    const first = track(await startServer(log))
    const port = first.port
    const seen: number[] = []
    let cursor: number | undefined = 2 // already processed 1..2
    const errors: Error[] = []
    const c = client({
      url: first.url,
      getCursor: () => cursor,
      onEvent: async (evt) => {
        seen.push(evt.seq!)
        cursor = evt.seq
      },
      onError: (err) => errors.push(err),
    })
    await waitFor(() => seen.length === 3, 10_000, 'replay 3..5')
    appendIdentity(log, first.server)
    await waitFor(() => cursor === 6, 10_000, 'live 6')

    await first.close()
    // while the server is down, events keep being logged
    for (let i = 0; i < 4; i++) appendIdentity(log)
    await sleep(150) // a few failed reconnect attempts
    const second = track(await startServer(log, {}, port))
    await waitFor(() => cursor === 10, 10_000, 'replay after restart')
    await waitFor(() => second.server.consumers().some((x) => x.phase === 'live'), 10_000, 'live again')
    appendIdentity(log, second.server)
    appendIdentity(log, second.server)
    await waitFor(() => cursor === 12, 10_000, 'live after restart')
    expect(seen).toEqual(range(3, 12))
    expect(c.stats.connects).toBeGreaterThanOrEqual(2)
    expect(second.server.consumers()[0]!.cursor).toBe(6)
    expect(errors.every((e) => !(e instanceof FrameError))).toBe(true)
    await c.stop()
    expect(c.connected).toBe(false)
  })

  it('processes one event at a time, in order, pausing the socket while it is behind', async () => {
    const log = new MemoryEventLog()
    const s = track(await startServer(log))
    const pause = vi.spyOn(WebSocket.prototype, 'pause')
    const resume = vi.spyOn(WebSocket.prototype, 'resume')
    let inFlight = 0
    let maxInFlight = 0
    const seen: number[] = []
    client({
      url: s.url,
      highWaterMark: 4,
      onEvent: async (evt) => {
        inFlight++
        maxInFlight = Math.max(maxInFlight, inFlight)
        await sleep(1)
        seen.push(evt.seq!)
        inFlight--
      },
    })
    await waitFor(() => s.server.consumers().length === 1)
    for (let i = 0; i < 120; i++) appendIdentity(log, s.server)
    await waitFor(() => seen.length === 120, 20_000, '120 events')
    expect(seen).toEqual(range(1, 120))
    expect(maxInFlight).toBe(1)
    expect(pause).toHaveBeenCalled()
    expect(resume).toHaveBeenCalled()
  })

  it('surfaces FutureCursor, OutdatedCursor and HTTP refusals', async () => {
    const log = new MemoryEventLog()
    for (let i = 0; i < 10; i++) appendIdentity(log)
    log.deleteThrough(5)
    const s = track(await startServer(log))

    const errors: Error[] = []
    const future = client({ url: s.url, getCursor: () => 50, onEvent: () => undefined, onError: (e) => errors.push(e) })
    await waitFor(() => errors.length >= 2, 10_000, 'two FutureCursor errors (it retries)')
    await future.stop()
    expect(errors[0]).toBeInstanceOf(StreamErrorFrame)
    expect((errors[0] as StreamErrorFrame).error).toBe('FutureCursor')

    const infos: StreamInfo[] = []
    const seen: number[] = []
    const outdated = client({
      url: s.url,
      getCursor: () => 1,
      onEvent: (e) => void seen.push(e.seq!),
      onInfo: (i) => infos.push(i),
    })
    await waitFor(() => seen.length === 5, 10_000, 'window')
    await outdated.stop()
    expect(infos).toEqual([{ name: 'OutdatedCursor', message: expect.any(String) }])
    expect(seen).toEqual(range(6, 10))

    const httpErrors: Error[] = []
    const bad = client({
      url: s.url,
      params: { cursor: 'nope' },
      onEvent: () => undefined,
      onError: (e) => httpErrors.push(e),
    })
    await waitFor(() => httpErrors.length >= 1, 10_000, 'http error')
    await bad.stop()
    expect(httpErrors[0]).toBeInstanceOf(StreamHttpError)
    expect(httpErrors[0]).toMatchObject({ status: 400, error: 'InvalidRequest' })
  })

  it('drops the connection on a malformed frame and reconnects from the cursor; skips stale seqs', async () => {
    const app = Fastify()
    let connections = 0
    mountSubscription(app, NSID, (ws, _req, params) => {
      connections++
      const from = params.cursor ?? 0
      if (connections === 1) {
        ws.send(encodeMessageFrame('#identity', { seq: from + 1, did: 'did:plc:a', time: 't' }))
        ws.send(Buffer.from([0xa1, 0x62, 0x6f])) // truncated CBOR
        ws.send(encodeMessageFrame('#identity', { seq: from + 2, did: 'did:plc:a', time: 't' })) // never processed
      } else {
        // replays one duplicate (cursor itself) and then an event the spec says to ignore (unknown op)
        ws.send(encodeMessageFrame('#identity', { seq: from, did: 'did:plc:a', time: 't' }))
        ws.send(Buffer.concat([Buffer.from([0xa1, 0x62, 0x6f, 0x70, 0x05]), Buffer.from([0xa0])]))
        ws.send(encodeMessageFrame('#identity', { seq: from + 1, did: 'did:plc:a', time: 't' }))
      }
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    cleanups.push(() => app.close())
    const port = (app.server.address() as AddressInfo).port
    const events: StreamEvent[] = []
    const errors: Error[] = []
    let cursor = 7
    const c = client({
      url: `http://127.0.0.1:${port}/xrpc/${NSID}`,
      getCursor: () => cursor,
      onEvent: (e) => {
        events.push(e)
        cursor = e.seq!
      },
      onError: (e) => errors.push(e),
    })
    await waitFor(() => events.length === 2, 10_000, 'two events')
    await c.stop()
    expect(events.map((e) => e.seq)).toEqual([8, 9])
    expect(events[0]!.t).toBe('#identity')
    expect(errors.some((e) => e instanceof FrameError)).toBe(true)
    expect(c.stats.duplicates).toBe(1)
    expect(connections).toBe(2)
  })

  it('a throwing handler is reported and the stream goes on', async () => {
    const log = new MemoryEventLog()
    const s = track(await startServer(log))
    const seen: number[] = []
    const errors: Error[] = []
    client({
      url: s.url,
      onEvent: (e) => {
        seen.push(e.seq!)
        if (e.seq === 2) throw new Error('bad event')
      },
      onError: (e) => errors.push(e),
    })
    await waitFor(() => s.server.consumers().length === 1)
    for (let i = 0; i < 3; i++) appendIdentity(log, s.server)
    await waitFor(() => seen.length === 3)
    expect(seen).toEqual([1, 2, 3])
    expect(errors.map((e) => e.name)).toEqual(['StreamHandlerError'])
  })

  it('backs off exponentially with jitter, capped', () => {
    const c = new SubscriptionClient({ url: 'ws://127.0.0.1:1', onEvent: () => undefined, minBackoffMs: 100, maxBackoffMs: 1000 })
    for (let attempt = 0; attempt < 12; attempt++) {
      const base = Math.min(1000, 100 * 2 ** attempt)
      for (let k = 0; k < 20; k++) {
        const d = c.backoffMs(attempt)
        expect(d).toBeGreaterThanOrEqual(base / 2)
        expect(d).toBeLessThanOrEqual(base)
      }
    }
  })

  it('stop() ends a client that is waiting to reconnect', async () => {
    const errors: Error[] = []
    const c = new SubscriptionClient({
      url: 'ws://127.0.0.1:9/xrpc/x',
      onEvent: () => undefined,
      onError: (e) => errors.push(e),
      minBackoffMs: 5_000,
    }).start()
    await waitFor(() => errors.length >= 1, 10_000, 'connection error')
    const t = Date.now()
    await c.stop()
    expect(Date.now() - t).toBeLessThan(1_000)
    expect(c.stats.connects).toBe(1)
    expect(c.isRunning).toBe(false)
  })
})
