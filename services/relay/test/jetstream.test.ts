/**
 * GET /subscribe (Jetstream) on a relay fed by a real Stratos PDS, read with Jetstream clients no one here
 * wrote (@skyware/jetstream, @atcute/jetstream; both speak v1 only, without compression) and, for what they
 * do not cover (zstd with a dictionary, the v2 subscribeEvents endpoint), with `ws` and zstd decoding here.
 *
 * Jetstream's published dictionaries are not in the repository: the tests train their own with the zstd CLI
 * (`zstd --train`) on Jetstream-shaped events and give them to the relay the way an operator would. The relay
 * compresses with zstd-codec; the frames are decoded here with another library (@bokuweb/zstd-wasm).
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createDCtx, decompress, decompressUsingDict, init as zstdInit } from '@bokuweb/zstd-wasm'
import { JetstreamSubscription, type JetstreamEvent } from '@atcute/jetstream'
import { Jetstream } from '@skyware/jetstream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { lexToJson } from '@stratos/core/data'
import { ConfigError } from '../src/index.js'
import { FirehoseConsumer, relayConfig, startRelay, tmpDir, waitFor, sleep } from './helpers.js'
import { TestNetwork, type TestAccount } from './network.js'

let net: TestNetwork
let dictDir: ReturnType<typeof tmpDir>
let dictV1: Uint8Array
let dictV2: Uint8Array
const DICT_V1_ID = 31337
const DICT_V2_ID = 20261206
let alice: TestAccount
let bob: TestAccount
const POST = 'app.bsky.feed.post'
const LIKE = 'app.bsky.feed.like'
const PROFILE = 'app.bsky.actor.profile'

/** An @atcute/jetstream subscription to the relay (Node 20 has no global WebSocket: `ws` is given). */
function atcute(opts: Omit<ConstructorParameters<typeof JetstreamSubscription>[0], 'url'>): JetstreamSubscription {
  return new JetstreamSubscription({ url: net.relay.url.replace(/^http/, 'ws'), ws: { WebSocket: WebSocket as any }, onError: (e) => console.error(e), ...opts })
}

/** Collects the events of an @atcute/jetstream subscription until stopped. */
function collect(sub: JetstreamSubscription): { events: JetstreamEvent[]; stop: () => Promise<void> } {
  const events: JetstreamEvent[] = []
  const it = sub[Symbol.asyncIterator]()
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      const r = await it.next()
      if (r.done) return
      events.push(r.value)
    }
  })()
  return {
    events,
    stop: async () => {
      stopped = true
      await it.return?.()
      await Promise.race([loop, sleep(200)])
    },
  }
}

/**
 * Trains a zstd dictionary with the zstd CLI on synthetic Jetstream-shaped events (`shape` renders one),
 * as an operator would train or download one; returns its file.
 */
function trainDictionary(dir: string, name: string, id: number, shape: (i: number) => string): string {
  const samples = `${dir}/${name}-samples`
  mkdirSync(samples, { recursive: true })
  for (let i = 0; i < 600; i++) writeFileSync(`${samples}/${i}.json`, shape(i))
  const out = `${dir}/${name}.zdict`
  execFileSync('zstd', ['--train', '-q', '-r', samples, '-o', out, '--maxdict=16384', `--dictID=${id}`], { stdio: 'pipe' })
  return out
}

function sampleCommit(i: number): Record<string, unknown> {
  const did = `did:plc:${(i * 7919).toString(36).padStart(24, 'a')}`
  return {
    rev: `3l${(1e12 + i * 977).toString(36)}`,
    operation: i % 5 === 0 ? 'delete' : 'create',
    collection: ['app.bsky.feed.post', 'app.bsky.feed.like', 'app.bsky.graph.follow'][i % 3],
    rkey: `3l${(2e12 + i * 131).toString(36)}`,
    ...(i % 5 === 0
      ? {}
      : {
          cid: `bafyreie${(i * 104729).toString(32).padStart(51, 'q')}`,
          record: { $type: 'app.bsky.feed.like', createdAt: new Date(1.7e12 + i * 1000).toISOString(), subject: { uri: `at://${did}/app.bsky.feed.post/3l${i}`, cid: 'bafyreidc6sydkkbchcyg62v77wbhzvb2mvytlmsychqgwf2xojjtirmzj4' } },
        }),
    _did: did,
  }
}

