/**
 * The raw-frame path of live ingest (#commit frames read in place and verified from their bytes, in worker
 * threads) against the decoded path (frames decoded in the main thread, verified there) as the oracle: two
 * AppViews follow the same PDS, which publishes good commits and commits tampered with after signing
 * (ops, blocks, commit, rev, repo, an op's cid, a forged signature, an unknown field). Both must drop the same
 * commits for the same reasons, index the same rows, and go on with the stream after each refusal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Secp256k1Keypair } from '@atproto/crypto'
import { sql } from 'kysely'
import { cidForCbor } from '@stratos/core/data'
import { nextTid } from '@stratos/core/syntax'
import type { AppViewServer } from '../src/server.js'
import { FakeNetwork, caughtUp, like, post, startAppView, testDb, type Json, type TestDb } from './helpers.js'

async function dump(server: AppViewServer): Promise<Record<string, unknown[]>> {
  const q = async (text: string) => (await sql.raw(text).execute(server.ctx.db)).rows
  return {
    record: await q('SELECT uri, cid FROM record ORDER BY uri'),
    post: await q('SELECT uri, text FROM post ORDER BY uri'),
    like: await q('SELECT uri, subject FROM "like" ORDER BY uri'),
    repo_state: await q('SELECT did, rev, data FROM repo_state ORDER BY did'),
  }
}

describe('ingest: #commit frames read in place (raw) and decoded refuse the same commits', () => {
  let net: FakeNetwork
  let dbRaw: TestDb
  let dbDecoded: TestDb
  let raw: AppViewServer
  let decoded: AppViewServer

  beforeAll(async () => {
    net = await FakeNetwork.start()
    dbRaw = await testDb('sqlite')
    dbDecoded = await testDb('sqlite')
    raw = await startAppView(net, dbRaw, { verifyWorkers: 2 })
    decoded = await startAppView(net, dbDecoded, {}, { ingest: { rawFrames: false } })
  })

  afterAll(async () => {
    await raw?.close()
    await decoded?.close()
    await net?.close()
    await dbRaw?.cleanup()
    await dbDecoded?.cleanup()
  })

  const bothCaughtUp = async (seq?: number) => {
    await caughtUp(raw, net, seq)
    await caughtUp(decoded, net, seq)
  }

  it('tampered commits: the same drops for the same reasons, the stream goes on', async () => {
    const other = await net.createAccount('frames-other.test')
    const target = await net.create(other, 'app.bsky.feed.post', post('a post to like'))
    await bothCaughtUp(target.seq)
    const tampers: [string, (evt: Json) => void][] = [
      ['an op left out', (evt) => (evt.ops as unknown[]).pop()],
      ['blocks that are not a CAR', (evt) => (evt.blocks = new Uint8Array([1, 2, 3, 4]))],
      ['commit not a CID', (evt) => (evt.commit = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')],
      ['rev not a string', (evt) => (evt.rev = 42)],
      ['repo not a string', (evt) => (evt.repo = 12)],
      ['repo another DID', (evt) => (evt.repo = other.did)],
      ['an op with another record cid', (evt) => ((evt.ops as Json[])[0]!.cid = cidForCbor({ something: 'else' }))],
      ['an op with a cid that is a string', (evt) => ((evt.ops as Json[])[0]!.cid = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')],
      ['an op path not a string', (evt) => ((evt.ops as Json[])[0]!.path = 7)],
      ['an unknown action', (evt) => ((evt.ops as Json[])[0]!.action = 'upsert')],
      ['ops not an array', (evt) => (evt.ops = { 0: 'x' })],
      ['since not a string', (evt) => (evt.since = 5)],
      ['an unknown field (allowed)', (evt) => (evt.extra = { any: ['thing', 1] })],
    ]
    const rogue = await Secp256k1Keypair.create()
    const dropped = { raw: raw.ctx.ingester.stats.dropped, decoded: decoded.ctx.ingester.stats.dropped }
    let i = 0
    for (const [label, tamper] of [...tampers, ['a forged signature', () => undefined] as const]) {
      const acct = await net.createAccount(`frames${i++}.test`)
      const first = await net.create(acct, 'app.bsky.feed.post', post(`before: ${label}`))
      await bothCaughtUp(first.seq)
      const seq = await net.write(
        acct,
        [
          { action: 'create', collection: 'app.bsky.feed.post', rkey: nextTid(), record: { $type: 'app.bsky.feed.post', ...post(`tampered: ${label}`) } },
          { action: 'create', collection: 'app.bsky.feed.like', rkey: nextTid(), record: { $type: 'app.bsky.feed.like', ...like(target) } },
        ],
        label === 'a forged signature' ? { keypair: rogue } : { tamper },
      )
      await bothCaughtUp(seq)
      expect(Object.fromEntries(raw.ctx.ingester.dropReasons), label).toEqual(Object.fromEntries(decoded.ctx.ingester.dropReasons))
      expect(await dump(raw), label).toEqual(await dump(decoded))
    }
    // every tampered commit but the one with an unknown field was refused (the same ones by both)
    expect(raw.ctx.ingester.stats.dropped - dropped.raw).toBe(tampers.length)
    expect(decoded.ctx.ingester.stats.dropped - dropped.decoded).toBe(tampers.length)
    const reasons = Object.keys(Object.fromEntries(raw.ctx.ingester.dropReasons))
    expect(reasons).toContain('malformed #commit')
    expect(reasons).toContain('commit rejected (bad-signature)')
    expect(reasons).toContain('commit rejected (inversion-mismatch)')
    expect(reasons.filter((r) => r.startsWith('commit rejected')).length).toBeGreaterThan(2)
    // and the stream went on: a good commit after them is indexed by both
    const last = await net.create(other, 'app.bsky.feed.post', post('after the tampered ones'))
    await bothCaughtUp(last.seq)
    const after = await dump(raw)
    expect(after.post!.map((p) => (p as { uri: string }).uri)).toContain(last.uri)
    expect(after).toEqual(await dump(decoded))
    expect(raw.ctx.ingester.verifier?.workers).toBe(2)
  })
})
