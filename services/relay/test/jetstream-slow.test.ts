/**
 * Jetstream with a subscriber that stops reading: once its socket holds more than
 * RELAY_CONSUMER_MAX_QUEUED_BYTES unsent bytes it is closed with 1008 ConsumerTooSlow (v2: after an error
 * frame ConsumerTooSlow), while a subscriber that reads gets every event. And a relay given no zstd
 * dictionary: compress=true gets plain zstd frames, v2 compression is refused.
 */
import { decompress, init as zstdInit } from '@bokuweb/zstd-wasm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { sleep, waitFor } from './helpers.js'
import { TestNetwork, type TestAccount } from './network.js'

const BIG = 'org.example.bulk.item'
const MAX_QUEUED = 1024 * 1024
// each record ~400 kB of JSON; 32 of them (~13 MB) exceed the relay's 1 MiB cap plus the kernel's socket
// buffers on loopback (a few MB; the cut came after 14 records here), so the paused subscriber's unsent
// bytes must pass the cap
const RECORD_CHARS = 400_000
const RECORDS = 32

let net: TestNetwork
let alice: TestAccount

beforeAll(async () => {
  await zstdInit()
  net = await TestNetwork.start({ RELAY_CONSUMER_MAX_QUEUED_BYTES: String(MAX_QUEUED) })
  alice = await net.createAccount('alice')
  await net.synced(alice)
}, 60_000)

afterAll(async () => {
  await net?.close()
})

describe('GET /subscribe: slow subscribers', () => {
  it('cuts a subscriber that never reads with ConsumerTooSlow; a reading subscriber gets everything', async () => {
    const url = `${net.jetstreamUrl}?wantedCollections=${BIG}`
    const reader = new WebSocket(url)
    const got: number[] = []
    let readerClosed = false
    reader.on('message', (data) => got.push(JSON.parse(String(data)).commit.record.n))
    reader.on('close', () => (readerClosed = true))

    const slow = new WebSocket(url)
    let slowMessages = 0
    const slowClose = new Promise<{ code: number; reason: string }>((resolve) =>
      slow.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    )
    slow.on('message', () => slowMessages++)
    slow.on('error', () => undefined)
    const slowV2 = new WebSocket(`${net.relay.url.replace(/^http/, 'ws')}/xrpc/network.bsky.jetstream.subscribeEvents?collections=${BIG}`)
    let lastV2: any = null
    slowV2.on('message', (data) => (lastV2 = JSON.parse(String(data))))
    slowV2.on('error', () => undefined)
    const slowV2Close = new Promise<number>((resolve) => slowV2.on('close', (code) => resolve(code)))
    await Promise.all([reader, slow, slowV2].map((ws) => new Promise((r) => ws.once('open', r))))
    slow.pause() // stops reading its socket: the relay's unsent bytes for it grow
    slowV2.pause()

    const hub = net.relay.ctx.jetstream!
    const cutBefore = hub.stats().slowCut
    const text = 'x'.repeat(RECORD_CHARS)
    let written = 0
    while (written < RECORDS && hub.stats().slowCut < cutBefore + 2) {
      await net.create(alice, BIG, { n: ++written, text })
    }
    await waitFor(() => hub.stats().slowCut === cutBefore + 2, 5_000, 'the slow subscribers cut')
    slowV2.resume()
    expect(await slowV2Close).toBe(1008)
    expect(lastV2).toEqual({ $type: 'error', error: 'ConsumerTooSlow', message: expect.any(String) })
    // reading again, it finds what was queued before the close frame, then the close itself
    slow.resume()
    const closed = await slowClose
    expect(closed).toEqual({ code: 1008, reason: 'ConsumerTooSlow' })
    expect(slowMessages).toBeGreaterThan(0)

    // the reader is not affected: every event, in order, and still connected
    await net.create(alice, BIG, { n: 0, text: 'last' })
    await waitFor(() => got.includes(0), 5_000, 'the reader gets the last event')
    expect(got).toEqual([...Array.from({ length: written }, (_, i) => i + 1), 0])
    expect(written).toBeGreaterThanOrEqual(2)
    expect(readerClosed).toBe(false)
    expect(hub.stats().slowCut).toBe(cutBefore + 2)
    reader.close()
    await sleep(50)
  }, 30_000)
})

describe('a relay given no zstd dictionary', () => {
  it('sends compress=true subscribers plain zstd frames and refuses v2 compression', async () => {
    const zs = new WebSocket(`${net.jetstreamUrl}?wantedDids=${alice.did}&compress=true`)
    const got: any[] = []
    zs.on('message', (data, isBinary) => {
      expect(isBinary).toBe(true)
      got.push(JSON.parse(Buffer.from(decompress(data as Buffer)).toString('utf8')))
    })
    await new Promise((r) => zs.once('open', r))
    await net.create(alice, BIG, { n: -1, text: 'plain zstd' })
    await waitFor(() => got.length === 1, 5_000, 'the compressed event')
    zs.close()
    expect(got[0].commit.record).toEqual({ $type: BIG, n: -1, text: 'plain zstd' })

    const res = await new Promise<{ status: number; body: any }>((resolve) => {
      const ws = new WebSocket(`${net.relay.url.replace(/^http/, 'ws')}/xrpc/network.bsky.jetstream.subscribeEvents?zstdDictionary=1`)
      ws.on('unexpected-response', (_req, r) => {
        let text = ''
        r.on('data', (c: Buffer) => (text += c.toString()))
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: JSON.parse(text) }))
      })
      ws.on('error', () => undefined)
    })
    expect(res).toMatchObject({ status: 400, body: { error: 'UnknownZstdDictionary' } })
    const dict = await fetch(`${net.relay.url}/xrpc/network.bsky.jetstream.getZstdDictionary`)
    expect(dict.status).toBe(400)
    expect(await dict.json()).toMatchObject({ error: 'DictionaryNotFound' })
  })
})
