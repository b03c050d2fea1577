/**
 * The outbound stream's cursor semantics: durable replay across a relay restart with no gap, cursor=0,
 * OutdatedCursor, FutureCursor, and a slow consumer cut with ConsumerTooSlow while the others go on.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { SubscriptionClient } from '@stratos/core/stream'
import {
  FakePds,
  FakePlc,
  FirehoseConsumer,
  RawConsumer,
  droppedCounts,
  relayConfig,
  startRelay,
  tmpDir,
  waitFor,
  xrpcPost,
  type FakeAccount,
} from './helpers.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function setup(env: Record<string, string> = {}) {
  const dir = tmpDir()
  const plc = await new FakePlc().start()
  const pds = await new FakePds(plc).start()
  cleanups.push(() => dir.remove(), () => plc.close(), () => pds.close())
  const config = relayConfig(dir.path, plc.url, env)
  const relay = await startRelay(config)
  cleanups.push(() => relay.close())
  const alice = await pds.createAccount()
  await pds.announce(alice)
  const crawl = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.url })
  expect(crawl.status).toBe(200)
  return { dir, plc, pds, relay, alice, config }
}

async function posts(alice: FakeAccount, prefix: string, n: number): Promise<string[]> {
  const texts: string[] = []
  for (let i = 0; i < n; i++) {
    texts.push(`${prefix}${i}`)
    await alice.emitPost(`${prefix}${i}`)
  }
  return texts
}

describe('outbound cursors', () => {
  it('after a relay restart a consumer resumes from its cursor with no gap', async () => {
    const { plc, pds, relay, alice, config } = await setup()
    const consumer = new FirehoseConsumer(relay.url, plc.url, { cursor: 0 })
    cleanups.push(() => consumer.close())
    // a second consumer that sees every frame (the Firehose yields nothing for a commit without ops)
    const seen: { seq: number; t: string }[] = []
    const raw = new SubscriptionClient({
      url: `${relay.url}/xrpc/com.atproto.sync.subscribeRepos`,
      getCursor: () => seen.at(-1)?.seq ?? 0,
      onEvent: (evt) => {
        seen.push({ seq: evt.seq!, t: evt.t })
      },
      minBackoffMs: 50,
      maxBackoffMs: 200,
    }).start()
    cleanups.push(() => raw.stop())
    const before = await posts(alice, 'before-', 5)
    await consumer.waitForText('before-4')
    const port = Number(new URL(relay.url).port)

    await relay.close()
    // the host goes on while the relay is down
    const during = await posts(alice, 'during-', 5)

    const relay2 = await startRelay({ ...config, port })
    cleanups.push(() => relay2.close())
    const after = await posts(alice, 'after-', 3)
    await consumer.waitForText('after-2', 20_000)

    expect(consumer.texts()).toEqual([...before, ...during, ...after])
    // every seq once, no gap: #identity, #account, the first #commit, then one #commit per post
    const total = 3 + before.length + during.length + after.length
    await waitFor(() => seen.length === total, 15_000, 'every frame')
    expect(seen.map((e) => e.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    expect(seen.slice(0, 3).map((e) => e.t)).toEqual(['#identity', '#account', '#commit'])
    expect(raw.stats.duplicates).toBe(0)
    // the relay resumed upstream from its saved cursor: nothing was fetched twice
    expect((await droppedCounts(relay2.url))['rev-not-newer']).toBeUndefined()
    expect(consumer.errors).toEqual([])
  })

  it('cursor=0 replays the whole window; a cursor in the window replays what follows it', async () => {
    const { relay, alice } = await setup()
    await posts(alice, 'p', 4)
    await waitFor(() => relay.ctx.outbox.stats().lastSeq === 7, 10_000, '7 events')

    const all = new RawConsumer(relay.url, 0)
    cleanups.push(() => all.close())
    await waitFor(() => all.seqs().length === 7, 15_000, 'replay from 0')
    expect(all.seqs()).toEqual([1, 2, 3, 4, 5, 6, 7])

    const tail = new RawConsumer(relay.url, 5)
    cleanups.push(() => tail.close())
    await waitFor(() => tail.seqs().length === 2, 15_000, 'replay from 5')
    await alice.emitPost('live')
    await waitFor(() => tail.seqs().length === 3, 15_000, 'live after replay')
    expect(tail.seqs()).toEqual([6, 7, 8])
    expect(tail.frames.every((f) => f.op === 1 && f.t !== '#info')).toBe(true)

    const live = new RawConsumer(relay.url)
    cleanups.push(() => live.close())
    await live.opened
    await waitFor(() => relay.ctx.outbox.server.consumers().length === 3, 15_000, 'three consumers')
    await alice.emitPost('live-2')
    await waitFor(() => live.seqs().length === 1, 15_000, 'live only')
    expect(live.seqs()).toEqual([9])
  })

  it('a cursor older than the window gets #info OutdatedCursor, then the whole window', async () => {
    // a byte budget that holds only the last few events
    const { relay, alice } = await setup({ RELAY_REPLAY_MAX_BYTES: '3000' })
    await posts(alice, 'p', 10)
    await waitFor(() => relay.ctx.outbox.stats().lastSeq === 13, 10_000, '13 events')
    relay.ctx.outbox.prune()
    const earliest = await relay.ctx.outbox.log.earliestSeq()
    expect(earliest).toBeGreaterThan(3)
    expect(relay.ctx.outbox.stats().bytes).toBeLessThanOrEqual(3000)

    const c = new RawConsumer(relay.url, 2)
    cleanups.push(() => c.close())
    await waitFor(() => c.seqs().at(-1) === 13, 15_000, 'replay to 13')
    const first = c.frames[0]!
    expect(first).toMatchObject({ op: 1, t: '#info', body: { name: 'OutdatedCursor' } })
    expect(c.seqs()).toEqual(Array.from({ length: 13 - earliest! + 1 }, (_, i) => earliest! + i))
  })

  it('a cursor beyond the latest seq gets the error frame FutureCursor and is closed', async () => {
    const { relay, alice } = await setup()
    await posts(alice, 'p', 2)
    await waitFor(() => relay.ctx.outbox.stats().lastSeq === 5, 10_000, '5 events')
    const c = new RawConsumer(relay.url, 50)
    const closed = await c.closed
    expect(c.frames).toEqual([{ op: -1, error: 'FutureCursor', message: expect.any(String) }])
    expect(closed.code).not.toBe(1006)
  })

  it('a consumer that does not read is cut with ConsumerTooSlow; the others get everything', async () => {
    const { plc, relay, alice } = await setup({ RELAY_CONSUMER_MAX_QUEUED_BYTES: String(1024 * 1024) })
    const fast = new FirehoseConsumer(relay.url, plc.url, { cursor: 0 })
    cleanups.push(() => fast.close())
    const slow = new RawConsumer(relay.url)
    cleanups.push(() => slow.close())
    await slow.opened
    await waitFor(() => relay.ctx.outbox.server.consumers().length === 2, 15_000, 'two consumers')
    slow.ws.pause()

    const pad = 'z'.repeat(600_000)
    const sent: string[] = []
    let cut = false
    for (let i = 0; i < 80 && !cut; i++) {
      sent.push(`big-${i}`)
      await alice.emitPost(`big-${i}`, { pad })
      await fast.waitForText(`big-${i}`, 20_000)
      cut = relay.ctx.outbox.server.consumers().length === 1
    }
    expect(cut).toBe(true)
    // the others go on
    await alice.emitPost('after-cut')
    await fast.waitForText('after-cut')
    expect(fast.texts()).toEqual([...sent, 'after-cut'])

    slow.ws.resume()
    await slow.closed
    const last = slow.frames.at(-1)
    expect(last).toEqual({ op: -1, error: 'ConsumerTooSlow', message: expect.any(String) })
    const seqs = slow.seqs()
    expect(seqs.length).toBeGreaterThan(0)
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1]! + 1)
    const metrics = await (await fetch(`${relay.url}/metrics`)).text()
    expect(metrics).toMatch(/relay_consumer_disconnects_total\{reason="ConsumerTooSlow"\} 1/)
  }, 120_000)
})
