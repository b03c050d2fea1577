/** Test fixtures for the labeler: a tiny DID directory, a labeler on a loopback port, admin calls. */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readConfig, LabelerServer } from '../src/index.js'

export const ADMIN_PASSWORD = 'labeler-admin-secret'
export const LABELER_DID = 'did:plc:labelertestaaaaaaaaaaaaa'

/** Serves GET /<did> with DID documents the test registers (a PLC directory as the resolver sees it). */
export class DidDirectory {
  readonly docs = new Map<string, unknown>()
  private server!: Server
  url = ''

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const did = decodeURIComponent((req.url ?? '/').slice(1).split('?')[0]!)
      const doc = this.docs.get(did)
      if (!doc) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"not found"}')
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc))
    })
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this
  }

  /** registers a did:plc with an #atproto signing key (a did:key) */
  add(did: string, signingDidKey: string, services: Record<string, string> = {}): void {
    this.docs.set(did, {
      '@context': ['https://www.w3.org/ns/did/v1'],
      id: did,
      alsoKnownAs: [],
      verificationMethod: [
        { id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: signingDidKey.replace(/^did:key:/, '') },
      ],
      service: Object.entries(services).map(([id, endpoint]) => ({
        id: `#${id}`,
        type: id === 'atproto_labeler' ? 'AtprotoLabeler' : 'AtprotoPersonalDataServer',
        serviceEndpoint: endpoint,
      })),
    })
  }

  close(): Promise<void> {
    return new Promise((r) => {
      this.server.closeAllConnections()
      this.server.close(() => r())
    })
  }
}

export async function startLabeler(env: Record<string, string> = {}): Promise<LabelerServer> {
  const config = readConfig({
    LABELER_PORT: '0',
    LABELER_DATA_DIRECTORY: ':memory:',
    LABELER_DID: LABELER_DID,
    LABELER_ADMIN_PASSWORD: ADMIN_PASSWORD,
    LABELER_DEV_MODE: 'true',
    LOG_LEVEL: 'silent',
    ...env,
  })
  const server = await LabelerServer.create(config)
  await server.start()
  return server
}

export const adminHeader = (password = ADMIN_PASSWORD) => ({
  authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`,
})

export async function adminCall(
  url: string,
  nsid: string,
  opts: { body?: unknown; params?: Record<string, string>; password?: string } = {},
): Promise<{ status: number; body: any }> {
  const qs = opts.params ? `?${new URLSearchParams(opts.params)}` : ''
  const res = await fetch(`${url}/xrpc/${nsid}${qs}`, {
    method: opts.body === undefined ? 'GET' : 'POST',
    headers: { ...adminHeader(opts.password), ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  })
  return { status: res.status, body: await res.json() }
}

export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const start = Date.now()
  for (;;) {
    if (await pred()) return
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
