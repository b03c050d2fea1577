/**
 * The load side of bench/appview.ts, in its own process: generates (once, cached under bench/.cache/) the
 * dataset of real signed repos, serves it as a fake PLC directory and a fake PDS (listRepos, getRepo,
 * subscribeRepos), builds the live commits and publishes them when told. The AppView under test runs in
 * the parent process, so the parent's CPU is the AppView's alone.
 *
 *   node --import tsx bench/lib/appview-network.ts --repos N --records M
 *
 * Speaks JSON lines: stdout answers ({ ready, plcUrl, pdsUrl, cache } first), stdin commands:
 *   { cmd: 'live', id, accounts, total }       builds a set of single-op commits of new accounts → { id, set, dids, commits }
 *   { cmd: 'burst', id, set }                  publishes the whole set at once → { id, first, last }
 *   { cmd: 'paced', id, set, rate }            publishes at `rate`/s → { id, published: [seq, wall ms][] }
 *   { cmd: 'close' }
 * Wall times are performance.timeOrigin + performance.now() (one machine: comparable across processes).
 */
import './register.js'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { randomPlcDid } from './fixtures.js'

const { generateKeypair, importKeypair } = await import('../../packages/core/src/crypto/index.js')
const { CID, cidForCbor } = await import('../../packages/core/src/data/index.js')
const { MemoryBlockstore, Repo, WriteOpAction, writeCar, commitSliceCar } = await import('../../packages/core/src/repo/index.js')
const { MemoryEventLog, SubscriptionServer, encodeMessageFrame, mountSubscription } = await import('../../packages/core/src/stream/index.js')
const appviewRequire = createRequire(new URL('../../services/appview/package.json', import.meta.url))
const Fastify = appviewRequire('fastify') as typeof import('fastify').default

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const REPOS = arg('repos', 2000)
const RECORDS = arg('records', 25)
const CACHE = fileURLToPath(new URL(`../.cache/appview-${REPOS}x${RECORDS}/`, import.meta.url))
const log = (msg: string) => process.stderr.write(`${msg}\n`)
const send = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`)
const wallNow = () => performance.timeOrigin + performance.now()

const toCid = (c: { bytes: Uint8Array }) => CID.decode(c.bytes)
const iso = (ms: number) => new Date(ms).toISOString()

type Network = Awaited<ReturnType<typeof startNetwork>>

export interface Manifest {
  accounts: { did: string; keyHex: string; rev: string; records: number }[]
}

// dataset (cached)
// =

async function generate(): Promise<Manifest> {
  if (existsSync(join(CACHE, 'manifest.json'))) return JSON.parse(readFileSync(join(CACHE, 'manifest.json'), 'utf8')) as Manifest
  mkdirSync(CACHE, { recursive: true })
  const t0 = performance.now()
  const keys = await Promise.all(Array.from({ length: REPOS }, () => generateKeypair('k256')))
  const dids = keys.map(() => randomPlcDid())
  const nPosts = Math.round(RECORDS * 0.3)
  const nLikes = Math.round(RECORDS * 0.4)
  const nReposts = Math.round(RECORDS * 0.15)
  const nFollows = RECORDS - nPosts - nLikes - nReposts
  const base = Date.parse('2026-01-01T00:00:00Z')
  let tick = 0
  let rk = 0
  const rkey = () => `3l${String(++rk).padStart(11, '0')}`
  // every post first (their CIDs are what likes and reposts point at)
  const posts: { uri: string; cid: string }[][] = []
  const postWrites: { collection: string; rkey: string; record: Record<string, unknown> }[][] = []
  for (let a = 0; a < REPOS; a++) {
    posts.push([])
    postWrites.push([])
    for (let p = 0; p < nPosts; p++) {
      const record: Record<string, unknown> = { $type: 'app.bsky.feed.post', text: `post ${p} of ${a}: the quick brown fox jumps over the lazy dog`, langs: ['en'], createdAt: iso(base + ++tick * 1000) }
      // accounts 1-200 reply once to account 0's first post (a thread of up to 200 replies)
      if (a > 0 && a <= 200 && p === 0 && posts[0]!.length > 0) record.reply = { root: posts[0]![0], parent: posts[0]![0] }
      const k = rkey()
      postWrites[a]!.push({ collection: 'app.bsky.feed.post', rkey: k, record })
      posts[a]!.push({ uri: `at://${dids[a]}/app.bsky.feed.post/${k}`, cid: cidForCbor(record).toString() })
    }
  }
  const manifest: Manifest = { accounts: [] }
  for (let a = 0; a < REPOS; a++) {
    const writes = [...postWrites[a]!]
    const other = (i: number) => (a + 1 + ((i * 7919) % (REPOS - 1))) % REPOS
    for (let i = 0; i < nLikes; i++) {
      const o = posts[other(i)]!
      writes.push({ collection: 'app.bsky.feed.like', rkey: rkey(), record: { $type: 'app.bsky.feed.like', subject: o[i % o.length], createdAt: iso(base + ++tick * 1000) } })
    }
    for (let i = 0; i < nReposts; i++) {
      const o = posts[other(i + 3)]!
      writes.push({ collection: 'app.bsky.feed.repost', rkey: rkey(), record: { $type: 'app.bsky.feed.repost', subject: o[(i + 1) % o.length], createdAt: iso(base + ++tick * 1000) } })
    }
    // account 0 (the timeline viewer) follows up to 1,000 others
    const follows = a === 0 ? Math.min(1000, REPOS - 1) : nFollows
    for (let i = 0; i < follows; i++) {
      const target = a === 0 ? dids[1 + i]! : dids[other(i + 5)]!
      writes.push({ collection: 'app.bsky.graph.follow', rkey: rkey(), record: { $type: 'app.bsky.graph.follow', subject: target, createdAt: iso(base + ++tick * 1000) } })
    }
    const storage = new MemoryBlockstore()
    const init = await Repo.formatInitCommit(
      storage,
      dids[a]!,
      keys[a] as never,
      writes.map((w) => ({ action: WriteOpAction.Create, collection: w.collection, rkey: w.rkey, record: w.record })) as never,
    )
    const repo = await Repo.createFromCommit(storage, init)
    const blocks = [...(storage.blocks as unknown as Iterable<[unknown, Uint8Array]>)].map(([cid, bytes]) => ({ cid: toCid(cid as never), bytes }))
    writeFileSync(join(CACHE, `${a}.car`), writeCar(toCid(repo.cid), blocks))
    manifest.accounts.push({ did: dids[a]!, keyHex: Buffer.from(keys[a]!.export()).toString('hex'), rev: repo.commit.rev, records: writes.length })
    if (a % 200 === 199) log(`  generated ${a + 1}/${REPOS} repos`)
  }
  writeFileSync(join(CACHE, 'manifest.json'), JSON.stringify(manifest))
  log(`generated ${REPOS} repos x ${RECORDS} records in ${((performance.now() - t0) / 1000).toFixed(1)} s (cached in ${CACHE})`)
  return manifest
}

