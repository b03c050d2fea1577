/**
 * Issue 14: attacks on the PDS from outside, each asserting the fixed behaviour (items 2, 3, 4, 7, 9,
 * 10, 11, 12).
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { AtpAgent } from '@atproto/api'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DAG_CBOR_CODEC, cborEncode, cidForBlock } from '@stratos/core/data'
import { MST, MemoryBlockstore, writeCar } from '@stratos/core/repo'
import { nextTid } from '@stratos/core/syntax'
import { readConfigFromEnv } from '../../src/config.js'
import { startNetwork, xrpc, type TestNetwork } from '../_network.js'

let net: TestNetwork
const PASSWORD = 'hunter2-but-longer'

async function createAccount(handle: string, headers: Record<string, string> = {}) {
  return xrpc(net.url, 'com.atproto.server.createAccount', {
    method: 'POST',
    body: { handle, email: `${handle.split('.')[0]}@example.com`, password: PASSWORD },
    headers,
  })
}

beforeAll(async () => {
  net = await startNetwork({ PDS_RATE_LIMITS_ENABLED: 'true', PDS_TEMP_BLOB_MAX_COUNT: '8', PDS_SIGNING_KEY_ENCRYPTION_KEY: randomBytes(32).toString('hex') })
})
afterAll(async () => {
  await net?.close()
})

describe('login attempts (items 3 and 12)', () => {
  let did: string
  beforeAll(async () => {
    const res = await createAccount('victim.test')
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    did = res.body.did
  })

  it('handle, DID, email and untrimmed spellings share one budget per account and IP', async () => {
    const spellings = ['victim.test', ' victim.test', 'VICTIM.TEST ', did, ` ${did}`, 'victim@example.com', ' Victim@Example.com']
    const statuses: number[] = []
    for (let i = 0; i < 35; i++) {
      const res = await xrpc(net.url, 'com.atproto.server.createSession', {
        method: 'POST',
        body: { identifier: spellings[i % spellings.length], password: `wrong-${i}` },
      })
      statuses.push(res.status)
    }
    expect(statuses.slice(0, 30).every((s) => s === 401)).toBe(true)
    expect(statuses.slice(30)).toEqual([429, 429, 429, 429, 429])
    // the right password is refused too while the budget is spent: guessing does not go on
    const right = await xrpc(net.url, 'com.atproto.server.createSession', { method: 'POST', body: { identifier: did, password: PASSWORD } })
    expect(right.status).toBe(429)
  })

  it('an unknown account takes as long to refuse as a known one (no existence oracle)', async () => {
    const time = async (identifier: string) => {
      const t0 = performance.now()
      const res = await xrpc(net.url, 'com.atproto.server.createSession', {
        method: 'POST',
        body: { identifier, password: 'wrong-password' },
        headers: { 'x-forwarded-for': '192.0.2.1' },
      })
      expect([401, 429]).toContain(res.status)
      return performance.now() - t0
    }
    await createAccount('timing.test')
    const known: number[] = []
    const unknown: number[] = []
    for (let i = 0; i < 6; i++) {
      known.push(await time('timing.test'))
      unknown.push(await time(`nobody-${i}.test`))
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    // before the fix: ~7 ms against ~80 ms; now both do one scrypt
    expect(median(unknown)).toBeGreaterThan(median(known) * 0.6)
  })
})

describe('getServiceAuth follows the proxy rules for app passwords (item 9)', () => {
  it('an app password cannot mint chat.bsky.* or account-management tokens; ordinary ones still work', async () => {
    const agent = new AtpAgent({ service: net.url })
    await agent.createAccount({ handle: 'apppw.test', email: 'apppw@example.com', password: PASSWORD })
    const { data: appPw } = await agent.com.atproto.server.createAppPassword({ name: 'client' })
    const appAgent = new AtpAgent({ service: net.url })
    await appAgent.login({ identifier: 'apppw.test', password: appPw.password })
    const aud = 'did:web:api.example.com'
    for (const lxm of [
      'chat.bsky.convo.getLog',
      'chat.bsky.convo.sendMessage',
      'com.atproto.identity.submitPlcOperation',
      'com.atproto.identity.updateHandle',
      'com.atproto.server.createAccount',
    ]) {
      await expect(appAgent.com.atproto.server.getServiceAuth({ aud, lxm }), lxm).rejects.toMatchObject({ status: 400 })
    }
    const ok = await appAgent.com.atproto.server.getServiceAuth({ aud, lxm: 'app.bsky.feed.getFeedSkeleton' })
    expect(ok.data.token).toBeTruthy()
    // a full session may mint chat tokens, but nobody may mint identity updates
    expect((await agent.com.atproto.server.getServiceAuth({ aud, lxm: 'chat.bsky.convo.getLog' })).data.token).toBeTruthy()
    await expect(agent.com.atproto.server.getServiceAuth({ aud, lxm: 'com.atproto.identity.updateHandle' })).rejects.toMatchObject({ status: 400 })
  })
})

describe('records and blobs', () => {
  let agent: AtpAgent
  beforeAll(async () => {
    agent = new AtpAgent({ service: net.url })
    await agent.createAccount({ handle: 'writer.test', email: 'writer@example.com', password: PASSWORD })
  })

  it('a "__proto__" key is refused with a clear error, never stored differently (item 10)', async () => {
    const body = `{"repo":"${agent.session!.did}","collection":"app.bsky.feed.post","rkey":"3kprototest2a","record":{"$type":"app.bsky.feed.post","text":"hi","createdAt":"2024-01-01T00:00:00.000Z","__proto__":{"text":"other"}}}`
    const res = await fetch(`${net.url}/xrpc/com.atproto.repo.putRecord`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${agent.session!.accessJwt}` },
      body,
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'InvalidRequest', message: expect.stringContaining('__proto__') })
    await expect(agent.com.atproto.repo.getRecord({ repo: agent.session!.did, collection: 'app.bsky.feed.post', rkey: '3kprototest2a' })).rejects.toMatchObject({ status: 400 })
  })

  it('a "__proto__" key in a CAR (importRepo) is refused with a 400 naming it, the repo left as it was (item 10, CBOR)', async () => {
    const did = agent.session!.did
    const before = (await agent.com.atproto.sync.getLatestCommit({ did })).data
    // a record block by hand: {"$type": "app.bsky.feed.post", "__proto__": {"text": "other"}, ...} in canonical
    // DAG-CBOR; a plain decoder makes "__proto__" the object's prototype (no own key), so the record would
    // differ from its bytes and CID
    const enc = (s: string) => Buffer.from(s, 'utf8')
    const text = (s: string) => Buffer.concat([Buffer.from(s.length < 24 ? [0x60 + s.length] : [0x78, s.length]), enc(s)])
    const record = new Uint8Array(
      Buffer.concat([
        Buffer.from([0xa4]),
        text('text'), text('hi'),
        text('$type'), text('app.bsky.feed.post'),
        text('__proto__'), Buffer.from([0xa1]), text('text'), text('other'),
        text('createdAt'), text('2024-01-01T00:00:00.000Z'),
      ]),
    )
    const recordCid = cidForBlock(record, DAG_CBOR_CODEC)
    // a repo with that record, its commit signed by the account's own key (one the import accepts)
    const storage = new MemoryBlockstore()
    const mst = await (await MST.create(storage)).add('app.bsky.feed.post/3kprotocar22a', recordCid as never)
    const { root, blocks } = await mst.getUnstoredBlocks()
    const key = await net.pds.ctx.repoWriter.signingKey(did)
    const unsigned = { did, version: 3, data: root, rev: nextTid(before.rev), prev: null }
    const commitBytes = cborEncode({ ...unsigned, sig: await key.sign(cborEncode(unsigned)) })
    const commitCid = cidForBlock(commitBytes, DAG_CBOR_CODEC)
    const carBlocks: [{ bytes: Uint8Array }, Uint8Array][] = [[commitCid, commitBytes], [recordCid, record]]
    blocks.forEach((bytes, cid) => carBlocks.push([cid, bytes]))
    const car = writeCar(commitCid, carBlocks)

    const res = await fetch(`${net.url}/xrpc/com.atproto.repo.importRepo`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.ipld.car', authorization: `Bearer ${agent.session!.accessJwt}` },
      body: car,
    })
    const raw = await res.text()
    const body = JSON.parse(raw) as { error: string; message: string }
    expect(res.status, JSON.stringify(body)).toBe(400)
    expect(body).toMatchObject({ error: 'InvalidRequest', message: expect.stringContaining('"__proto__"') })
    expect((await agent.com.atproto.sync.getLatestCommit({ did })).data).toEqual(before)
    await expect(agent.com.atproto.repo.getRecord({ repo: did, collection: 'app.bsky.feed.post', rkey: '3kprotocar22a' })).rejects.toMatchObject({ status: 400 })
  })

  it('unreferenced uploads are capped per account (item 7)', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 11; i++) {
      const res = await fetch(`${net.url}/xrpc/com.atproto.repo.uploadBlob`, {
        method: 'POST',
        headers: { 'content-type': 'image/png', authorization: `Bearer ${agent.session!.accessJwt}` },
        body: randomBytes(64 * 1024),
      })
      statuses.push(res.status)
      if (res.status !== 200) expect(await res.json()).toMatchObject({ error: 'RateLimitExceeded' })
    }
    expect(statuses.slice(0, 8).every((s) => s === 200)).toBe(true)
    expect(statuses.slice(8)).toEqual([429, 429, 429])
    // the official client is refused the same way
    const blob = await agent.uploadBlob(randomBytes(10), { encoding: 'image/png' }).catch((e) => e)
    expect(blob.status).toBe(429)
  })
})

describe('secrets at rest (item 11)', () => {
  it('data directories are 0700, database files 0600, signing keys encrypted with PDS_SIGNING_KEY_ENCRYPTION_KEY', async () => {
    const mode = (p: string) => fs.statSync(p).mode & 0o777
    expect(mode(net.cfg.db.directory)).toBe(0o700)
    expect(mode(net.cfg.db.accountDbPath)).toBe(0o600)
    expect(mode(net.cfg.db.sequencerDbPath)).toBe(0o600)
    expect(mode(net.cfg.blobstore.location)).toBe(0o700)
    const did = (await xrpc(net.url, 'com.atproto.identity.resolveHandle', { params: { handle: 'writer.test' } })).body.did as string
    const store = fs.readdirSync(net.cfg.db.actorStoreDirectory).map((d) => path.join(net.cfg.db.actorStoreDirectory, d))[0]!
    expect(mode(store)).toBe(0o700)
    const db = new Database(net.cfg.db.accountDbPath, { readonly: true })
    const row = db.prepare('SELECT privateKey FROM signing_key WHERE did = ?').get(did) as { privateKey: Buffer }
    db.close()
    expect(row.privateKey.subarray(0, 4).toString()).toBe('SKV1')
    const key = await net.pds.ctx.accounts.getSigningKey(did)
    expect(key).toBeTruthy()
    expect(Buffer.from(row.privateKey).includes(Buffer.from(key!.export()))).toBe(false)
  })
})

describe('admin Basic auth brute force (item 4)', () => {
  it('stops guessing after 10 failures per IP', async () => {
    const basic = (pw: string) => ({ authorization: `Basic ${Buffer.from(`admin:${pw}`).toString('base64')}` })
    const statuses = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        fetch(`${net.url}/xrpc/com.atproto.admin.getAccountInfo?did=did:plc:abc`, { headers: basic(`guess${i}`) }).then((r) => r.status),
      ),
    )
    expect(statuses.filter((s) => s === 401)).toHaveLength(10)
    expect(statuses.filter((s) => s === 429)).toHaveLength(50)
    const right = await fetch(`${net.url}/xrpc/com.atproto.admin.getAccountInfo?did=did:plc:abc`, { headers: basic('admin-pass') })
    expect(right.status).toBe(429)
  })
})

describe('per-IP limits cannot be dodged with X-Forwarded-For (item 2) and createAccount is limited per IP (item 7)', () => {
  it('refuses createAccount beyond 20 per 5 minutes from one address whatever X-Forwarded-For says', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 24; i++) {
      const res = await createAccount(`flood${i}.test`, { 'x-forwarded-for': `198.51.100.${i}` })
      statuses.push(res.status)
    }
    // the accounts made by the tests above came from the same address and count too
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(20)
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(10)
    expect(statuses.slice(-4)).toEqual([429, 429, 429, 429])
  })

  it('is on by default in production (no dev mode)', () => {
    const cfg = readConfigFromEnv({
      PDS_HOSTNAME: 'pds.example.com',
      PDS_DATA_DIRECTORY: '/var/pds',
      PDS_BLOBSTORE_DISK_LOCATION: '/var/pds/blobs',
      PDS_JWT_SECRET: randomBytes(32).toString('hex'),
      PDS_ADMIN_PASSWORD: randomBytes(16).toString('hex'),
      PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: randomBytes(32).toString('hex'),
    })
    expect(cfg.rateLimits.enabled).toBe(true)
    expect(cfg.network?.trustedProxies).toEqual([])
  })
})
