import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { WebSocket } from 'ws'
import {
  decodeFrame,
  encodeMessageFrame,
  mountEventStream,
  type SubscriptionServer,
  type DecodedFrame,
  type EventLog,
  type MemoryEventLog,
  type SubscriptionServerOptions,
} from '@stratos/core/stream'

export const NSID = 'com.atproto.sync.subscribeRepos'

export interface TestServer {
  app: FastifyInstance
  server: SubscriptionServer
  port: number
  url: string
  close(): Promise<void>
}

/** fastify app on 127.0.0.1 with one SubscriptionServer mounted at NSID */
export async function startServer(
  log: EventLog,
  opts: Omit<SubscriptionServerOptions, 'log'> = {},
  port = 0,
): Promise<TestServer> {
  const app = Fastify()
  const { server } = mountEventStream(app, NSID, { pingIntervalMs: 0, ...opts, log })
  await app.listen({ host: '127.0.0.1', port })
  const actual = (app.server.address() as AddressInfo).port
  return {
    app,
    server,
    port: actual,
    url: `ws://127.0.0.1:${actual}/xrpc/${NSID}`,
    close: async () => {
      await server.close()
      await app.close()
    },
  }
}

/** a #identity-like event body for seq */
export function identityBody(seq: number): Record<string, unknown> {
  return { seq, did: `did:plc:user${seq % 7}`, time: new Date(1_700_000_000_000 + seq * 1000).toISOString() }
}

export function appendIdentity(log: MemoryEventLog, server?: SubscriptionServer): number {
  const evt = log.append((seq) => encodeMessageFrame('#identity', identityBody(seq)))
  server?.publish(evt.seq, evt.frame)
  return evt.seq
}

export function seqOf(f: DecodedFrame): number | undefined {
  return f.op === 1 && typeof f.body.seq === 'number' ? f.body.seq : undefined
}

/** a raw ws consumer that records every frame */
export class Collector {
  readonly ws: WebSocket
  readonly raw: Buffer[] = []
  readonly frames: DecodedFrame[] = []
  readonly opened: Promise<void>
  readonly closed: Promise<{ code: number; reason: string }>
  pings = 0
  private waiters: { pred: () => boolean; resolve: () => void }[] = []

  constructor(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}) {
    this.ws = new WebSocket(url, { perMessageDeflate: false, ...opts })
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve())
      this.ws.once('error', reject)
    })
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        resolve({ code, reason: reason.toString() })
        this.check()
      })
    })
    this.ws.on('error', () => undefined)
    this.ws.on('ping', () => {
      this.pings++
      this.check()
    })
    this.ws.on('message', (data) => {
      const buf = data as Buffer
      this.raw.push(buf)
      this.frames.push(decodeFrame(buf))
      this.check()
    })
  }

  seqs(): number[] {
    return this.frames.map(seqOf).filter((s): s is number => s !== undefined)
  }

  private check() {
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred()) return true
      w.resolve()
      return false
    })
  }

  waitUntil(pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    if (pred()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs)
      this.waiters.push({
        pred,
        resolve: () => {
          clearTimeout(timer)
          resolve()
        },
      })
    })
  }

  waitForFrames(n: number, timeoutMs = 10_000): Promise<void> {
    return this.waitUntil(() => this.frames.length >= n, timeoutMs, `${n} frames (have ${this.frames.length})`)
  }

  waitForSeq(seq: number, timeoutMs = 10_000): Promise<void> {
    return this.waitUntil(() => this.seqs().includes(seq), timeoutMs, `seq ${seq}`)
  }
}

export async function waitFor(pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const start = Date.now()
  while (!pred()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export function range(from: number, to: number): number[] {
  const out: number[] = []
  for (let i = from; i <= to; i++) out.push(i)
  return out
}
