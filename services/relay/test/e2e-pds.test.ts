/**
 * The relay with our own PDS (services/pds) and PLC (services/plc) as real upstreams: writes on the PDS
 * reach a Firehose consumer of the relay (verification on), in order, with no event dropped.
 */
import { createServer } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PdsServer, readConfigFromEnv } from '@stratos/pds'
import { PlcServer, readConfig as readPlcConfig } from '@stratos/plc'
import type { RelayServer } from '../src/index.js'
import { FirehoseConsumer, droppedCounts, relayConfig, startRelay, tmpDir, waitFor, xrpcGet } from './helpers.js'

async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

let dir: ReturnType<typeof tmpDir>
let plc: PlcServer
let pds: PdsServer
let relay: RelayServer
let consumer: FirehoseConsumer
let pdsUrl: string

async function call(nsid: string, body: unknown, token?: string): Promise<any> {
  const res = await fetch(`${pdsUrl}/xrpc/${nsid}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  })
  const json = await res.json()
  if (!res.ok) throw new Error(`${nsid}: ${res.status} ${JSON.stringify(json)}`)
  return json
}

beforeAll(async () => {
  dir = tmpDir()
  plc = await PlcServer.create(readPlcConfig({ PLC_PORT: '0', PLC_DB_PATH: ':memory:', PLC_LOG_LEVEL: 'silent' }))
  await plc.start()
  const relayPort = await freePort()
  relay = await startRelay(relayConfig(`${dir.path}/relay`, plc.url, { RELAY_PORT: String(relayPort) }))
  const pdsPort = await freePort()
  pds = await PdsServer.create(
    readConfigFromEnv({
      PDS_HOSTNAME: '127.0.0.1',
      PDS_PORT: String(pdsPort),
      PDS_DEV_MODE: 'true',
      PDS_DATA_DIRECTORY: `${dir.path}/pds`,
      PDS_BLOBSTORE_DISK_LOCATION: `${dir.path}/pds/blobs`,
      PDS_DID_PLC_URL: plc.url,
      PDS_SERVICE_HANDLE_DOMAINS: '.test',
      PDS_INVITE_REQUIRED: 'false',
      PDS_JWT_SECRET: 'e2e-jwt-secret-e2e-jwt-secret',
      PDS_ADMIN_PASSWORD: 'e2e-admin',
      PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: '11'.repeat(32),
      PDS_CRAWLERS: relay.url,
      LOG_LEVEL: 'silent',
    }),
  )
  await pds.start()
  pdsUrl = `http://127.0.0.1:${pdsPort}`
  consumer = new FirehoseConsumer(relay.url, plc.url, { cursor: 0 })
}, 60_000)

afterAll(async () => {
  await consumer?.close()
  await pds?.close()
  await relay?.close()
  await plc?.close()
  dir?.remove()
})

describe('relay with the Stratos PDS', () => {
  it('forwards every write of the PDS, verified, in order, dropping nothing', async () => {
    const account = await call('com.atproto.server.createAccount', {
      handle: 'alice.test',
      email: 'alice@example.com',
      password: 'alice-password',
    })
    const { did, accessJwt } = account as { did: string; accessJwt: string }
    // the PDS asked the relay to crawl it
    await waitFor(async () => (await xrpcGet(relay.url, 'com.atproto.sync.listHosts')).body.hosts?.length === 1, 10_000, 'crawl')

    const uris: string[] = []
    for (let i = 0; i < 5; i++) {
      const res = await call(
        'com.atproto.repo.createRecord',
        { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: `post ${i}`, createdAt: new Date().toISOString() } },
        accessJwt,
      )
      uris.push(res.uri)
    }
    const rkey = uris[0]!.split('/').pop()!
    await call(
      'com.atproto.repo.putRecord',
      { repo: did, collection: 'app.bsky.feed.post', rkey, record: { $type: 'app.bsky.feed.post', text: 'post 0 edited', createdAt: new Date().toISOString() } },
      accessJwt,
    )
    await call('com.atproto.repo.deleteRecord', { repo: did, collection: 'app.bsky.feed.post', rkey: uris[1]!.split('/').pop()! }, accessJwt)

    await waitFor(() => consumer.events.some((e) => e.event === 'delete'), 20_000, 'the delete')
    const mine = consumer.events.filter((e) => 'did' in e && e.did === did)
    const writes = mine.filter((e) => e.event === 'create' || e.event === 'update' || e.event === 'delete')
    expect(writes.filter((e) => e.event === 'create' && (e as { collection: string }).collection === 'app.bsky.feed.post')
      .map((e) => (e as unknown as { record: { text: string } }).record.text)).toEqual(['post 0', 'post 1', 'post 2', 'post 3', 'post 4'])
    expect(writes.at(-2)).toMatchObject({ event: 'update', rkey })
    expect(writes.at(-1)).toMatchObject({ event: 'delete' })
    expect(consumer.errors).toEqual([])
    expect(await droppedCounts(relay.url)).toEqual({})

    // the relay's view of the account matches the PDS's
    const fromPds = (await (await fetch(`${pdsUrl}/xrpc/com.atproto.sync.getLatestCommit?did=${did}`)).json()) as { cid: string; rev: string }
    await waitFor(async () => (await xrpcGet(relay.url, 'com.atproto.sync.getLatestCommit', { did })).body.rev === fromPds.rev)
    expect((await xrpcGet(relay.url, 'com.atproto.sync.getLatestCommit', { did })).body).toEqual(fromPds)
    const status = await xrpcGet(relay.url, 'com.atproto.sync.getRepoStatus', { did })
    expect(status.body).toEqual({ did, active: true, rev: fromPds.rev })

    // getRepo redirects to the PDS, which serves the CAR
    const repo = await fetch(`${relay.url}/xrpc/com.atproto.sync.getRepo?did=${did}`)
    expect(repo.status).toBe(200)
    expect(repo.headers.get('content-type')).toContain('application/vnd.ipld.car')
  })
})