/** A raw subscriber: messages as parsed JSON (decompressing binary frames with zstd, with `dict` if given). */
function raw(url: string, dict?: Uint8Array, protocols?: string[]): { ws: WebSocket; messages: any[]; binary: number; frames: Buffer[]; opened: Promise<void> } {
  const ws = new WebSocket(url, protocols)
  const out = { ws, messages: [] as any[], binary: 0, frames: [] as Buffer[], opened: new Promise<void>((r) => ws.once('open', () => r())) }
  const dctx = createDCtx()
  ws.on('message', (data, isBinary) => {
    const buf = data as Buffer
    if (isBinary) {
      out.binary++
      out.frames.push(buf)
      const plain = dict ? decompressUsingDict(dctx, buf, dict) : decompress(buf)
      out.messages.push(JSON.parse(Buffer.from(plain).toString('utf8')))
    } else {
      out.messages.push(JSON.parse(buf.toString('utf8')))
    }
  })
  return out
}

/** Status and XRPC error of a refused upgrade. */
function refused(url: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.on('open', () => {
      ws.close()
      reject(new Error('the upgrade was accepted'))
    })
    ws.on('unexpected-response', (_req, res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }))
    })
    ws.on('error', () => undefined)
  })
}

const commits = (events: any[], did?: string) =>
  events.filter((e) => e.kind === 'commit' && (did === undefined || e.did === did))

beforeAll(async () => {
  await zstdInit()
  dictDir = tmpDir()
  const v1File = trainDictionary(dictDir.path, 'v1', DICT_V1_ID, (i) => {
    const { _did, ...commit } = sampleCommit(i)
    return JSON.stringify({ did: _did, time_us: 1.7e15 + i, cursor: i * 1024, kind: 'commit', commit })
  })
  const v2File = trainDictionary(dictDir.path, 'v2', DICT_V2_ID, (i) => {
    const { _did, ...commit } = sampleCommit(i)
    return JSON.stringify({ $type: 'message', payload: { $type: 'network.bsky.jetstream.subscribeEvents#commit', seq: i * 1024, did: _did, time: new Date(1.7e12 + i).toISOString(), ...commit } })
  })
  dictV1 = readFileSync(v1File)
  dictV2 = readFileSync(v2File)
  net = await TestNetwork.start({ RELAY_JETSTREAM_ZSTD_DICTIONARY: v1File, RELAY_JETSTREAM_V2_ZSTD_DICTIONARY: v2File })
  alice = await net.createAccount('alice')
  bob = await net.createAccount('bob')
  await net.synced(bob)
}, 60_000)

afterAll(async () => {
  await net?.close()
  dictDir?.remove()
})

