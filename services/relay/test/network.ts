/**
 * A small real network for relay tests: our PLC, our PDS (services/pds) and the relay, on loopback ports,
 * the PDS asking the relay to crawl it. Accounts are created and written to through the PDS's XRPC API.
 */
import { createServer } from 'node:net'
import { PdsServer, readConfigFromEnv } from '@stratos/pds'
import { PlcServer, readConfig as readPlcConfig } from '@stratos/plc'
import type { RelayServer } from '../src/index.js'
import { relayConfig, startRelay, tmpDir, waitFor, xrpcGet } from './helpers.js'

export async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

export interface TestAccount {
  did: string
  handle: string
  accessJwt: string
}

export class TestNetwork {
  dir = tmpDir()
  plc!: PlcServer
  pds!: PdsServer
  relay!: RelayServer
  pdsUrl = ''

  static async start(relayEnv: Record<string, string> = {}): Promise<TestNetwork> {
    const n = new TestNetwork()
    n.plc = await PlcServer.create(readPlcConfig({ PLC_PORT: '0', PLC_DB_PATH: ':memory:', PLC_LOG_LEVEL: 'silent' }))
    await n.plc.start()
    n.relay = await startRelay(relayConfig(`${n.dir.path}/relay`, n.plc.url, { RELAY_PORT: String(await freePort()), ...relayEnv }))
    const pdsPort = await freePort()
    n.pds = await PdsServer.create(
      readConfigFromEnv({
        PDS_HOSTNAME: '127.0.0.1',
        PDS_PORT: String(pdsPort),
        PDS_DEV_MODE: 'true',
        PDS_DATA_DIRECTORY: `${n.dir.path}/pds`,
        PDS_BLOBSTORE_DISK_LOCATION: `${n.dir.path}/pds/blobs`,
        PDS_DID_PLC_URL: n.plc.url,
        PDS_SERVICE_HANDLE_DOMAINS: '.test',
        PDS_INVITE_REQUIRED: 'false',
        PDS_JWT_SECRET: 'e2e-jwt-secret-e2e-jwt-secret',
        PDS_ADMIN_PASSWORD: 'e2e-admin',
        PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: '11'.repeat(32),
        PDS_CRAWLERS: n.relay.url,
        LOG_LEVEL: 'silent',
      }),
    )
    await n.pds.start()
    n.pdsUrl = `http://127.0.0.1:${pdsPort}`
    return n
  }

  get jetstreamUrl(): string {
    return `${this.relay.url.replace(/^http/, 'ws')}/subscribe`
  }

  async call(nsid: string, body: unknown, token?: string): Promise<any> {
    const res = await fetch(`${this.pdsUrl}/xrpc/${nsid}`, {
      method: 'POST',
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    const json = text ? JSON.parse(text) : {}
    if (!res.ok) throw new Error(`${nsid}: ${res.status} ${text}`)
    return json
  }

  async createAccount(name: string): Promise<TestAccount> {
    const res = await this.call('com.atproto.server.createAccount', {
      handle: `${name}.test`,
      email: `${name}@example.com`,
      password: `${name}-password`,
    })
    await waitFor(async () => (await xrpcGet(this.relay.url, 'com.atproto.sync.listHosts')).body.hosts?.length === 1, 10_000, 'crawl')
    return { did: res.did, handle: res.handle, accessJwt: res.accessJwt }
  }

  async create(a: TestAccount, collection: string, record: Record<string, unknown>, rkey?: string): Promise<{ uri: string; cid: string; rkey: string }> {
    const res = await this.call('com.atproto.repo.createRecord', { repo: a.did, collection, record: { $type: collection, ...record }, rkey }, a.accessJwt)
    return { uri: res.uri, cid: res.cid, rkey: String(res.uri).split('/').pop()! }
  }

  async put(a: TestAccount, collection: string, rkey: string, record: Record<string, unknown>): Promise<{ cid: string }> {
    return this.call('com.atproto.repo.putRecord', { repo: a.did, collection, rkey, record: { $type: collection, ...record } }, a.accessJwt)
  }

  async del(a: TestAccount, collection: string, rkey: string): Promise<void> {
    await this.call('com.atproto.repo.deleteRecord', { repo: a.did, collection, rkey }, a.accessJwt)
  }

  /** Waits until the relay holds the PDS's latest commit of the account. */
  async synced(a: TestAccount, relayUrl = this.relay.url): Promise<void> {
    const fromPds = (await (await fetch(`${this.pdsUrl}/xrpc/com.atproto.sync.getLatestCommit?did=${a.did}`)).json()) as { rev: string }
    await waitFor(async () => (await xrpcGet(relayUrl, 'com.atproto.sync.getLatestCommit', { did: a.did })).body.rev === fromPds.rev, 15_000, 'relay in sync')
  }

  async close(): Promise<void> {
    await this.pds?.close()
    await this.relay?.close()
    await this.plc?.close()
    this.dir.remove()
  }
}
