/**
 * What a Jetstream client can ask for when it connects, on a relay alone (events emitted into its outbox).
 *
 * WebSocket subprotocols on the Jetstream endpoints (atproto proposal 0015, Jetstream v2's lexicon):
 * network.bsky.jetstream.subscribeEvents speaks `xrpc.v1.json`, which it echoes when a client offers it
 * (alone or among others, matched case-sensitively) and which is also the framing of a client that offers
 * nothing (no echo); an offer without it is refused before the upgrade with an XRPC error naming it. GET
 * /subscribe (v1) predates subprotocols and never selects one. A malformed header is an XRPC 400, not
 * `ws`'s plain-text refusal.
 *
 * /subscribe's opt-ins: requireHello (nothing until an options_update), a bad subscriber message (closed
 * with 1008), `Socket-Encoding: zstd` (as compress=true; refused on v2).
 */
import { request } from 'node:http'
import { randomBytes } from 'node:crypto'
import { decompress, init as zstdInit } from '@bokuweb/zstd-wasm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { RelayServer } from '../src/index.js'
import { relayConfig, startRelay, tmpDir, waitFor } from './helpers.js'

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
let dir: ReturnType<typeof tmpDir>
let relay: RelayServer
let v2url: string
let v1url: string

beforeAll(async () => {
  await zstdInit()
  dir = tmpDir()
  relay = await startRelay(relayConfig(dir.path, 'http://127.0.0.1:1'))
  v2url = `${relay.url.replace(/^http/, 'ws')}/xrpc/network.bsky.jetstream.subscribeEvents`
  v1url = `${relay.url.replace(/^http/, 'ws')}/subscribe`
}, 30_000)

afterAll(async () => {
  await relay?.close()
  dir?.remove()
})

/** Opens a subscriber offering `protocols`; resolves once open with what the server selected. */
function open(url: string, protocols?: string[]): Promise<{ ws: WebSocket; messages: any[] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols)
    const messages: any[] = []
    ws.on('message', (data) => messages.push(JSON.parse(String(data))))
    ws.once('open', () => resolve({ ws, messages }))
    ws.once('error', reject)
  })
}

