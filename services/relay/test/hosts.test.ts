/**
 * Hosts: requestCrawl intake, host status, admin API (ban, limits, accounts), rate limits and throttling,
 * account moves between hosts, and the sync query endpoints.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createServer } from 'node:net'
import { SubscriptionClient } from '@stratos/core/stream'
import {
  ADMIN_PASSWORD,
  FakePds,
  FakePlc,
  adminHeaders,
  droppedCounts,
  now,
  relayConfig,
  sleep,
  startRelay,
  tmpDir,
  waitFor,
  xrpcGet,
  xrpcPost,
} from './helpers.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function base(env: Record<string, string> = {}) {
  const dir = tmpDir()
  const plc = await new FakePlc().start()
  cleanups.push(() => dir.remove(), () => plc.close())
  const relay = await startRelay(relayConfig(dir.path, plc.url, env))
  cleanups.push(() => relay.close())
  const newPds = async () => {
    const pds = await new FakePds(plc).start()
    cleanups.push(() => pds.close())
    return pds
  }
  return { dir, plc, relay, newPds }
}

/** a port with nothing listening on it */
async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

/** every event the relay emits, through the core SubscriptionClient */
function tail(relayUrl: string) {
  const seen: { seq: number; t: string; body: Record<string, unknown> }[] = []
  const client = new SubscriptionClient({
    url: `${relayUrl}/xrpc/com.atproto.sync.subscribeRepos`,
    getCursor: () => seen.at(-1)?.seq ?? 0,
    onEvent: (evt) => {
      seen.push({ seq: evt.seq!, t: evt.t, body: evt.body })
    },
    minBackoffMs: 50,
    maxBackoffMs: 200,
  }).start()
  cleanups.push(() => client.stop())
  return seen
}

describe('requestCrawl', () => {
  it('subscribes to a live host and reports it in listHosts and getHostStatus', async () => {
    const { relay, newPds } = await base()
    const pds = await newPds()
    const alice = await pds.createAccount()
    await pds.announce(alice)
    const res = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.url })
    expect(res.status).toBe(200)
    await waitFor(async () => (await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })).body.seq === 3)
    const status = await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })
    expect(status.body).toEqual({ hostname: pds.hostname, seq: 3, accountCount: 1, status: 'active' })
    const list = await xrpcGet(relay.url, 'com.atproto.sync.listHosts')
    expect(list.body).toEqual({ hosts: [{ hostname: pds.hostname, seq: 3, accountCount: 1, status: 'active' }] })
    // asking again is harmless
    expect((await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.hostname })).status).toBe(200)
    expect(pds.connects).toBe(1)

    const unknown = await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: 'nowhere.example.com' })
    expect(unknown.status).toBe(400)
    expect(unknown.body.error).toBe('HostNotFound')
  })

  it('refuses bad hostnames, unreachable hosts, banned domains and new hosts past the daily cap', async () => {
    const { relay, newPds } = await base({ RELAY_NEW_HOSTS_PER_DAY: '1', RELAY_BANNED_DOMAINS: 'localhost' })
    const missing = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', {})
    expect(missing.status).toBe(400)
    const bad = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: 'not a host!' })
    expect(bad).toMatchObject({ status: 400, body: { error: 'InvalidRequest' } })
    const path = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: 'https://pds.example.com/some/path' })
    expect(path.status).toBe(400)

    const port = await freePort()
    const dead = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: `127.0.0.1:${port}` })
    expect(dead.status).toBe(502)
    expect(dead.body.error).toBe('UpstreamFailure')

    const pds1 = await newPds()
    const banned = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: `localhost:${pds1.port}` })
    expect(banned).toMatchObject({ status: 400, body: { error: 'HostBanned' } })

    expect((await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds1.hostname })).status).toBe(200)
    const pds2 = await newPds()
    const capped = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds2.hostname })
    expect(capped.status).toBe(429)
    expect(capped.body.error).toBe('RateLimitExceeded')
    // the operator is not capped
    const asAdmin = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds2.hostname }, adminHeaders())
    expect(asAdmin.status).toBe(200)
    const wrongAdmin = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds2.hostname }, adminHeaders('nope'))
    expect(wrongAdmin.status).toBe(401)
    await waitFor(() => pds2.connects === 1)
  })

  it('outside development mode only public https domain names are accepted', async () => {
    const { relay } = await base({ RELAY_DEV_MODE: 'false' })
    for (const hostname of ['127.0.0.1', 'localhost', 'http://pds.example.com', 'pds.example.com:8080', '10.0.0.1']) {
      const res = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname })
      expect(res.status, hostname).toBe(400)
    }
  })

  it('can be closed to the public (RELAY_CRAWL_PUBLIC=false)', async () => {
    const { relay, newPds } = await base({ RELAY_CRAWL_PUBLIC: 'false' })
    const pds = await newPds()
    const res = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.hostname })
    expect(res.status).toBe(403)
    expect((await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.hostname }, adminHeaders())).status).toBe(200)
  })
})

