/**
 * Issue 14 item 16 on the relay: the address of a crawled host is checked again when its WebSocket
 * connects (a name that passed the probe cannot be rebound to an internal address), and in development
 * the aliases of one local host are one host.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WebSocketServer } from 'ws'
import { publicOnlyLookup, SafeFetchError } from '@stratos/core/identity'
import { SubscriptionClient } from '@stratos/core/stream'
import { endpointHostname, parseHostname } from '../../src/hosts/hostname.js'

describe('the WebSocket to a host re-checks the address it connects to', () => {
  let server: Server
  let wss: WebSocketServer
  let port: number
  let connections = 0
  beforeAll(async () => {
    server = createServer()
    wss = new WebSocketServer({ server })
    wss.on('connection', (ws) => {
      connections++
      ws.close()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    port = (server.address() as AddressInfo).port
  })
  afterAll(async () => {
    wss.close()
    await new Promise((r) => server.close(r))
  })

  const connect = (lookup: ReturnType<typeof publicOnlyLookup> | undefined) =>
    new Promise<{ opened: boolean; error?: Error }>((resolve) => {
      const client = new SubscriptionClient({
        // a public-looking name that now resolves to loopback (DNS rebinding after the probe)
        url: `ws://pds.rebind.example:${port}/xrpc/com.atproto.sync.subscribeRepos`,
        onEvent: () => undefined,
        onOpen: () => {
          void client.stop()
          resolve({ opened: true })
        },
        onError: (error) => {
          void client.stop()
          resolve({ opened: false, error })
        },
        lookup,
        minBackoffMs: 10_000,
      })
      client.start()
    })

  it('refuses the connection when the name resolves to an internal address', async () => {
    const rebound = async () => [{ address: '127.0.0.1', family: 4 }]
    const before = connections
    const refused = await connect(publicOnlyLookup({ lookup: rebound }))
    expect(refused.opened).toBe(false)
    expect(refused.error).toBeInstanceOf(SafeFetchError)
    expect((refused.error as SafeFetchError).code).toBe('forbidden-address')
    expect(connections).toBe(before)
    // the same lookup with private addresses allowed (dev mode) connects: the refusal is the check's doing
    const allowed = await connect(publicOnlyLookup({ lookup: rebound, allowPrivateAddresses: true }))
    expect(allowed.opened).toBe(true)
  })
})

describe('development: aliases of one local host are one host', () => {
  it('0.0.0.0, [::], [::1] and 127.0.0.1 with the same port are the same host, whatever the scheme', () => {
    const forms = ['0.0.0.0:2583', 'ws://127.0.0.1:2583', 'http://[::1]:2583', '[::]:2583', '127.0.0.1:2583']
    expect(new Set(forms.map((f) => parseHostname(f, true).hostname))).toEqual(new Set(['127.0.0.1:2583']))
    expect(endpointHostname('http://0.0.0.0:2583')).toBe('127.0.0.1:2583')
    expect(parseHostname('localhost:2583', true).hostname).toBe('localhost:2583')
  })
})