/** A WebSocket upgrade request with this exact Sec-WebSocket-Protocol header (the ws client checks its own). */
function upgrade(url: string, protocolHeader: string): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(url.replace(/^ws/, 'http'), {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-protocol': protocolHeader,
      },
    })
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: null })
    })
    req.on('response', (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('Jetstream v2 subprotocol negotiation', () => {
  it('echoes xrpc.v1.json when offered, selects nothing without an offer, and frames the same either way', async () => {
    const offered = await open(v2url, ['xrpc.v1.json'])
    const among = await open(v2url, ['xrpc.v1.cbor', 'xrpc.v1.json'])
    const none = await open(v2url)
    expect(offered.ws.protocol).toBe('xrpc.v1.json')
    expect(among.ws.protocol).toBe('xrpc.v1.json')
    expect(none.ws.protocol).toBe('')

    await relay.ctx.outbox.emit('#identity', DID, { did: DID, handle: 'alice.test', time: new Date().toISOString() })
    const subs = [offered, among, none]
    await waitFor(() => subs.every((s) => s.messages.length === 1), 10_000, 'the identity event on each')
    for (const s of subs) s.ws.close()
    expect(offered.messages[0]).toEqual({
      $type: 'message',
      payload: {
        $type: 'network.bsky.jetstream.subscribeEvents#identity',
        seq: expect.any(Number),
        did: DID,
        time: expect.any(String),
        identity: { did: DID, handle: 'alice.test', seq: expect.any(Number), time: expect.any(String) },
      },
    })
    expect(among.messages).toEqual(offered.messages)
    expect(none.messages).toEqual(offered.messages)
  })

  it('refuses an offer without xrpc.v1.json (another framing, or a different case) with an XRPC error naming it', async () => {
    for (const header of ['xrpc.v0.cbor', 'xrpc.v1.cbor, xrpc.v0.cbor', 'XRPC.V1.JSON']) {
      const res = await upgrade(v2url, header)
      expect(res.status).toBe(400)
      expect(res.body).toEqual({ error: 'InvalidRequest', message: expect.stringContaining('xrpc.v1.json') })
    }
    // the ws client sees the refusal instead of a connection that would speak a framing it did not ask for
    await expect(open(v2url, ['xrpc.v0.cbor'])).rejects.toThrow(/400/)
  })

  it('answers a malformed Sec-WebSocket-Protocol header with an XRPC 400', async () => {
    for (const [url, header] of [
      [v2url, 'xrpc.v1.json,,x'],
      [v2url, 'xrpc.v1.json, xrpc.v1.json'],
      [v2url, 'xrpc v1 json'],
      [v1url, 'a b'],
    ] as const) {
      const res = await upgrade(url, header)
      expect(res.status).toBe(400)
      expect(res.body).toEqual({ error: 'InvalidRequest', message: expect.stringContaining('Sec-WebSocket-Protocol') })
    }
  })

  it('GET /subscribe (v1) never selects a subprotocol, as Jetstream v1', async () => {
    const res = await upgrade(v1url, 'xrpc.v1.json, chat')
    expect(res.status).toBe(101)
    expect(res.headers['sec-websocket-protocol']).toBeUndefined()
    const plain = await open(v1url)
    expect(plain.ws.protocol).toBe('')
    plain.ws.close()
  })
})

describe('GET /subscribe opt-ins a Jetstream client can send', () => {
  it('requireHello=true sends nothing until an options_update, then what it asks for', async () => {
    const other = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
    const hello = await open(`${v1url}?requireHello=true`)
    await relay.ctx.outbox.emit('#identity', DID, { did: DID, handle: 'before.test', time: new Date().toISOString() })
    // a subscriber that said nothing yet is not live: a control subscriber proves the event went out
    const control = await open(v1url)
    await relay.ctx.outbox.emit('#identity', DID, { did: DID, handle: 'still-before.test', time: new Date().toISOString() })
    await waitFor(() => control.messages.length === 1, 10_000, 'the control subscriber')
    expect(hello.messages).toEqual([])

    hello.ws.send(JSON.stringify({ type: 'options_update', payload: { wantedDids: [other] } }))
    await waitFor(() => relay.ctx.jetstream!.stats().subscribers === 2, 5_000, 'subscribers')
    await new Promise((r) => setTimeout(r, 100))
    await relay.ctx.outbox.emit('#identity', DID, { did: DID, handle: 'not-wanted.test', time: new Date().toISOString() })
    await relay.ctx.outbox.emit('#identity', other, { did: other, handle: 'wanted.test', time: new Date().toISOString() })
    await waitFor(() => hello.messages.length === 1 && control.messages.length === 3, 10_000, 'the wanted event')
    await new Promise((r) => setTimeout(r, 100))
    hello.ws.close()
    control.ws.close()
    expect(hello.messages).toEqual([
      { did: other, time_us: expect.any(Number), cursor: expect.any(Number), kind: 'identity', identity: { did: other, handle: 'wanted.test', seq: expect.any(Number), time: expect.any(String) } },
    ])
  })

  it('a message that is not an options_update closes the connection with 1008 and the reason', async () => {
    for (const bad of ['not json', JSON.stringify({ type: 'subscribe' }), JSON.stringify({ type: 'options_update', payload: { wantedDids: ['alice'] } })]) {
      const sub = await open(v1url)
      const closed = new Promise<{ code: number; reason: string }>((r) => sub.ws.once('close', (code, reason) => r({ code, reason: reason.toString() })))
      sub.ws.send(bad)
      const { code, reason } = await closed
      expect(code).toBe(1008)
      expect(reason.length).toBeGreaterThan(5)
    }
  })

  it('Socket-Encoding: zstd compresses like compress=true; v2 refuses it, naming zstdDictionary', async () => {
    const ws = new WebSocket(v1url, { headers: { 'Socket-Encoding': 'zstd' } })
    const got: { binary: boolean; json: any }[] = []
    ws.on('message', (data, isBinary) => got.push({ binary: isBinary, json: isBinary ? JSON.parse(Buffer.from(decompress(data as Buffer)).toString('utf8')) : null }))
    await new Promise((r) => ws.once('open', r))
    await relay.ctx.outbox.emit('#identity', DID, { did: DID, handle: 'zstd.test', time: new Date().toISOString() })
    await waitFor(() => got.length === 1, 10_000, 'the compressed event')
    ws.close()
    expect(got[0]).toEqual({ binary: true, json: expect.objectContaining({ did: DID, kind: 'identity', identity: expect.objectContaining({ handle: 'zstd.test' }) }) })

    const res = await new Promise<{ status: number; body: any }>((resolve) => {
      const v2 = new WebSocket(v2url, { headers: { 'Socket-Encoding': 'zstd' } })
      v2.on('unexpected-response', (_req, r) => {
        let text = ''
        r.on('data', (c: Buffer) => (text += c.toString()))
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: JSON.parse(text) }))
      })
      v2.on('error', () => undefined)
    })
    expect(res).toEqual({ status: 400, body: { error: 'InvalidRequest', message: expect.stringContaining('zstdDictionary') } })
  })
})
