/** Pure parts: configuration, host names, rate limits, account status. */
import { describe, expect, it } from 'vitest'
import { accountStatus } from '../src/accounts/account-store.js'
import { KeyedQueue } from '../src/ingest/did-queue.js'
import {
  ConfigError,
  DEFAULT_HOST_LIMITS,
  DEFAULT_TRUSTED_HOST_LIMITS,
  HostRateLimiter,
  effectiveLimits,
  endpointHostname,
  matchesDomain,
  parseHostname,
  readConfig,
} from '../src/index.js'

describe('readConfig', () => {
  it('has the documented defaults', () => {
    const c = readConfig({})
    expect(c.port).toBe(2584)
    expect(c.host).toBe('127.0.0.1')
    expect(c.plcUrl).toBe('https://plc.directory')
    expect(c.replayWindowMs).toBe(72 * 3600_000)
    expect(c.crawlPublic).toBe(true)
    expect(c.devMode).toBe(false)
    expect(c.adminPassword).toBeUndefined()
    expect(c.defaultHostLimits).toEqual(DEFAULT_HOST_LIMITS)
    expect(c.trustedHostLimits).toEqual(DEFAULT_TRUSTED_HOST_LIMITS)
    expect(c.dataDirectory.endsWith('data/relay')).toBe(true)
  })

  it('reads every variable', () => {
    const c = readConfig({
      RELAY_PORT: '3000',
      RELAY_HOST: '0.0.0.0',
      RELAY_DATA_DIRECTORY: '/tmp/x',
      RELAY_PLC_URL: 'http://localhost:2582/',
      RELAY_ADMIN_PASSWORD: 'pw',
      RELAY_REPLAY_WINDOW_HOURS: '1.5',
      RELAY_REPLAY_MAX_BYTES: '1_000_000',
      RELAY_CRAWL_PUBLIC: 'false',
      RELAY_NEW_HOSTS_PER_DAY: '3',
      RELAY_BANNED_DOMAINS: 'Bad.Example, worse.example',
      RELAY_TRUSTED_DOMAINS: 'bsky.network',
      RELAY_HOST_LIMIT_PER_SECOND: '10',
      RELAY_HOST_LIMIT_PER_HOUR: 'none',
      RELAY_HOST_ACCOUNT_LIMIT: '7',
      RELAY_DEV_MODE: 'yes',
      RELAY_CRAWL_HOSTS: 'localhost:2583',
      LOG_LEVEL: 'debug',
    })
    expect(c).toMatchObject({
      port: 3000,
      host: '0.0.0.0',
      dataDirectory: '/tmp/x',
      plcUrl: 'http://localhost:2582',
      adminPassword: 'pw',
      replayWindowMs: 5_400_000,
      replayMaxBytes: 1_000_000,
      crawlPublic: false,
      newHostsPerDay: 3,
      bannedDomains: ['bad.example', 'worse.example'],
      trustedDomains: ['bsky.network'],
      devMode: true,
      initialHosts: ['localhost:2583'],
      logLevel: 'debug',
    })
    expect(c.defaultHostLimits).toEqual({ perSecond: 10, perHour: null, perDay: DEFAULT_HOST_LIMITS.perDay, accounts: 7 })
  })

  it('fails with a message naming every bad variable', () => {
    let err: unknown
    try {
      readConfig({ RELAY_PORT: 'eighty', RELAY_PLC_URL: 'ftp://x', RELAY_DEV_MODE: 'maybe', LOG_LEVEL: 'loud', RELAY_HOST_LIMIT_PER_DAY: '-1' })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    const msg = (err as Error).message
    for (const name of ['RELAY_PORT', 'RELAY_PLC_URL', 'RELAY_DEV_MODE', 'LOG_LEVEL', 'RELAY_HOST_LIMIT_PER_DAY']) expect(msg).toContain(name)
  })
})

describe('host names', () => {
  it('accepts public domain names and normalizes them', () => {
    expect(parseHostname('PDS.Example.com', false)).toEqual({ hostname: 'pds.example.com', ssl: true })
    expect(parseHostname('https://pds.example.com/', false)).toEqual({ hostname: 'pds.example.com', ssl: true })
    expect(parseHostname('wss://pds.example.com', false)).toEqual({ hostname: 'pds.example.com', ssl: true })
  })

  it('outside development mode refuses IPs, localhost, ports, http and paths', () => {
    for (const bad of ['127.0.0.1', 'localhost', 'pds.example.com:443', 'http://pds.example.com', 'pds.example.com/x', 'single', '-x.example.com', 'ftp://a.example.com', '', 'user@pds.example.com']) {
      expect(() => parseHostname(bad, false), bad).toThrow()
    }
  })

  it('in development mode allows loopback hosts and ports (http unless told https)', () => {
    expect(parseHostname('localhost:2583', true)).toEqual({ hostname: 'localhost:2583', ssl: false })
    expect(parseHostname('http://127.0.0.1:2583', true)).toEqual({ hostname: '127.0.0.1:2583', ssl: false })
    expect(parseHostname('https://localhost:2583', true)).toEqual({ hostname: 'localhost:2583', ssl: true })
    expect(parseHostname('pds.example.com', true)).toEqual({ hostname: 'pds.example.com', ssl: true })
  })

  it('matches endpoints and domains the way hosts are keyed', () => {
    expect(endpointHostname('https://pds.example.com')).toBe('pds.example.com')
    expect(endpointHostname('https://pds.example.com:443/')).toBe('pds.example.com')
    expect(endpointHostname('http://127.0.0.1:2583')).toBe('127.0.0.1:2583')
    expect(endpointHostname('not a url')).toBeUndefined()
    expect(matchesDomain('a.bad.example', ['bad.example'])).toBe(true)
    expect(matchesDomain('bad.example:2583', ['bad.example'])).toBe(true)
    expect(matchesDomain('notbad.example', ['bad.example'])).toBe(false)
  })
})

describe('HostRateLimiter', () => {
  const limits = { perSecond: 2, perHour: 5, perDay: 6, accounts: null }

  it('slows down past the per-second rate', () => {
    const l = new HostRateLimiter()
    const t = 1_000_000_000_000
    expect(l.take(1, limits, t)).toEqual({ ok: true })
    expect(l.take(1, limits, t)).toEqual({ ok: true })
    const r = l.take(1, limits, t)
    expect(r.ok).toBe(false)
    expect((r as { waitMs: number }).waitMs).toBe(500)
    expect(l.take(1, limits, t + 500)).toEqual({ ok: true })
    // another host has its own budget
    expect(l.take(2, limits, t)).toEqual({ ok: true })
  })

  it('throttles past the hourly and daily budget until the window is over', () => {
    const l = new HostRateLimiter()
    const hour = 3600_000
    const t = 400_000 * hour + 10
    for (let i = 0; i < 5; i++) expect(l.take(1, limits, t + i * 1000)).toEqual({ ok: true })
    expect(l.take(1, limits, t + 6000)).toEqual({ ok: false, throttleUntil: 400_001 * hour, window: 'hour' })
    expect(l.counts(1, t + 6000)).toEqual({ hour: 5, day: 5 })
    expect(l.take(1, limits, 400_001 * hour)).toEqual({ ok: true })
    const r = l.take(1, limits, 400_001 * hour + 1000)
    expect(r).toMatchObject({ ok: false, window: 'day' })
  })

  it('applies overrides over the trusted or default limits', () => {
    const d = { perSecond: 1, perHour: 2, perDay: 3, accounts: 4 }
    const tr = { perSecond: 10, perHour: null, perDay: null, accounts: null }
    expect(effectiveLimits(null, false, d, tr)).toEqual(d)
    expect(effectiveLimits(null, true, d, tr)).toEqual(tr)
    expect(effectiveLimits({ perHour: null, accounts: 9 }, false, d, tr)).toEqual({ perSecond: 1, perHour: null, perDay: 3, accounts: 9 })
  })
})

describe('account status and per-account order', () => {
  it('an operator takedown overrides the upstream status', () => {
    expect(accountStatus({ takedown: false, upstreamActive: true, upstreamStatus: null })).toEqual({ active: true })
    expect(accountStatus({ takedown: false, upstreamActive: false, upstreamStatus: 'deactivated' })).toEqual({ active: false, status: 'deactivated' })
    expect(accountStatus({ takedown: false, upstreamActive: false, upstreamStatus: null })).toEqual({ active: false })
    expect(accountStatus({ takedown: true, upstreamActive: false, upstreamStatus: 'deleted' })).toEqual({ active: false, status: 'takendown' })
  })

  it('KeyedQueue runs one key in order and different keys concurrently', async () => {
    const q = new KeyedQueue()
    const log: string[] = []
    const gate = (ms: number) => new Promise((r) => setTimeout(r, ms))
    const tasks = [
      q.run('a', async () => {
        await gate(30)
        log.push('a1')
      }),
      q.run('a', async () => {
        log.push('a2')
      }),
      q.run('b', async () => {
        log.push('b1')
      }),
      q.run('a', async () => {
        throw new Error('boom')
      }),
      q.run('a', async () => {
        log.push('a3')
      }),
    ]
    await Promise.all(tasks)
    expect(log).toEqual(['b1', 'a1', 'a2', 'a3'])
    expect(q.size).toBe(0)
  })

  it('KeyedQueue: a task that releases its key lets the next one start; idle() waits for both to finish', async () => {
    const q = new KeyedQueue()
    const log: string[] = []
    let finishFirst!: () => void
    const first = q.run('a', async (release) => {
      log.push('a1 verified')
      release()
      await new Promise<void>((r) => (finishFirst = r))
      log.push('a1 written')
    })
    const second = q.run('a', async () => {
      log.push('a2 verified')
    })
    await second
    expect(log).toEqual(['a1 verified', 'a2 verified'])
    expect(q.size).toBe(1)
    let idle = false
    const waiting = q.idle().then(() => (idle = true))
    await new Promise((r) => setTimeout(r, 10))
    expect(idle).toBe(false)
    finishFirst()
    await first
    await waiting
    expect(log).toEqual(['a1 verified', 'a2 verified', 'a1 written'])
    expect(q.size).toBe(0)
  })
})

describe('AccountStore row cache', () => {
  it('serves rows read before, drops them on every write but a repo state (kept as written), and forgets rows cached in a rolled-back transaction', async () => {
    const { openRelayDb } = await import('../src/db.js')
    const { AccountStore } = await import('../src/accounts/account-store.js')
    const db = openRelayDb(':memory:')
    const store = new AccountStore(db)
    const did = 'did:plc:cachetest0000000000000000'
    store.create(did, null)
    const a = store.get(did)!
    expect(store.get(did)).toBe(a) // cached
    expect(Object.isFrozen(a)).toBe(true)
    store.setRepoState(did, { rev: '3kaaaaaaaaaa2', commitCid: 'c1', dataCid: 'd1', syncStatus: 'synchronized' })
    const written = store.get(did)!
    expect(written).not.toBe(a)
    expect(Object.isFrozen(written)).toBe(true)
    expect(written).toEqual(new AccountStore(db).get(did)) // the cached row is the stored one
    expect(written).toMatchObject({ rev: '3kaaaaaaaaaa2', commitCid: 'c1', dataCid: 'd1' })
    // a write inside a transaction that rolls back: the row read after it is not kept
    const tx = db.transaction(() => {
      store.setRepoState(did, { rev: '3kaaaaaaaaab2', commitCid: 'c2', dataCid: 'd2', syncStatus: 'synchronized' })
      expect(store.get(did)!.rev).toBe('3kaaaaaaaaab2')
      throw new Error('rolled back')
    })
    expect(() => tx()).toThrow('rolled back')
    store.forgetCached()
    expect(store.get(did)!.rev).toBe('3kaaaaaaaaaa2')
    for (const write of [
      () => store.setHost(did, null),
      () => store.setUpstreamStatus(did, false, 'deactivated'),
      () => store.setTakedown(did, true),
      () => store.setSyncStatus(did, 'desynchronized'),
    ]) {
      const before = store.get(did)
      write()
      expect(store.get(did)).not.toBe(before)
    }
    expect(store.get(did)).toMatchObject({ upstreamActive: false, upstreamStatus: 'deactivated', takedown: true, syncStatus: 'desynchronized' })
    db.close()
  })
})