describe('host status and admin', () => {
  it('admin API needs the password; without one it is off', async () => {
    const { relay } = await base()
    expect((await xrpcGet(relay.url, 'com.stratos.relay.admin.listHosts')).status).toBe(401)
    expect((await xrpcGet(relay.url, 'com.stratos.relay.admin.listHosts', {}, adminHeaders('wrong'))).status).toBe(401)
    expect((await xrpcGet(relay.url, 'com.stratos.relay.admin.listHosts', {}, adminHeaders())).status).toBe(200)

    const off = await base({ RELAY_ADMIN_PASSWORD: '' })
    const res = await xrpcGet(off.relay.url, 'com.stratos.relay.admin.listHosts', {}, adminHeaders(ADMIN_PASSWORD))
    expect(res.status).toBe(501)
  })

  it('ban disconnects a host and refuses it; unban follows it again with no loss', async () => {
    const { relay, newPds } = await base()
    const seen = tail(relay.url)
    const pds = await newPds()
    const alice = await pds.createAccount()
    await pds.announce(alice)
    const added = await xrpcPost(relay.url, 'com.stratos.relay.admin.addHost', { hostname: pds.hostname }, adminHeaders())
    expect(added.status).toBe(200)
    expect(added.body).toMatchObject({ hostname: pds.hostname, status: 'active', addedBy: 'admin', trusted: false })
    await waitFor(() => seen.length === 3)

    const ban = await xrpcPost(relay.url, 'com.stratos.relay.admin.banHost', { hostname: pds.hostname }, adminHeaders())
    expect(ban.body.status).toBe('banned')
    await waitFor(() => pds.sockets.size === 0, 15_000, 'disconnect')
    await alice.emitPost('while-banned')
    const crawl = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.hostname })
    expect(crawl.body.error).toBe('HostBanned')
    expect((await xrpcGet(relay.url, 'com.atproto.sync.listHosts')).body.hosts).toEqual([])
    const adminList = await xrpcGet(relay.url, 'com.stratos.relay.admin.listHosts', {}, adminHeaders())
    expect(adminList.body.hosts).toMatchObject([{ hostname: pds.hostname, status: 'banned' }])
    expect(seen.length).toBe(3)

    const unban = await xrpcPost(relay.url, 'com.stratos.relay.admin.unbanHost', { hostname: pds.hostname }, adminHeaders())
    expect(unban.body.status).toBe('active')
    await waitFor(() => seen.length === 4, 15_000, 'resumed')
    expect(seen[3]).toMatchObject({ t: '#commit', body: { repo: alice.did } })

    const consumers = await xrpcGet(relay.url, 'com.stratos.relay.admin.listConsumers', {}, adminHeaders())
    expect(consumers.body.consumers).toHaveLength(1)
    expect(consumers.body.consumers[0]).toMatchObject({ phase: 'live', lastSeq: 4, remoteAddress: '127.0.0.1' })
  })

  it('a host that goes away is offline, reconnected with backoff, and resumed from its cursor', async () => {
    const { relay, newPds } = await base()
    const seen = tail(relay.url)
    const pds = await newPds()
    const alice = await pds.createAccount()
    await pds.announce(alice)
    await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.hostname })
    await waitFor(() => seen.length === 3)
    const port = pds.port
    await pds.close()
    await waitFor(async () => (await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })).body.status === 'offline')
    await alice.emitPost('while-offline')
    await pds.start(port)
    await waitFor(() => seen.length === 4, 10_000, 'after reconnect')
    expect((await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })).body.status).toBe('active')
    expect(seen.map((e) => e.seq)).toEqual([1, 2, 3, 4])
    expect((await droppedCounts(relay.url))['rev-not-newer']).toBeUndefined()
  })

  it('a host unreachable too many times in a row goes idle; requestCrawl revives it', async () => {
    const { relay, newPds } = await base({ RELAY_HOST_MAX_FAILURES: '3' })
    const port = await freePort()
    const added = await xrpcPost(relay.url, 'com.stratos.relay.admin.addHost', { hostname: `127.0.0.1:${port}` }, adminHeaders())
    expect(added.status).toBe(200)
    await waitFor(
      async () => (await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: `127.0.0.1:${port}` })).body.status === 'idle',
      10_000,
      'idle',
    )
    const pds = await newPds()
    await pds.close()
    await pds.start(port)
    const crawl = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: `127.0.0.1:${port}` })
    expect(crawl.status).toBe(200)
    await waitFor(() => pds.sockets.size === 1, 15_000, 'revived')
    expect((await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })).body.status).toBe('active')
  })
})

