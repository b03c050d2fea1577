/**
 * The reference consumer (@atproto/sync's Firehose, on @atproto/xrpc-server's Subscription) reads a
 * stream served by our SubscriptionServer.
 */
import { Firehose, type Event } from '@atproto/sync'
import type { IdResolver } from '@atproto/identity'
import { afterEach, describe, expect, it } from 'vitest'
import { encodeMessageFrame, MemoryEventLog } from '@stratos/core/stream'
import { startServer, waitFor, type TestServer } from './helpers.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

// #identity handling resolves the DID; a stub keeps the test offline (no DID document → no handle)
const idResolver = { did: { resolve: async () => null } } as unknown as IdResolver

function logEvents(log: MemoryEventLog, server?: TestServer['server']) {
  const time = (n: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, n)).toISOString()
  const add = (t: string, body: (seq: number) => Record<string, unknown>) => {
    const evt = log.append((seq) => encodeMessageFrame(t, body(seq)))
    server?.publish(evt.seq, evt.frame)
  }
  add('#identity', (seq) => ({ seq, did: 'did:plc:alice', time: time(seq), handle: 'alice.test' }))
  add('#account', (seq) => ({ seq, did: 'did:plc:alice', time: time(seq), active: true }))
  add('#account', (seq) => ({ seq, did: 'did:plc:bob', time: time(seq), active: false, status: 'deactivated' }))
  add('#identity', (seq) => ({ seq, did: 'did:plc:bob', time: time(seq) }))
}

describe('@atproto/sync Firehose against our server', () => {
  it('reads replayed and live #identity / #account events', async () => {
    const log = new MemoryEventLog()
    logEvents(log)
    const s = await startServer(log)
    cleanups.push(() => s.close())
    const events: Event[] = []
    const errors: Error[] = []
    const firehose = new Firehose({
      idResolver,
      service: `ws://127.0.0.1:${s.port}`,
      getCursor: () => 0,
      unauthenticatedHandles: true,
      handleEvent: (evt) => void events.push(evt),
      onError: (err) => errors.push(err),
    })
    const running = firehose.start()
    cleanups.push(async () => {
      await firehose.destroy()
      await running
    })
    await waitFor(() => events.length === 4, 10_000, 'replayed events')
    await waitFor(() => s.server.consumers().some((c) => c.phase === 'live'))
    logEvents(log, s.server)
    await waitFor(() => events.length === 8, 10_000, 'live events')
    expect(errors).toEqual([])
    expect(events.map((e) => [e.event, e.seq, e.did])).toEqual([
      ['identity', 1, 'did:plc:alice'],
      ['account', 2, 'did:plc:alice'],
      ['account', 3, 'did:plc:bob'],
      ['identity', 4, 'did:plc:bob'],
      ['identity', 5, 'did:plc:alice'],
      ['account', 6, 'did:plc:alice'],
      ['account', 7, 'did:plc:bob'],
      ['identity', 8, 'did:plc:bob'],
    ])
    expect(events[2]).toMatchObject({ event: 'account', active: false, status: 'deactivated', time: '2025-01-01T00:00:03.000Z' })
    expect(events[1]).toMatchObject({ event: 'account', active: true })
    expect(s.server.consumers()[0]!.cursor).toBe(0)
  })

  it('surfaces our FutureCursor error frame to the reference client', async () => {
    const log = new MemoryEventLog()
    logEvents(log)
    const s = await startServer(log)
    cleanups.push(() => s.close())
    const errors: Error[] = []
    const firehose = new Firehose({
      idResolver,
      service: `ws://127.0.0.1:${s.port}`,
      getCursor: () => 100,
      subscriptionReconnectDelay: 10,
      handleEvent: () => undefined,
      onError: (err) => errors.push(err),
    })
    const running = firehose.start()
    cleanups.push(async () => {
      await firehose.destroy()
      await running
    })
    await waitFor(() => errors.length >= 1, 10_000, 'error')
    // the reference client turns the error frame into an XRPCError carrying its name and message
    expect(errors[0]!.cause).toMatchObject({ error: 'FutureCursor', message: 'Cursor in the future.' })
  })
})
