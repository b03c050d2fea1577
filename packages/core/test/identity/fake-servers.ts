import http from 'node:http'
import type { AddressInfo } from 'node:net'

export type Route = (req: http.IncomingMessage, res: http.ServerResponse) => void

/** A tiny HTTP server on 127.0.0.1 (random port) that counts requests per path. */
export class FakeServer {
  readonly server: http.Server
  readonly hits = new Map<string, number>()
  /** handlers by path; falls back to `fallback` */
  readonly routes = new Map<string, Route>()
  fallback: Route = (_req, res) => {
    res.statusCode = 404
    res.end('not found')
  }
  port = 0

  constructor() {
    this.server = http.createServer((req, res) => {
      const path = decodeURIComponent((req.url ?? '/').split('?')[0]!)
      this.hits.set(path, (this.hits.get(path) ?? 0) + 1)
      const route = this.routes.get(path) ?? this.fallback
      route(req, res)
    })
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.port = (this.server.address() as AddressInfo).port
    return this
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  count(path: string): number {
    return this.hits.get(path) ?? 0
  }

  json(path: string, value: () => unknown, status = 200): void {
    this.routes.set(path, (_req, res) => {
      res.statusCode = status
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify(value()))
    })
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

export function didDoc(
  did: string,
  opts: { handle?: string; key?: string; pds?: string; extra?: Record<string, unknown> } = {},
): Record<string, unknown> {
  return {
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: did,
    alsoKnownAs: opts.handle ? [`at://${opts.handle}`] : [],
    verificationMethod: opts.key
      ? [{ id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: opts.key.slice('did:key:'.length) }]
      : [],
    service: opts.pds ? [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: opts.pds }] : [],
    ...opts.extra,
  }
}

/** A syntactically valid did:plc with a recognizable suffix. */
export function plcDid(n: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let s = ''
  let x = n
  for (let i = 0; i < 24; i++) {
    s = alphabet[x % 32] + s
    x = Math.floor(x / 32)
  }
  return `did:plc:${s}`
}
