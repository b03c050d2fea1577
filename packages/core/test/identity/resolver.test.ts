import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeypair, type SigningKeypair } from '@stratos/core/crypto'
import {
  didFromTxtRecords,
  DidResolutionError,
  didWebUrl,
  IdentityResolver,
  SqliteIdentityCache,
  type IdentityResolverOptions,
} from '@stratos/core/identity'
import { didDoc, FakeServer, plcDid } from './fake-servers.js'

const HOUR = 60 * 60 * 1000

async function resolutionError(p: Promise<unknown>): Promise<DidResolutionError> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(DidResolutionError)
    return err as DidResolutionError
  }
  throw new Error('expected resolution to fail')
}

describe('IdentityResolver', () => {
  const plc = new FakeServer()
  const web = new FakeServer()
  let keyA: SigningKeypair
  let keyB: SigningKeypair
  const alice = plcDid(1)
  const bob = plcDid(2)
  const wrongId = plcDid(3)
  const missing = plcDid(4)
  let aliceKey: () => string
  let webDid: string
  let clock = 1_700_000_000_000
  const now = () => clock
  let tmp: string

  const resolver = (opts: Partial<IdentityResolverOptions> = {}) =>
    new IdentityResolver({ plcUrl: plc.url, now, staleTtlMs: HOUR, maxTtlMs: 24 * HOUR, ...opts })

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'stratos-identity-'))
    keyA = await generateKeypair('k256')
    keyB = await generateKeypair('p256')
    aliceKey = () => keyA.did()
    await plc.start()
    await web.start()
    webDid = `did:web:localhost%3A${web.port}`
    plc.json(`/${alice}`, () => didDoc(alice, { handle: 'alice.test', key: aliceKey(), pds: 'https://pds.example.com' }))
    plc.json(`/${bob}`, () => didDoc(bob, { handle: 'alice.test', key: keyB.did(), pds: 'https://pds.example.com' }))
    plc.json(`/${wrongId}`, () => didDoc(alice, { handle: 'alice.test' }))
    web.json('/.well-known/did.json', () =>
      didDoc(webDid, {
        handle: 'web.test',
        key: keyB.did(),
        extra: {
          service: [
            { id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'http://127.0.0.1:2583' },
            { id: '#bsky_appview', type: 'BskyAppView', serviceEndpoint: 'http://127.0.0.1:2585' },
          ],
        },
      }),
    )
    // handle well-known endpoint keyed by the Host header, like a PDS serving several handles
    web.routes.set('/.well-known/atproto-did', (req, res) => {
      const host = (req.headers.host ?? '').split(':')[0]
      const map: Record<string, string> = { 'alice.test': alice, 'web.test': webDid }
      const did = map[host ?? '']
      res.statusCode = did ? 200 : 404
      res.end(did ? `${did}\n` : 'no such handle')
    })
  })
  afterAll(async () => {
    await plc.stop()
    await web.stop()
    rmSync(tmp, { recursive: true, force: true })
  })

  it('resolves did:plc from the directory and did:web from the host', async () => {
    const r = resolver({ allowPrivateAddresses: true })
    const doc = await r.resolveDid(alice)
    expect(doc?.id).toBe(alice)
    expect(await r.resolveAtprotoData(alice)).toEqual({
      did: alice,
      handle: 'alice.test',
      signingKey: keyA.did(),
      pdsEndpoint: 'https://pds.example.com',
    })
    const webData = await r.resolveAtprotoData(webDid)
    expect(webData).toEqual({ did: webDid, handle: 'web.test', signingKey: keyB.did(), pdsEndpoint: 'http://127.0.0.1:2583' })
    const { getServiceEndpoint } = await import('@stratos/core/identity')
    expect(getServiceEndpoint((await r.resolveDid(webDid))!, '#bsky_appview')).toBe('http://127.0.0.1:2585')
    expect(await r.getSigningKey(alice)).toBe(keyA.did())
  })

  it('with plcKeepAlive, fetches documents from the directory over one connection', async () => {
    let connections = 0
    const count = () => connections++
    plc.server.on('connection', count)
    try {
      const r = resolver({ plcKeepAlive: true })
      expect((await r.resolveDid(alice))?.id).toBe(alice)
      expect((await r.resolveDid(bob))?.id).toBe(bob)
      expect(await r.resolveDid(missing)).toBeNull()
      expect(connections).toBe(1)
      const plain = resolver()
      await plain.resolveDid(alice)
      await plain.resolveDid(bob)
      expect(connections).toBe(3)
    } finally {
      plc.server.off('connection', count)
    }
  })

  it('returns null for unknown DIDs and rejects bad ones', async () => {
    const r = resolver({ allowPrivateAddresses: true })
    expect(await r.resolveDid(missing)).toBeNull()
    expect((await resolutionError(r.resolveAtprotoData(missing))).code).toBe('not-found')
    expect((await resolutionError(r.resolveDid(wrongId))).code).toBe('bad-document')
    expect((await resolutionError(r.resolveDid('did:plc:UPPER'))).code).toBe('bad-syntax')
    expect((await resolutionError(r.resolveDid('did:example:123'))).code).toBe('unsupported-method')
    expect((await resolutionError(r.resolveDid('did:web:example.com:path:user'))).code).toBe('unsupported-method')
    expect((await resolutionError(r.getSigningKey(plcDid(3)))).code).toBe('bad-document')
  })

  it('refuses did:web on localhost outside development', async () => {
    const r = resolver()
    expect((await resolutionError(r.resolveDid(webDid))).code).toBe('bad-syntax')
    expect(didWebUrl('did:web:example.com').toString()).toBe('https://example.com/.well-known/did.json')
    expect(didWebUrl(`did:web:localhost%3A1234`, true).toString()).toBe('http://localhost:1234/.well-known/did.json')
    expect(() => didWebUrl('did:web:example.com%3A8443')).toThrow(/port/)
  })

  it('refuses did:web hosts on private addresses outside development', async () => {
    const r = resolver({ lookup: async () => [{ address: '127.0.0.1', family: 4 }] })
    const err = await resolutionError(r.resolveDid('did:web:internal.example.com'))
    expect(err.code).toBe('fetch-failed')
    expect(err.message).toContain('forbidden-address')
  })

  it('serves from cache, and coalesces concurrent resolutions', async () => {
    const did = plcDid(10)
    plc.json(`/${did}`, () => didDoc(did, { key: keyA.did() }))
    const r = resolver()
    const results = await Promise.all([r.resolveDid(did), r.resolveDid(did), r.resolveDid(did), r.getSigningKey(did)])
    expect(results[3]).toBe(keyA.did())
    expect(plc.count(`/${did}`)).toBe(1)
    await r.resolveDid(did)
    await r.resolveAtprotoData(did)
    expect(plc.count(`/${did}`)).toBe(1)
    await r.invalidate(did)
    await r.resolveDid(did)
    expect(plc.count(`/${did}`)).toBe(2)
  })

  it('stale entries are served and refreshed in the background; expired ones refetched first', async () => {
    const did = plcDid(11)
    let key = keyA.did()
    plc.json(`/${did}`, () => didDoc(did, { key }))
    const r = resolver()
    clock = 1_700_000_000_000
    expect(await r.getSigningKey(did)).toBe(keyA.did())
    expect(plc.count(`/${did}`)).toBe(1)

    key = keyB.did()
    clock += HOUR / 2 // fresh
    expect(await r.getSigningKey(did)).toBe(keyA.did())
    expect(plc.count(`/${did}`)).toBe(1)

    clock += HOUR // stale: old answer now, refresh behind it
    expect(await r.getSigningKey(did)).toBe(keyA.did())
    await r.settled()
    expect(plc.count(`/${did}`)).toBe(2)
    expect(await r.getSigningKey(did)).toBe(keyB.did())
    expect(plc.count(`/${did}`)).toBe(2)

    key = keyA.did()
    clock += 25 * HOUR // past max: fetched before answering
    expect(await r.getSigningKey(did)).toBe(keyA.did())
    expect(plc.count(`/${did}`)).toBe(3)
  })

  it('forceRefresh fetches now; minForceRefreshIntervalMs bounds it', async () => {
    const did = plcDid(12)
    let key = keyA.did()
    plc.json(`/${did}`, () => didDoc(did, { key }))
    const r = resolver()
    expect(await r.getSigningKey(did)).toBe(keyA.did())
    key = keyB.did()
    expect(await r.getSigningKey(did)).toBe(keyA.did())
    expect(await r.getSigningKey(did, true)).toBe(keyB.did())
    expect(plc.count(`/${did}`)).toBe(2)

    const bounded = resolver({ minForceRefreshIntervalMs: 5000 })
    await bounded.resolveDid(did)
    await bounded.resolveDid(did, { forceRefresh: true })
    expect(plc.count(`/${did}`)).toBe(3)
    clock += 6000
    await bounded.resolveDid(did, { forceRefresh: true })
    expect(plc.count(`/${did}`)).toBe(4)
  })

  it('a DID that disappears is dropped from the cache', async () => {
    const did = plcDid(13)
    plc.json(`/${did}`, () => didDoc(did, { key: keyA.did() }))
    const r = resolver()
    expect(await r.resolveDid(did)).not.toBeNull()
    plc.json(`/${did}`, () => ({ message: 'DID not registered' }), 404)
    expect(await r.resolveDid(did, { forceRefresh: true })).toBeNull()
    expect(await r.cache.get(did)).toBeNull()
  })

  it('keeps documents in SQLite across restarts, with the same TTL rules', async () => {
    const did = plcDid(14)
    plc.json(`/${did}`, () => didDoc(did, { key: keyA.did(), handle: 'sql.test' }))
    const path = join(tmp, 'identity.sqlite')
    const cache1 = await SqliteIdentityCache.open(path)
    const r1 = resolver({ cache: cache1 })
    expect((await r1.resolveAtprotoData(did)).handle).toBe('sql.test')
    await cache1.close()

    const cache2 = await SqliteIdentityCache.open(path)
    expect(await cache2.count()).toBe(1)
    const r2 = resolver({ cache: cache2 })
    expect((await r2.resolveAtprotoData(did)).handle).toBe('sql.test')
    expect(plc.count(`/${did}`)).toBe(1)
    clock += 2 * HOUR
    await r2.resolveDid(did)
    await r2.settled()
    expect(plc.count(`/${did}`)).toBe(2)
    const row = await cache2.get(did)
    expect(row?.updatedAt).toBe(clock)
    expect(await cache2.prune(clock + 1)).toBe(1)
    expect(await cache2.get(did)).toBeNull()
    await cache2.close()
  })

  it('resolves handles over HTTP (loopback in development) and checks them both ways', async () => {
    const r = resolver({ allowPrivateAddresses: true, handleResolverHttpBase: web.url, resolveTxt: async () => [] })
    expect(await r.resolveHandle('alice.test')).toBe(alice)
    expect(await r.resolveHandle('ALICE.test')).toBe(alice)
    expect(await r.resolveHandle('nobody.test')).toBeUndefined()
    expect(await r.resolveHandle('not a handle')).toBeUndefined()
    expect(await r.verifyHandle(alice)).toBe('alice.test')
    expect(await r.verifyHandle(webDid)).toBe('web.test')
    // bob claims alice.test, but alice.test points to alice
    expect(await r.verifyHandle(bob)).toBe('handle.invalid')
    expect(await r.verifyHandle(missing)).toBe('handle.invalid')
  })

  it('handle well-knowns on private addresses only in development (template base)', async () => {
    const lookups: string[] = []
    const opts = {
      resolveTxt: async () => [],
      handleResolverHttpBase: `http://{handle}:${web.port}`,
      lookup: async (host: string) => {
        lookups.push(host)
        return [{ address: '127.0.0.1', family: 4 }]
      },
    }
    const before = web.count('/.well-known/atproto-did')
    expect(await resolver(opts).resolveHandle('alice.test')).toBeUndefined()
    expect(lookups).toEqual(['alice.test'])
    expect(web.count('/.well-known/atproto-did')).toBe(before) // refused before connecting
    expect(await resolver({ ...opts, allowPrivateAddresses: true }).resolveHandle('alice.test')).toBe(alice)
    expect(web.count('/.well-known/atproto-did')).toBe(before + 1)
  })

  it('resolves handles via DNS TXT, preferring DNS over HTTP', async () => {
    const queried: string[] = []
    const txt: Record<string, string[][]> = {
      '_atproto.dns.example.com': [['v=spf1 -all'], ['did=', bob]],
      '_atproto.alice.test': [[`did=${bob}`]],
      '_atproto.two.example.com': [[`did=${alice}`], [`did=${bob}`]],
      '_atproto.dup.example.com': [[`did=${alice}`], [`did=${alice}`]],
      '_atproto.junk.example.com': [['did=not-a-did']],
    }
    const r = resolver({
      allowPrivateAddresses: true,
      handleResolverHttpBase: web.url,
      resolveTxt: async (name) => {
        queried.push(name)
        const rec = txt[name]
        if (!rec) throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' })
        return rec
      },
    })
    expect(await r.resolveHandle('dns.example.com')).toBe(bob)
    expect(queried).toContain('_atproto.dns.example.com')
    expect(await r.resolveHandle('alice.test')).toBe(bob) // DNS wins over the well-known answer
    expect(await r.resolveHandle('two.example.com')).toBeUndefined()
    expect(await r.resolveHandle('dup.example.com')).toBe(alice)
    expect(await r.resolveHandle('junk.example.com')).toBeUndefined()
    expect(await r.resolveHandle('web.test')).toBe(webDid) // no TXT → HTTP
    expect(didFromTxtRecords([['did=did:plc:', 'aaaaaaaaaaaaaaaaaaaaaaaa']])).toBe('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
  })

  it('gives the labeler key for a #atproto_labeler issuer', async () => {
    const did = plcDid(15)
    const labelKey = await generateKeypair('k256')
    plc.json(`/${did}`, () => ({
      id: did,
      verificationMethod: [
        { id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: keyA.did().slice(8) },
        { id: `${did}#atproto_label`, type: 'Multikey', controller: did, publicKeyMultibase: labelKey.did().slice(8) },
      ],
    }))
    const r = resolver()
    expect(await r.getSigningKey(did)).toBe(keyA.did())
    expect(await r.getSigningKey(`${did}#atproto_labeler`)).toBe(labelKey.did())
    expect((await resolutionError(r.getSigningKey(plcDid(16)))).code).toBe('not-found')
    plc.json(`/${plcDid(17)}`, () => ({ id: plcDid(17) }))
    expect((await resolutionError(r.getSigningKey(plcDid(17)))).code).toBe('no-signing-key')
  })
})
