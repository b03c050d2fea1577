/**
 * The collection index's backfill of a host's repos keeps its queue bounded: the enumeration
 * (com.atproto.sync.listRepos, page by page) waits while `maxQueued` backfills are waiting, so memory does
 * not grow with the number of repos a host lists, and every listed repo is still backfilled once.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CollectionIndex } from '../src/collections/collection-index.js'
import { openRelayDb, type Db } from '../src/db.js'
import type { Identities } from '../src/ingest/identities.js'
import type { Logger } from '../src/logger.js'
import { sleep, tmpDir, waitFor } from './helpers.js'

const PAGES = 5
const PER_PAGE = 20
const dids = Array.from({ length: PAGES * PER_PAGE }, (_, i) => `did:plc:${String(i).padStart(24, 'a')}`)
let server: Server
let url: string
let pagesServed = 0
let dir: ReturnType<typeof tmpDir>
let db: Db

beforeAll(async () => {
  server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    if (u.pathname !== '/xrpc/com.atproto.sync.listRepos') return void res.writeHead(404).end()
    const page = Number(u.searchParams.get('cursor') ?? 0)
    pagesServed++
    const repos = dids.slice(page * PER_PAGE, (page + 1) * PER_PAGE).map((did) => ({ did, head: 'bafy', rev: '3l3qo2vutsw2b', active: true }))
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ repos, ...(page + 1 < PAGES ? { cursor: String(page + 1) } : {}) }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  dir = tmpDir()
  db = openRelayDb(`${dir.path}/relay.sqlite`)
})

afterAll(async () => {
  db?.close()
  dir?.remove()
  await new Promise<void>((r) => server.close(() => r()))
})

describe('collection index: backfilling a host', () => {
  it('enumerates page by page only while fewer than maxQueued backfills wait, and backfills every repo once', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const ran: string[] = []
    const resolved: string[] = []
    const noop = () => undefined
    const index = new CollectionIndex({
      db,
      log: { warn: noop, debug: noop, info: noop, error: noop } as unknown as Logger,
      // each account's PDS is another host: the backfill stops after resolving (nothing is fetched)
      identities: { resolve: async (did: string) => (resolved.push(did), { pdsHost: 'elsewhere.test' }) } as unknown as Identities,
      runForAccount: async (did, task) => {
        await gate
        ran.push(did)
        await task()
      },
      backfill: true,
      allowPrivateAddresses: true,
      maxRepoBytes: 1 << 20,
      concurrency: 2,
      maxQueued: 10,
    })
    const done = index.backfillHost('pds.test', url)
    await waitFor(() => index.stats().pending >= PER_PAGE, 5_000, 'the first page queued')
    await sleep(200)
    // the first page filled the queue past maxQueued: the enumeration waits, nothing runs yet
    expect(pagesServed).toBe(1)
    expect(index.stats().pending).toBe(PER_PAGE)

    release()
    expect(await done).toBe(dids.length)
    await index.idle()
    expect(pagesServed).toBe(PAGES)
    expect([...ran].sort()).toEqual([...dids].sort())
    expect([...resolved].sort()).toEqual([...dids].sort())
    index.close()
  })
})

describe('collection index: commits against a backfilled state', () => {
  it('a first commit (no since) older than the backfilled rev does not reset the counts; a newer one does', () => {
    const noop = () => undefined
    const index = new CollectionIndex({
      db,
      log: { warn: noop, debug: noop, info: noop, error: noop } as unknown as Logger,
      identities: {} as unknown as Identities,
      runForAccount: async (_did, task) => task(),
      backfill: false,
      allowPrivateAddresses: true,
      maxRepoBytes: 1 << 20,
    })
    const did = 'did:plc:firstcommitafterbackfillaa'
    index.replace(did, '3l3qo2vutsw5b', new Map([['app.bsky.feed.post', 3]]))
    // the repo's first commit, replayed after the backfill fetched a newer repo: already counted
    expect(index.applyCommit(did, '3l3qo2vutsw1b', null, [{ action: 'create', path: 'app.bsky.feed.post/a' }])).toBe(true)
    expect(index.collectionsOf(did)).toEqual(new Map([['app.bsky.feed.post', 3]]))
    // an older commit with a since: also already counted
    expect(index.applyCommit(did, '3l3qo2vutsw2b', '3l3qo2vutsw1b', [{ action: 'create', path: 'app.bsky.feed.post/b' }])).toBe(true)
    expect(index.collectionsOf(did)).toEqual(new Map([['app.bsky.feed.post', 3]]))
    // a newer first commit (the repo was recreated): counts start over from it
    expect(index.applyCommit(did, '3l3qo2vutsw9b', null, [{ action: 'create', path: 'app.bsky.feed.like/c' }])).toBe(true)
    expect(index.collectionsOf(did)).toEqual(new Map([['app.bsky.feed.like', 1]]))
  })
})

describe('collection index: the cached state of each account', () => {
  it('follows every write, and after a rolled-back transaction and forgetCached() reads what is stored', () => {
    const noop = () => undefined
    const opts = {
      db,
      log: { warn: noop, debug: noop, info: noop, error: noop } as unknown as Logger,
      identities: {} as unknown as Identities,
      runForAccount: async (_did: string, task: () => Promise<void>) => task(),
      backfill: false,
      allowPrivateAddresses: true,
      maxRepoBytes: 1 << 20,
    }
    const index = new CollectionIndex(opts)
    const did = 'did:plc:cachedcollectionstateaa'
    const fresh = () => new CollectionIndex(opts).isIndexed(did)
    expect(index.isIndexed(did)).toBe(false)
    expect(index.applyCommit(did, '3l3qo2vutsw2b', '3l3qo2vutsw1b', [{ action: 'create', path: 'app.bsky.feed.post/a' }])).toBe(false)
    expect(index.applyCommit(did, '3l3qo2vutsw2b', null, [{ action: 'create', path: 'app.bsky.feed.post/a' }])).toBe(true)
    expect([index.isIndexed(did), fresh()]).toEqual([true, true])
    // a commit counted inside a transaction that rolls back
    const tx = db.transaction(() => {
      expect(index.applyCommit(did, '3l3qo2vutsw4b', '3l3qo2vutsw2b', [{ action: 'create', path: 'app.bsky.feed.post/b' }])).toBe(true)
      throw new Error('rolled back')
    })
    expect(() => tx()).toThrow('rolled back')
    index.forgetCached()
    expect(index.collectionsOf(did)).toEqual(new Map([['app.bsky.feed.post', 1]]))
    // the same commit again is counted (the rolled-back rev is not taken as already counted)
    expect(index.applyCommit(did, '3l3qo2vutsw4b', '3l3qo2vutsw2b', [{ action: 'create', path: 'app.bsky.feed.post/b' }])).toBe(true)
    expect(index.collectionsOf(did)).toEqual(new Map([['app.bsky.feed.post', 2]]))
    index.invalidate(did)
    expect([index.isIndexed(did), fresh()]).toEqual([false, false])
    index.replace(did, '3l3qo2vutsw6b', new Map([['app.bsky.feed.like', 4]]))
    expect([index.isIndexed(did), fresh()]).toEqual([true, true])
    index.remove(did)
    expect([index.isIndexed(did), fresh()]).toEqual([false, false])
    expect(index.collectionsOf(did)).toEqual(new Map())
  })
})