// fake network: PLC + PDS (listRepos, getRepo, subscribeRepos)
// =

async function startNetwork(manifest: Manifest) {
  const keys = new Map<string, string>()
  const plc = Fastify()
  const pds = Fastify()
  const log = new MemoryEventLog()
  // the burst command publishes every live commit in one synchronous loop: nothing reaches the socket before its
  // end, so with the default limits (20,000 frames / 16 MiB queued) the AppView was cut (ConsumerTooSlow) in the
  // middle of a 20,000-commit burst, however fast it read, and caught up by reconnecting and replaying from its
  // cursor; the consumer's pace is its socket's (its reads), not these limits
  const subs = new SubscriptionServer({ log, pingIntervalMs: 0, maxQueuedFrames: 10_000_000, maxQueuedBytes: 4 * 1024 ** 3 })
  const index = new Map(manifest.accounts.map((a, i) => [a.did, i]))
  const liveCars = new Map<string, Uint8Array>()
  let pdsUrl = ''
  plc.get('/:did', async (req, reply) => {
    const did = (req.params as { did: string }).did
    const key = keys.get(did)
    if (!key) return reply.code(404).send({ message: 'not found' })
    return {
      '@context': ['https://www.w3.org/ns/did/v1'],
      id: did,
      alsoKnownAs: [],
      verificationMethod: [{ id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: key.slice('did:key:'.length) }],
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: pdsUrl }],
    }
  })
  pds.get('/xrpc/com.atproto.sync.listRepos', async (req) => {
    const q = req.query as { cursor?: string; limit?: string }
    const start = q.cursor ? Number(q.cursor) : 0
    const limit = Number(q.limit ?? 500)
    const page = manifest.accounts.slice(start, start + limit)
    return {
      repos: page.map((a) => ({ did: a.did, head: 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy', rev: a.rev, active: true })),
      cursor: start + limit < manifest.accounts.length ? String(start + limit) : undefined,
    }
  })
  pds.get('/xrpc/com.atproto.sync.getRepo', async (req, reply) => {
    const did = (req.query as { did: string }).did
    const i = index.get(did)
    const live = liveCars.get(did)
    if (i === undefined && !live) return reply.code(400).send({ error: 'RepoNotFound', message: 'not found' })
    reply.header('content-type', 'application/vnd.ipld.car')
    return Buffer.from(live ?? readFileSync(join(CACHE, `${i}.car`)))
  })
  mountSubscription(pds, 'com.atproto.sync.subscribeRepos', (ws, _req, params) => subs.attach(ws, { cursor: params.cursor }))
  await plc.listen({ host: '127.0.0.1', port: 0 })
  await pds.listen({ host: '127.0.0.1', port: 0 })
  pdsUrl = `http://127.0.0.1:${(pds.server.address() as AddressInfo).port}`
  const plcUrl = `http://127.0.0.1:${(plc.server.address() as AddressInfo).port}`
  for (const a of manifest.accounts) keys.set(a.did, (await importKeypair(a.keyHex, 'k256')).did())
  return {
    plcUrl,
    pdsUrl,
    keys,
    log,
    liveCars,
    publish(frame: Uint8Array) {
      const evt = log.append(() => frame)
      subs.publish(evt.seq, evt.frame)
      return evt.seq
    },
    publishEvent(body: (seq: number) => Record<string, unknown>) {
      const evt = log.append((seq) => encodeMessageFrame('#commit', body(seq)))
      subs.publish(evt.seq, evt.frame)
      return evt.seq
    },
    async close() {
      await subs.close()
      await pds.close()
      await plc.close()
    },
  }
}

/** Single-op commits of `accounts` fresh accounts (each: its first commit, then `perAccount` posts), pre-built. */
async function buildLive(net: Network, accounts: number, total: number) {
  const perAccount = Math.ceil(total / accounts)
  const frames: Uint8Array[] = []
  const finalCars = new Map<string, Uint8Array>()
  const t0 = performance.now()
  for (let a = 0; a < accounts; a++) {
    const key = await generateKeypair('k256')
    const did = randomPlcDid()
    net.keys.set(did, key.did())
    const storage = new MemoryBlockstore()
    let repo = await Repo.create(storage, did, key as never)
    const blocks = [...(storage.blocks as unknown as Iterable<[unknown, Uint8Array]>)].map(([cid, bytes]) => ({ cid: toCid(cid as never), bytes }))
    frames.push(
      encodeMessageFrame('#commit', { seq: 0, rebase: false, tooBig: false, repo: did, commit: toCid(repo.cid), rev: repo.commit.rev, since: null, blocks: writeCar(toCid(repo.cid), blocks), ops: [], blobs: [], time: new Date().toISOString() }),
    )
    for (let i = 0; i < perAccount; i++) {
      const rkey = `3m${String(i).padStart(11, '0')}`
      const record = { $type: 'app.bsky.feed.post', text: `live ${i}`, createdAt: new Date().toISOString() }
      const prevData = toCid(repo.commit.data)
      const commit = await repo.formatCommit([{ action: WriteOpAction.Create, collection: 'app.bsky.feed.post', rkey, record }] as never, key as never)
      repo = await repo.applyCommit(commit)
      frames.push(
        encodeMessageFrame('#commit', {
          seq: 0,
          rebase: false,
          tooBig: false,
          repo: did,
          commit: toCid(commit.cid),
          rev: commit.rev,
          since: commit.since,
          blocks: commitSliceCar(commit),
          ops: [{ action: 'create', path: `app.bsky.feed.post/${rkey}`, cid: cidForCbor(record) }],
          blobs: [],
          prevData,
          time: new Date().toISOString(),
        }),
      )
    }
    const all = [...(storage.blocks as unknown as Iterable<[unknown, Uint8Array]>)].map(([cid, bytes]) => ({ cid: toCid(cid as never), bytes }))
    finalCars.set(did, writeCar(toCid(repo.cid), all))
  }
  // the PDS serves these repos too (what a resync of a live account fetches)
  for (const [did, car] of finalCars) net.liveCars.set(did, car)
  log(`built ${frames.length} live commits in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  const { decodeFrame } = await import('../../packages/core/src/stream/index.js')
  return { bodies: frames.map((f) => (decodeFrame(f) as { body: Record<string, unknown> }).body), dids: [...finalCars.keys()] }
}


// commands
// =

const manifest = await generate()
const net = await startNetwork(manifest)
const sets: Awaited<ReturnType<typeof buildLive>>[] = []
send({ ready: true, plcUrl: net.plcUrl, pdsUrl: net.pdsUrl, cache: CACHE })

const rl = createInterface({ input: process.stdin })
for await (const line of rl) {
  const msg = JSON.parse(line) as { cmd: string; id?: number; accounts?: number; total?: number; set?: number; rate?: number }
  if (msg.cmd === 'live') {
    const set = await buildLive(net, msg.accounts!, msg.total!)
    sets.push(set)
    send({ id: msg.id, set: sets.length - 1, dids: set.dids, commits: set.bodies.length })
  } else if (msg.cmd === 'burst') {
    const set = sets[msg.set!]!
    let first = 0
    let last = 0
    for (const body of set.bodies) {
      last = net.publishEvent((seq) => ({ ...body, seq }))
      if (first === 0) first = last
    }
    send({ id: msg.id, first, last })
  } else if (msg.cmd === 'paced') {
    const set = sets[msg.set!]!
    const rate = msg.rate!
    const published: [number, number][] = []
    const t0 = performance.now()
    for (let i = 0; i < set.bodies.length; i++) {
      const wait = t0 + (i * 1000) / rate - performance.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      const seq = net.publishEvent((q) => ({ ...set.bodies[i]!, seq: q }))
      published.push([seq, wallNow()])
    }
    send({ id: msg.id, published })
  } else if (msg.cmd === 'close') {
    break
  }
}
await net.close()
process.exit(0)