describe('GET /subscribe with Jetstream clients', () => {
  it('delivers posts, likes, deletes, profile updates, handle changes and deactivation with the right kinds and fields', async () => {
    const start = Date.now() * 1000
    const all = collect(atcute({ cursor: start }))
    const skyware = new Jetstream({ ws: WebSocket, endpoint: net.jetstreamUrl, wantedCollections: ['app.bsky.feed.*'], cursor: start })
    const sky: any[] = []
    skyware.on('commit', (e) => sky.push(e))
    skyware.on('identity', (e) => sky.push(e))
    skyware.on('account', (e) => sky.push(e))
    skyware.start()

    const post = await net.create(alice, POST, { text: 'hello jetstream', createdAt: new Date().toISOString() })
    const like = await net.create(bob, LIKE, { subject: { uri: post.uri, cid: post.cid }, createdAt: new Date().toISOString() })
    const prof = await net.create(alice, PROFILE, { displayName: 'Alice' }, 'self')
    const prof2 = await net.put(alice, PROFILE, 'self', { displayName: 'Alice A.' })
    const gone = await net.create(alice, POST, { text: 'to delete', createdAt: new Date().toISOString() })
    await net.del(alice, POST, gone.rkey)
    await net.call('com.atproto.identity.updateHandle', { handle: 'bobby.test' }, bob.accessJwt)
    await net.call('com.atproto.server.deactivateAccount', {}, bob.accessJwt)

    await waitFor(() => all.events.some((e) => e.kind === 'account' && e.did === bob.did), 20_000, 'the account event').catch((e) => { console.log(JSON.stringify(all.events, null, 1)); throw e })
    // the relay keeps each account's order, not the order between accounts (verification workers): alice's
    // last commit may come after bob's account event
    await waitFor(() => commits(all.events, alice.did).some((e) => (e.commit as any).operation === 'delete'), 20_000, "alice's delete")
    await waitFor(() => sky.some((e) => e.kind === 'account'), 10_000, 'skyware account event')
    await waitFor(() => commits(sky, alice.did).some((e) => e.commit.operation === 'delete'), 10_000, "skyware: alice's delete")
    await all.stop()
    skyware.close()

    const a = commits(all.events, alice.did).map((e) => e.commit)
    expect(a).toEqual([
      { rev: expect.any(String), operation: 'create', collection: POST, rkey: post.rkey, cid: post.cid, record: { $type: POST, text: 'hello jetstream', createdAt: expect.any(String) } },
      { rev: expect.any(String), operation: 'create', collection: PROFILE, rkey: 'self', cid: prof.cid, record: { $type: PROFILE, displayName: 'Alice' } },
      { rev: expect.any(String), operation: 'update', collection: PROFILE, rkey: 'self', cid: prof2.cid, record: { $type: PROFILE, displayName: 'Alice A.' } },
      { rev: expect.any(String), operation: 'create', collection: POST, rkey: gone.rkey, cid: gone.cid, record: expect.objectContaining({ text: 'to delete' }) },
      { rev: expect.any(String), operation: 'delete', collection: POST, rkey: gone.rkey },
    ])
    const b = commits(all.events, bob.did).map((e) => e.commit)
    expect(b).toEqual([
      {
        rev: expect.any(String),
        operation: 'create',
        collection: LIKE,
        rkey: like.rkey,
        cid: like.cid,
        record: { $type: LIKE, subject: { uri: post.uri, cid: post.cid }, createdAt: expect.any(String) },
      },
    ])
    const identity = all.events.find((e) => e.kind === 'identity' && e.did === bob.did) as any
    expect(identity.identity).toMatchObject({ did: bob.did, handle: 'bobby.test', seq: expect.any(Number), time: expect.any(String) })
    const account = all.events.find((e) => e.kind === 'account' && e.did === bob.did) as any
    expect(account.account).toMatchObject({ did: bob.did, active: false, status: 'deactivated', seq: expect.any(Number) })
    // time_us strictly increasing on the connection
    const times = all.events.map((e) => e.time_us)
    expect(times).toEqual([...times].sort((x, y) => x - y))
    expect(new Set(times).size).toBe(times.length)

    // skyware with app.bsky.feed.*: the feed commits (no profile), plus identity and account events
    // (each account's events in order; the order between accounts is not promised)
    expect(commits(sky, alice.did).map((e) => `${e.commit.operation} ${e.commit.collection}`)).toEqual([`create ${POST}`, `create ${POST}`, `delete ${POST}`])
    expect(commits(sky, bob.did).map((e) => `${e.commit.operation} ${e.commit.collection}`)).toEqual([`create ${LIKE}`])
    expect(sky.some((e) => e.kind === 'identity' && e.identity.handle === 'bobby.test')).toBe(true)

    await net.call('com.atproto.server.activateAccount', undefined, bob.accessJwt)
  }, 60_000)

  it('filters by wantedDids and changes filters mid-stream with options_update', async () => {
    const sub = atcute({ wantedDids: [alice.did as `did:${string}:${string}`], wantedCollections: [POST] })
    const got = collect(sub)
    await sleep(300)
    await net.create(alice, POST, { text: 'a1', createdAt: new Date().toISOString() })
    await net.create(bob, POST, { text: 'b1', createdAt: new Date().toISOString() })
    await net.create(alice, LIKE, { subject: { uri: `at://${alice.did}/${POST}/x`, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' }, createdAt: new Date().toISOString() })
    await waitFor(() => commits(got.events).length >= 1, 10_000, 'a1')
    await net.synced(alice)
    await net.synced(bob)
    await sleep(200)
    expect(commits(got.events).map((e) => (e.commit as any).record.text)).toEqual(['a1'])

    sub.updateOptions({ wantedDids: [bob.did as `did:${string}:${string}`], wantedCollections: ['app.bsky.*'] })
    await sleep(300)
    await net.create(alice, POST, { text: 'a2', createdAt: new Date().toISOString() })
    await net.create(bob, POST, { text: 'b2', createdAt: new Date().toISOString() })
    await net.create(bob, LIKE, { subject: { uri: `at://${alice.did}/${POST}/x`, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' }, createdAt: new Date().toISOString() })
    await waitFor(() => commits(got.events).length >= 3, 10_000, 'b2 and the like')
    await net.synced(alice)
    await sleep(200)
    await got.stop()
    expect(commits(got.events).map((e) => `${e.did === bob.did ? 'bob' : 'alice'} ${(e.commit as any).collection}`)).toEqual([
      'alice app.bsky.feed.post',
      'bob app.bsky.feed.post',
      'bob app.bsky.feed.like',
    ])
  }, 40_000)

  it('replays from a cursor after a disconnect, losing nothing and repeating nothing', async () => {
    const sub = atcute({ wantedDids: [alice.did as `did:${string}:${string}`] })
    const first = collect(sub)
    await sleep(300)
    for (let i = 0; i < 3; i++) await net.create(alice, POST, { text: `before ${i}`, createdAt: new Date().toISOString() })
    await waitFor(() => commits(first.events).length === 3, 10_000, 'first three')
    await first.stop()
    const cursor = first.events.at(-1)!.time_us
    // written while disconnected, one commit with several ops among them
    for (let i = 0; i < 3; i++) await net.create(alice, POST, { text: `during ${i}`, createdAt: new Date().toISOString() })
    await net.call(
      'com.atproto.repo.applyWrites',
      {
        repo: alice.did,
        writes: [0, 1, 2].map((i) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: POST, value: { $type: POST, text: `batch ${i}`, createdAt: new Date().toISOString() } })),
      },
      alice.accessJwt,
    )
    await net.synced(alice)

    // resume in the middle of the multi-op commit too
    const second = collect(atcute({ cursor, wantedDids: [alice.did as `did:${string}:${string}`] }))
    await waitFor(() => commits(second.events).length === 6, 10_000, 'the missed six')
    await net.create(alice, POST, { text: 'after', createdAt: new Date().toISOString() })
    await waitFor(() => commits(second.events).length === 7, 10_000, 'live after replay')
    await second.stop()
    expect(commits(second.events).map((e) => (e.commit as any).record.text)).toEqual([
      'during 0', 'during 1', 'during 2', 'batch 0', 'batch 1', 'batch 2', 'after',
    ])
    const batch = commits(second.events).filter((e) => (e.commit as any).record.text.startsWith('batch'))
    expect(new Set(batch.map((e) => (e.commit as any).rev)).size).toBe(1)

    const mid = batch[0]!.time_us
    const third = collect(atcute({ cursor: mid, wantedDids: [alice.did as `did:${string}:${string}`] }))
    await waitFor(() => commits(third.events).length === 3, 10_000, 'from mid-commit')
    await sleep(200)
    await third.stop()
    expect(commits(third.events).map((e) => (e.commit as any).record.text)).toEqual(['batch 1', 'batch 2', 'after'])

    // a cursor older than the log starts at its oldest event
    const old = raw(`${net.jetstreamUrl}?cursor=1000000000000000&wantedDids=${alice.did}`)
    await waitFor(() => old.messages.length > 0, 10_000, 'oldest event')
    old.ws.close()
    expect(old.messages[0]).toMatchObject({ did: alice.did })
  }, 60_000)

  it('compress=true sends zstd frames made with the operator-supplied dictionary that decode to the same events', async () => {
    const plain = raw(`${net.jetstreamUrl}?wantedCollections=${POST}&wantedDids=${alice.did}`)
    const zstd = raw(`${net.jetstreamUrl}?wantedCollections=${POST}&wantedDids=${alice.did}&compress=true`, dictV1)
    await Promise.all([plain.opened, zstd.opened])
    await net.create(alice, POST, { text: 'compressed '.repeat(20), createdAt: new Date().toISOString() })
    await waitFor(() => plain.messages.length === 1 && zstd.messages.length === 1, 10_000, 'both')
    plain.ws.close()
    zstd.ws.close()
    expect(zstd.binary).toBe(1)
    expect(zstd.messages).toEqual(plain.messages)
    // the frame names the dictionary (frame header: dictionary id flag set, the id after the descriptor)
    const frame = zstd.frames[0]!
    expect(frame.readUInt32LE(0)).toBe(0xfd2fb528)
    const fhd = frame[4]!
    expect(fhd & 0x03).toBeGreaterThan(0)
    const idBytes = [0, 1, 2, 4][fhd & 0x03]!
    const idAt = 5 + ((fhd & 0x20) === 0 ? 1 : 0)
    expect(frame.readUIntLE(idAt, idBytes)).toBe(DICT_V1_ID)
    // and cannot be decoded without it
    expect(() => decompress(frame)).toThrow()
  })

  it('every Jetstream commit matches what @atproto/sync Firehose yields for it', async () => {
    const firehose = new FirehoseConsumer(net.relay.url, net.plc.url, { cursor: 0 })
    const js = raw(`${net.jetstreamUrl}?cursor=1`)
    try {
      await waitFor(() => firehose.events.some((e) => e.event === 'create' && (e.record as any)?.text === 'after'), 20_000, 'firehose catch-up')
      await waitFor(() => commits(js.messages).some((e) => e.commit.record?.text === 'after'), 20_000, 'jetstream catch-up')
      const fromFirehose = firehose.events
        .filter((e) => e.event === 'create' || e.event === 'update' || e.event === 'delete')
        .map((e: any) => ({
          did: e.did,
          operation: e.event,
          collection: e.collection,
          rkey: e.rkey,
          rev: e.rev,
          ...(e.event === 'delete' ? {} : { cid: e.cid.toString(), record: lexToJson(e.record) }),
        }))
      const fromJetstream = commits(js.messages).map((e) => ({ did: e.did, ...e.commit }))
      const upTo = (xs: any[]) => xs.slice(0, xs.findIndex((x) => x.record?.text === 'after') + 1)
      const canon = (x: unknown): unknown =>
        Array.isArray(x)
          ? x.map(canon)
          : x && typeof x === 'object'
            ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, canon((x as Record<string, unknown>)[k])]))
            : x
      expect(upTo(fromJetstream).length).toBeGreaterThan(15)
      expect(upTo(fromJetstream).map(canon)).toEqual(upTo(fromFirehose).map(canon))
    } finally {
      js.ws.close()
      await firehose.close()
    }
  }, 40_000)

  it('v2 (network.bsky.jetstream.subscribeEvents): xrpc.v1.json message frames, kinds/dids/collections, an inclusive sequence cursor, dictionary zstd', async () => {
    const v2url = `${net.relay.url.replace(/^http/, 'ws')}/xrpc/network.bsky.jetstream.subscribeEvents`
    const v2 = raw(`${v2url}?kinds=commit&collections=${PROFILE}&cursor=0`, undefined, ['xrpc.v1.json'])
    await v2.opened
    expect(v2.ws.protocol).toBe('xrpc.v1.json')
    await waitFor(() => v2.messages.length === 2, 10_000, 'the two profile commits')
    v2.ws.close()
    const [first, second] = v2.messages
    expect(first).toEqual({
      $type: 'message',
      payload: {
        $type: 'network.bsky.jetstream.subscribeEvents#commit',
        seq: expect.any(Number),
        did: alice.did,
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
        rev: expect.any(String),
        operation: 'create',
        collection: PROFILE,
        rkey: 'self',
        cid: expect.any(String),
        record: { $type: PROFILE, displayName: 'Alice' },
      },
    })
    expect(second.payload.operation).toBe('update')
    expect(first.payload.seq).toBeLessThan(second.payload.seq)

    // the same events on /subscribe carry the same sequence as `cursor`, and time_us matches `time`
    const v1 = raw(`${net.jetstreamUrl}?wantedCollections=${PROFILE}&cursor=0`)
    await waitFor(() => commits(v1.messages).length === 2, 10_000, 'v1 profile commits')
    v1.ws.close()
    const v1first = commits(v1.messages)[0]
    expect(v1first.cursor).toBe(first.payload.seq)
    expect(Object.keys(v1first)).toEqual(['did', 'time_us', 'cursor', 'kind', 'commit'])
    const us = v1first.time_us as number
    expect(first.payload.time).toBe(`${new Date(Math.floor(us / 1000)).toISOString().slice(0, -1)}${String(us % 1000).padStart(3, '0')}Z`)

    // inclusive: a client resuming from the last seq it saw gets that event again
    const again = raw(`${v2url}?kinds=commit&collections=${PROFILE}&cursor=${second.payload.seq}`)
    await waitFor(() => again.messages.length === 1, 10_000, 'from the second')
    await sleep(100)
    again.ws.close()
    expect(again.messages[0]).toEqual(second)

    // identity/account wrap the relay's subscribeRepos event; collections never drop them, kinds does
    const dids = raw(`${v2url}?dids=${bob.did}&collections=${POST}&cursor=0`)
    await waitFor(() => dids.messages.some((m) => m.payload.$type.endsWith('#account')), 10_000, "bob's account events")
    dids.ws.close()
    const ident = dids.messages.find((m) => m.payload.$type.endsWith('#identity') && m.payload.identity.handle === 'bobby.test')
    expect(ident.payload).toMatchObject({ did: bob.did, seq: expect.any(Number), identity: { did: bob.did, handle: 'bobby.test', seq: expect.any(Number), time: expect.any(String) } })
    expect(dids.messages.every((m) => m.payload.did === bob.did)).toBe(true)
    expect(dids.messages.filter((m) => m.payload.$type.endsWith('#commit')).every((m) => m.payload.collection === POST)).toBe(true)

    // zstdDictionary=<id>: binary frames, each one zstd frame of exactly the text frame, with the served dictionary
    const dictRes = await fetch(`${net.relay.url}/xrpc/network.bsky.jetstream.getZstdDictionary`)
    expect(dictRes.status).toBe(200)
    expect(Buffer.from(await dictRes.arrayBuffer()).equals(Buffer.from(dictV2))).toBe(true)
    const zv2 = raw(`${v2url}?kinds=commit&collections=${PROFILE}&cursor=0&zstdDictionary=${DICT_V2_ID}`, dictV2)
    await waitFor(() => zv2.messages.length === 2, 10_000, 'compressed v2')
    zv2.ws.close()
    expect(zv2.binary).toBe(2)
    expect(zv2.messages).toEqual([first, second])
    expect(() => decompress(zv2.frames[0]!)).toThrow()

    // refused before the upgrade, with the XRPC error a v2 client matches on
    const bad = (q: string) => refused(`${v2url}?${q}`)
    expect(await bad(`zstdDictionary=${DICT_V2_ID + 1}`)).toMatchObject({ status: 400, body: { error: 'UnknownZstdDictionary', message: expect.stringContaining(String(DICT_V2_ID)) } })
    expect(await bad(`wantedCollections=${POST}`)).toMatchObject({ status: 400, body: { error: 'InvalidRequest', message: expect.stringContaining('use collections') } })
    expect(await bad(`wantedDids=${bob.did}`)).toMatchObject({ status: 400, body: { error: 'InvalidRequest', message: expect.stringContaining('use dids') } })
    expect(await bad('compress=true')).toMatchObject({ status: 400, body: { error: 'InvalidRequest' } })
    expect(await bad('requireHello=true')).toMatchObject({ status: 400, body: { error: 'InvalidRequest' } })
    expect(await bad('kinds=post')).toMatchObject({ status: 400, body: { error: 'InvalidRequest' } })
    expect(await bad(`kinds=identity&collections=${POST}`)).toMatchObject({ status: 400, body: { error: 'InvalidRequest' } })
    expect(await bad('dids=alice')).toMatchObject({ status: 400, body: { error: 'InvalidRequest' } })
    expect((await fetch(`${net.relay.url}/xrpc/network.bsky.jetstream.getZstdDictionary?id=7`)).status).toBe(400)

    // server-push only: a message from the client closes the connection
    const chatty = raw(`${v2url}?kinds=account`)
    await chatty.opened
    const closed = new Promise<number>((r) => chatty.ws.once('close', (code) => r(code)))
    chatty.ws.send(JSON.stringify({ type: 'options_update', payload: {} }))
    expect(await closed).toBe(1008)
  }, 40_000)

  it('subscribers replaying the same range share one conversion of each logged event', async () => {
    const hub = net.relay.ctx.jetstream!
    const logged = net.relay.ctx.outbox.log.lastAssignedSeq()
    const before = hub.stats()
    const subs = Array.from({ length: 5 }, (_, i) => (i % 2 === 0 ? raw(`${net.jetstreamUrl}?cursor=0`) : raw(`${net.relay.url.replace(/^http/, 'ws')}/xrpc/network.bsky.jetstream.subscribeEvents?cursor=0`)))
    await Promise.all(subs.map((s) => s.opened))
    await waitFor(() => hub.stats().replayCacheHits - before.replayCacheHits >= 4 * logged - 10, 10_000, 'replays done')
    await waitFor(() => subs[0]!.messages.length === subs[2]!.messages.length && subs[1]!.messages.length === subs[3]!.messages.length, 5_000, 'same counts')
    for (const s of subs) s.ws.close()
    const after = hub.stats()
    // each logged event converted at most once (fewer when live delivery converted it already), not once per subscriber
    expect(after.eventsConverted - before.eventsConverted).toBeLessThanOrEqual(logged)
    expect(after.replayCacheHits - before.replayCacheHits).toBeGreaterThanOrEqual(4 * logged - 10)
    expect(subs[0]!.messages).toEqual(subs[2]!.messages)
    expect(subs[1]!.messages).toEqual(subs[3]!.messages)
    expect(subs[1]!.messages.length).toBeGreaterThan(10)
  }, 20_000)

  it('maxMessageSizeBytes: events larger than the limit are not sent to that subscriber, smaller ones are', async () => {
    const SIZED = 'org.example.sized.item'
    const base = `${net.jetstreamUrl}?wantedCollections=${SIZED}&wantedDids=${alice.did}`
    const limited = raw(`${base}&maxMessageSizeBytes=2000`)
    const unlimited = raw(base)
    try {
      await Promise.all([limited.opened, unlimited.opened])
      await net.create(alice, SIZED, { n: 1, text: 'small' })
      await net.create(alice, SIZED, { n: 2, text: 'x'.repeat(4000) })
      await net.create(alice, SIZED, { n: 3, text: 'small again' })
      await waitFor(() => unlimited.messages.length === 3, 10_000, 'the three events, unlimited')
      await waitFor(() => limited.messages.some((m) => m.commit?.record?.n === 3), 10_000, 'the last event, limited')
      const sizes = unlimited.messages.map((m) => Buffer.byteLength(JSON.stringify(m)))
      expect(sizes[0]).toBeLessThan(2000)
      expect(sizes[1]).toBeGreaterThan(2000)
      expect(sizes[2]).toBeLessThan(2000)
      expect(limited.messages.map((m) => m.commit.record.n)).toEqual([1, 3])
      expect(unlimited.messages.map((m) => m.commit.record.n)).toEqual([1, 2, 3])
    } finally {
      limited.ws.close()
      unlimited.ws.close()
    }
  }, 15_000)
})

describe('a log that retention has pruned', () => {
  it('v2 refuses a sequence cursor it no longer holds (CursorTooOld), says OutdatedCursor for an old time cursor; /subscribe starts at the oldest event', async () => {
    const v2url = `${net.relay.url.replace(/^http/, 'ws')}/xrpc/network.bsky.jetstream.subscribeEvents`
    net.relay.ctx.outbox.prune(Date.now() + 365 * 24 * 3600_000)
    expect(await refused(`${v2url}?cursor=1`)).toMatchObject({ status: 400, body: { error: 'CursorTooOld', message: expect.stringContaining('starts at seq') } })
    await net.create(alice, POST, { text: 'after pruning', createdAt: new Date().toISOString() })
    await net.synced(alice)
    expect(await refused(`${v2url}?cursor=0`)).toMatchObject({ status: 400, body: { error: 'CursorTooOld' } })

    const timed = raw(`${v2url}?cursor=1000000000000000&dids=${alice.did}&kinds=commit`)
    await waitFor(() => timed.messages.length === 2, 10_000, 'the advisory and the post')
    timed.ws.close()
    expect(timed.messages[0]).toEqual({
      $type: 'message',
      payload: { $type: 'network.bsky.jetstream.subscribeEvents#info', name: 'OutdatedCursor', message: expect.stringContaining('resuming from seq') },
    })
    expect(timed.messages[1].payload.record.text).toBe('after pruning')

    const v1 = raw(`${net.jetstreamUrl}?cursor=1&wantedDids=${alice.did}`)
    await waitFor(() => v1.messages.length === 1, 10_000, 'the oldest event')
    v1.ws.close()
    expect(v1.messages[0].commit.record.text).toBe('after pruning')
  }, 20_000)
})

describe('configuration', () => {
  it('RELAY_JETSTREAM_ENABLED=false: no /subscribe; bad values stop start-up', async () => {
    const dir = tmpDir()
    const relay = await startRelay(relayConfig(dir.path, net.plc.url, { RELAY_JETSTREAM_ENABLED: 'false' }))
    try {
      expect(relay.ctx.jetstream).toBeNull()
      expect(await refused(`${relay.url.replace(/^http/, 'ws')}/subscribe`)).toMatchObject({ status: 404 })
    } finally {
      await relay.close()
      dir.remove()
    }
    expect(() => relayConfig(dir.path, net.plc.url, { RELAY_JETSTREAM_MAX_PER_IP: '0' })).toThrow(ConfigError)
    expect(() => relayConfig(dir.path, net.plc.url, { RELAY_JETSTREAM_ENABLED: 'maybe' })).toThrow(/RELAY_JETSTREAM_ENABLED/)
    // a dictionary file that is missing or not a structured zstd dictionary stops start-up
    expect(() => relayConfig(dir.path, net.plc.url, { RELAY_JETSTREAM_ZSTD_DICTIONARY: `${dictDir.path}/missing.zdict` })).toThrow(/RELAY_JETSTREAM_ZSTD_DICTIONARY: cannot read/)
    writeFileSync(`${dictDir.path}/samples.txt`, 'not a dictionary, just text')
    expect(() => relayConfig(dir.path, net.plc.url, { RELAY_JETSTREAM_V2_ZSTD_DICTIONARY: `${dictDir.path}/samples.txt` })).toThrow(/RELAY_JETSTREAM_V2_ZSTD_DICTIONARY: .*not a structured zstd dictionary/)
  })
})

