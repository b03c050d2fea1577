/** A subscription mounted next to the XRPC server's own `/xrpc/:nsid` routes. */
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { createXrpcServer } from '@stratos/core/xrpc'
import { MemoryEventLog, mountEventStream } from '@stratos/core/stream'
import { appendIdentity, Collector, NSID } from './helpers.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

describe('mounting on the XRPC server', () => {
  it('streams on the subscription path while other XRPC paths keep their behaviour', async () => {
    const xrpc = createXrpcServer({ metrics: false })
    const log = new MemoryEventLog()
    const { server } = mountEventStream(xrpc.app, NSID, { log, pingIntervalMs: 0 })
    await xrpc.app.listen({ host: '127.0.0.1', port: 0 })
    cleanups.push(() => xrpc.app.close())
    const port = (xrpc.app.server.address() as AddressInfo).port

    const c = new Collector(`ws://127.0.0.1:${port}/xrpc/${NSID}?cursor=0`)
    cleanups.push(() => c.ws.terminate())
    await c.opened
    appendIdentity(log, server)
    await c.waitForSeq(1)

    const plain = await fetch(`http://127.0.0.1:${port}/xrpc/${NSID}`)
    expect(plain.status).toBe(426)
    const post = await fetch(`http://127.0.0.1:${port}/xrpc/${NSID}`, { method: 'POST' })
    expect(post.status).toBe(405)
    const health = await fetch(`http://127.0.0.1:${port}/xrpc/_health`)
    expect(health.status).toBe(200)
    const other = await fetch(`http://127.0.0.1:${port}/xrpc/com.atproto.sync.getLatestCommit?did=did:plc:x`)
    expect(other.status).not.toBe(426)
    expect(other.status).toBeGreaterThanOrEqual(400)
  })
})
