/**
 * The event log's WAL fdatasync failing (injected): the relay must not go on as if the events it covers were
 * durable. Nothing of them reaches a consumer, the host cursor has not passed them when the fatal handler
 * (in production: log and `process.exit(1)`, crash-only, so nothing runs after it) is called, once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RelayServer } from '../src/index.js'
import {
  FakeAccount,
  FakePds,
  FakePlc,
  FirehoseConsumer,
  relayConfig,
  startRelay,
  tmpDir,
  waitFor,
  xrpcPost,
} from './helpers.js'

let plc: FakePlc
let pds: FakePds
let relay: RelayServer
let consumer: FirehoseConsumer
let dir: ReturnType<typeof tmpDir>
let alice: FakeAccount
let failSync = false
let syncCalls = 0
const fatal: unknown[] = []
/** at the fatal handler's call (in production the process exits inside it): the host's live and saved cursors */
let cursorsAtFatal: { live?: number; saved?: number } = {}

beforeAll(async () => {
  dir = tmpDir()
  plc = await new FakePlc().start()
  pds = await new FakePds(plc).start()
  relay = await startRelay(relayConfig(dir.path, plc.url), {
    eventLogSync: async () => {
      syncCalls++
      if (failSync) throw new Error('EIO: injected fdatasync failure')
    },
    onFatal: (err) => {
      fatal.push(err)
      const host = relay.ctx.hosts.get(pds.hostname)
      cursorsAtFatal = { live: relay.ctx.slurper.cursorOf(host!.id), saved: host!.cursor }
    },
  })
  consumer = new FirehoseConsumer(relay.url, plc.url)
  alice = await pds.createAccount()
  await pds.announce(alice)
  await alice.emitPost('before')
  const crawl = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.url })
  expect(crawl.status).toBe(200)
  await consumer.waitForText('before')
})

afterAll(async () => {
  await consumer?.close()
  await relay?.close().catch(() => undefined)
  await pds?.close()
  await plc?.close()
  dir?.remove()
})

describe('event log WAL sync failure', () => {
  it('publishes nothing it covers, keeps the host cursor before it, and calls the fatal handler once', async () => {
    const host = relay.ctx.hosts.get(pds.hostname)!
    const lastGood = pds.seq
    await waitFor(() => relay.ctx.slurper.cursorOf(host.id) === lastGood, 10_000, 'host cursor at the last forwarded event')
    expect(syncCalls).toBeGreaterThan(0)
    failSync = true
    await alice.emitPost('after')
    const failedSeq = pds.seq
    await waitFor(() => fatal.length > 0, 10_000, 'the fatal handler')
    expect((fatal[0] as Error).message).toMatch(/EIO: injected fdatasync failure/)
    // the event was committed to the log, never published
    expect(relay.ctx.outbox.log.lastAssignedSeq()).toBeGreaterThan(relay.ctx.outbox.publishedSeq)
    expect(consumer.texts()).toEqual(['before'])
    expect(cursorsAtFatal.live).toBe(lastGood)
    expect(cursorsAtFatal.saved).toBeLessThanOrEqual(lastGood)
    expect(lastGood).toBeLessThan(failedSeq)
    // (this test's handler does not exit) later events are refused, never published; the handler is not called again
    await expect(relay.ctx.outbox.emit('#identity', alice.did, { did: alice.did })).rejects.toThrow(/WAL sync failed/)
    expect(fatal).toHaveLength(1)
    expect(consumer.texts()).toEqual(['before'])
  })
})