describe('limits', () => {
  it('a host over its hourly limit is throttled; raising the limit resumes it with no loss', async () => {
    const { relay, newPds } = await base()
    const seen = tail(relay.url)
    const pds = await newPds()
    const alice = await pds.createAccount()
    await xrpcPost(relay.url, 'com.stratos.relay.admin.addHost', { hostname: pds.hostname }, adminHeaders())
    const limited = await xrpcPost(
      relay.url,
      'com.stratos.relay.admin.updateHostLimits',
      { hostname: pds.hostname, perHour: 5 },
      adminHeaders(),
    )
    expect(limited.body.limits).toMatchObject({ perHour: 5 })
    await pds.announce(alice)
    for (let i = 0; i < 4; i++) await alice.emitPost(`p${i}`)
    await waitFor(async () => (await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })).body.status === 'throttled')
    await waitFor(() => pds.sockets.size === 0, 15_000, 'disconnect')
    await waitFor(() => seen.length === 5, 15_000, 'the first five')
    await sleep(300)
    expect(seen.length).toBe(5)
    const view = await xrpcGet(relay.url, 'com.stratos.relay.admin.listHosts', {}, adminHeaders())
    expect(view.body.hosts[0]).toMatchObject({ status: 'throttled', usage: { hour: 5 } })

    const raised = await xrpcPost(
      relay.url,
      'com.stratos.relay.admin.updateHostLimits',
      { hostname: pds.hostname, perHour: null },
      adminHeaders(),
    )
    expect(raised.body.limits.perHour).toBeNull()
    await waitFor(() => seen.length === 7, 10_000, 'the rest')
    expect(seen.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect((await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })).body.status).toBe('active')
  })

  it('accounts beyond the host’s account limit are dropped', async () => {
    const { relay, newPds } = await base({ RELAY_HOST_ACCOUNT_LIMIT: '1' })
    const seen = tail(relay.url)
    const pds = await newPds()
    const a = await pds.createAccount()
    const b = await pds.createAccount()
    await pds.announce(a)
    await pds.announce(b)
    await a.emitPost('a-post')
    await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.hostname })
    await waitFor(async () => (await droppedCounts(relay.url))['host-account-limit'] === 3, 10_000, 'three drops')
    await waitFor(() => seen.length === 4)
    expect(seen.every((e) => (e.body.did ?? e.body.repo) === a.did)).toBe(true)
    expect((await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })).body.accountCount).toBe(1)

    // trusted hosts have no account limit by default
    await xrpcPost(relay.url, 'com.stratos.relay.admin.updateHostLimits', { hostname: pds.hostname, trusted: true }, adminHeaders())
    await b.emitPost('b-post')
    await waitFor(() => seen.some((e) => e.body.repo === b.did), 15_000, 'b accepted')
  })
})

