import fs from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { SqliteIdentityCache } from '@stratos/core/identity'
import { startNetwork, type TestNetwork } from './_network.js'

describe('PDS_DID_CACHE_DB_LOCATION and PDS_MAX_SUBSCRIPTION_BUFFER reach the services they configure', () => {
  let net: TestNetwork
  let plcClosed = false
  let cachePath: string

  beforeAll(async () => {
    net = await startNetwork({ PDS_MAX_SUBSCRIPTION_BUFFER: '7' })
    cachePath = net.cfg.db.didCacheDbPath
  })
  afterAll(async () => {
    await net?.pds.close()
    if (!plcClosed) await net?.plc.close()
    if (net) fs.rmSync(net.dir, { recursive: true, force: true })
  })

  it('gives subscribeRepos consumers the configured queue limit', () => {
    expect(net.cfg.subscription.maxBuffer).toBe(7)
    expect(net.pds.subscriptions.opts.maxQueuedFrames).toBe(7)
  })

  it('keeps resolved DID documents in the cache file, and resolves them after a restart without the PLC', async () => {
    expect(cachePath.startsWith(net.dir)).toBe(true)
    const agent = new AtpAgent({ service: net.url })
    await agent.createAccount({ handle: 'cached.test', email: 'cached@example.com', password: 'cached-pw' })
    const did = agent.session!.did
    const doc = await net.pds.ctx.idResolver.resolveDid(did)
    expect(doc?.id).toBe(did)

    const pds = await net.restartPds()
    // the previous PDS closed its cache; the file on disk holds the document
    const reader = await SqliteIdentityCache.open(cachePath)
    try {
      expect((await reader.get(did))?.doc).toEqual(doc)
    } finally {
      await reader.close()
    }

    // with the PLC directory gone, the restarted PDS still resolves the DID (from the cache)
    await net.plc.close()
    plcClosed = true
    expect(await pds.ctx.idResolver.resolveDid(did)).toEqual(doc)
  })
})