describe('accounts and sync endpoints', () => {
  it('follows an account that moves to another host; the old host can no longer speak for it', async () => {
    const { relay, plc, newPds } = await base()
    const seen = tail(relay.url)
    const pds1 = await newPds()
    const pds2 = await newPds()
    const alice = await pds1.createAccount()
    await pds1.announce(alice)
    await alice.emitPost('on-pds1')
    await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds1.hostname })
    await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds2.hostname })
    await waitFor(() => seen.length === 4)

    const redirect1 = await xrpcGet(relay.url, 'com.atproto.sync.getRepo', { did: alice.did })
    expect(redirect1.status).toBe(302)
    expect(redirect1.headers.get('location')).toBe(`${pds1.url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(alice.did)}`)

    // migration: the DID document now names pds2, which announces the account
    plc.set(alice.did, { signingKey: alice.keypair.did(), pds: pds2.url })
    const { evt } = await alice.commit([])
    pds2.emit('#identity', { did: alice.did, time: now() })
    pds2.emit('#account', { did: alice.did, active: true, time: now() })
    pds2.emit('#commit', evt as never)
    await waitFor(() => seen.length === 7, 15_000, 'events from pds2')
    expect(seen.slice(4).map((e) => e.t)).toEqual(['#identity', '#account', '#commit'])

    await alice.emitPost('stale-pds1') // emitted by pds1
    await waitFor(async () => (await droppedCounts(relay.url))['wrong-host'] === 1, 15_000, 'wrong-host')
    const redirect2 = await xrpcGet(relay.url, 'com.atproto.sync.getRepo', { did: alice.did, since: evt.rev })
    expect(redirect2.headers.get('location')).toBe(
      `${pds2.url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(alice.did)}&since=${evt.rev}`,
    )
    expect((await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds1.hostname })).body.accountCount).toBe(0)
    expect((await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds2.hostname })).body.accountCount).toBe(1)
    const account = await xrpcGet(relay.url, 'com.stratos.relay.admin.getAccount', { did: alice.did }, adminHeaders())
    expect(account.body).toMatchObject({ did: alice.did, host: pds2.hostname, active: true, rev: evt.rev, head: evt.commit.toString() })
  })

  it('listRepos pages through accounts with their head, rev and status', async () => {
    const { relay, newPds } = await base()
    const pds = await newPds()
    const accounts = [await pds.createAccount(), await pds.createAccount(), await pds.createAccount()]
    for (const a of accounts) await pds.announce(a)
    pds.emit('#account', { did: accounts[1]!.did, active: false, status: 'suspended', time: now() })
    await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.hostname })
    await waitFor(async () => (await xrpcGet(relay.url, 'com.atproto.sync.getHostStatus', { hostname: pds.hostname })).body.seq === 10)

    const page1 = await xrpcGet(relay.url, 'com.atproto.sync.listRepos', { limit: '2' })
    expect(page1.body.repos).toHaveLength(2)
    const page2 = await xrpcGet(relay.url, 'com.atproto.sync.listRepos', { limit: '2', cursor: page1.body.cursor })
    const repos = [...page1.body.repos, ...page2.body.repos]
    expect(repos.map((r: { did: string }) => r.did)).toEqual(accounts.map((a) => a.did).sort())
    for (const r of repos) {
      const a = accounts.find((x) => x.did === r.did)!
      expect(r.head).toBe(a.initEvent.commit.toString())
      expect(r.rev).toBe(a.initEvent.rev)
      if (a === accounts[1]) expect(r).toMatchObject({ active: false, status: 'suspended' })
      else expect(r.active).toBe(true)
    }
    const missing = await xrpcGet(relay.url, 'com.atproto.sync.getRepoStatus', { did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' })
    expect(missing.body.error).toBe('RepoNotFound')
    const suspended = await xrpcGet(relay.url, 'com.atproto.sync.getRepo', { did: accounts[1]!.did })
    expect(suspended).toMatchObject({ status: 400, body: { error: 'RepoSuspended' } })
  })
})
