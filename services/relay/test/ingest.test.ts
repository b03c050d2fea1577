/**
 * Verification of upstream events: a fake PDS sends valid and tampered events; tampered ones are dropped and
 * counted under their reason, never reach a consumer (an @atproto/sync Firehose with verification on), and
 * the relay keeps serving.
 */
import { Secp256k1Keypair } from '@atproto/crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CID, cidForCbor } from '@stratos/core/data'
import { readCarSync, writeCar } from '@stratos/core/repo'
import { encodeMessageFrame } from '@stratos/core/stream'
import type { RelayServer } from '../src/index.js'
import {
  FakePds,
  FakePlc,
  FirehoseConsumer,
  adminHeaders,
  createWrite,
  deleteWrite,
  droppedCounts,
  holdVerifications,
  nextRkey,
  now,
  post,
  relayNetwork,
  rewriteCommit,
  updateWrite,
  waitFor,
  xrpcGet,
  xrpcPost,
  type FakeAccount,
} from './helpers.js'

let plc: FakePlc
let pds: FakePds
let relay: RelayServer
let consumer: FirehoseConsumer
let alice: FakeAccount

let net: Awaited<ReturnType<typeof relayNetwork>>

beforeAll(async () => {
  net = await relayNetwork({}, ['a1'])
  ;({ plc, pds, relay, consumer } = net)
  alice = net.accounts[0]!
})

afterAll(async () => {
  await net?.close()
})

async function expectDropped(reason: string, count: number): Promise<void> {
  await waitFor(async () => ((await droppedCounts(relay.url))[reason] ?? 0) >= count, 10_000, `${count} drop(s) for ${reason}`)
  expect((await droppedCounts(relay.url))[reason]).toBe(count)
}

describe('ingest and verification', () => {
  it('verifies in the mode RELAY_VERIFY_WORKERS asks for (worker threads by default, in-thread with 0)', () => {
    const inline = process.env.RELAY_VERIFY_WORKERS === '0'
    expect(relay.ctx.verifier.workers).toBe(inline ? 0 : relay.config.verifyWorkers)
    if (!inline) expect(relay.ctx.verifier.workers).toBeGreaterThan(0)
  })

  it('forwards valid events of a new account, verified by the Firehose consumer, in order', async () => {
    await alice.emitPost('a2')
    const { evt } = await alice.commit([updateWrite(alice.lastRkey(), post('a2 edited')), createWrite(nextRkey(), post('a3'))])
    pds.emit('#commit', evt as unknown as Record<string, unknown>)
    await consumer.waitForText('a3')
    expect(consumer.texts()).toEqual(['a1', 'a2', 'a3'])
    const updates = consumer.events.filter((e) => e.event === 'update')
    expect(updates.map((e) => (e as unknown as { record: { text: string } }).record.text)).toEqual(['a2 edited'])
    const kinds = consumer.events.map((e) => e.event)
    expect(kinds.slice(0, 3)).toEqual(['identity', 'account', 'create'])
    // relay seqs are its own, strictly increasing
    const seqs = consumer.events.map((e) => e.seq)
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThanOrEqual(seqs[i - 1]!)
    expect(consumer.errors).toEqual([])

    const latest = await xrpcGet(relay.url, 'com.atproto.sync.getLatestCommit', { did: alice.did })
    expect(latest.status).toBe(200)
    expect(latest.body).toEqual({ cid: evt.commit.toString(), rev: evt.rev })
  })

  it('drops a commit with a corrupted signature and one signed by a key that is not the account’s', async () => {
    const base = await droppedCounts(relay.url)
    expect(base['bad-signature']).toBeUndefined()

    const good = await alice.commit([createWrite(nextRkey(), post('tampered-sig'))], { apply: false })
    const corrupted = await rewriteCommit(good.evt, {
      editSig: (sig) => {
        const out = sig.slice()
        out[10] ^= 0xff
        return out
      },
    })
    pds.emit('#commit', corrupted as unknown as Record<string, unknown>)

    const otherKey = await Secp256k1Keypair.create()
    const foreign = await alice.commit([createWrite(nextRkey(), post('foreign-key'))], { apply: false, keypair: otherKey })
    pds.emit('#commit', foreign.evt as unknown as Record<string, unknown>)

    await expectDropped('bad-signature', 2)
    await alice.emitPost('after-bad-sig')
    await consumer.waitForText('after-bad-sig')
    expect(consumer.texts()).not.toContain('tampered-sig')
    expect(consumer.texts()).not.toContain('foreign-key')
  })

  it('drops ops that do not invert to prevData, and a replayed rev', async () => {
    const two = await alice.commit([createWrite(nextRkey(), post('partial-1')), createWrite(nextRkey(), post('partial-2'))], {
      apply: false,
    })
    pds.emit('#commit', { ...two.evt, ops: two.evt.ops.slice(0, 1) } as unknown as Record<string, unknown>)

    // an update whose prev is not what the record held before
    const wrongPrev = await alice.commit([updateWrite(alice.lastRkey(), post('wrong-prev'))], { apply: false })
    const op = wrongPrev.evt.ops[0]!
    expect(op.action).toBe('update')
    pds.emit('#commit', {
      ...wrongPrev.evt,
      ops: [{ ...op, prev: cidForCbor(post('never existed')) }],
    } as unknown as Record<string, unknown>)
    await expectDropped('inversion-mismatch', 2)

    const accepted = await alice.emitPost('accepted-once')
    await consumer.waitForText('accepted-once')
    pds.emit('#commit', { ...accepted, time: now() } as unknown as Record<string, unknown>)
    await expectDropped('rev-not-newer', 1)
    await alice.emitPost('after-replay')
    await consumer.waitForText('after-replay')
    expect(consumer.texts().filter((t) => t === 'accepted-once')).toHaveLength(1)
    expect(consumer.texts()).not.toContain('partial-1')
    expect(consumer.texts()).not.toContain('wrong-prev')
  })

  it('drops oversized blocks and records over the size limit', async () => {
    const chunk = 'x'.repeat(700_000)
    const big = await alice.commit(
      [createWrite(nextRkey(), post('big-1', { pad: chunk })), createWrite(nextRkey(), post('big-2', { pad: chunk })), createWrite(nextRkey(), post('big-3', { pad: chunk }))],
      { apply: false },
    )
    expect(big.evt.blocks.byteLength).toBeGreaterThan(2_000_000)
    pds.emit('#commit', big.evt as unknown as Record<string, unknown>)
    await expectDropped('blocks-too-big', 1)

    const huge = await alice.commit([createWrite(nextRkey(), post('huge-record', { pad: 'y'.repeat(1_100_000) }))], { apply: false })
    expect(huge.evt.blocks.byteLength).toBeLessThan(2_000_000)
    pds.emit('#commit', huge.evt as unknown as Record<string, unknown>)
    await expectDropped('record-too-big', 1)

    await alice.emitPost('after-big')
    await consumer.waitForText('after-big')
    expect(consumer.texts()).not.toContain('big-1')
    expect(consumer.texts()).not.toContain('huge-record')
  })

  it('drops events of an account whose DID document points at another host', async () => {
    const bob = await pds.createAccount()
    plc.set(bob.did, { signingKey: bob.keypair.did(), pds: 'https://elsewhere.example.com' })
    await pds.announce(bob)
    await bob.emitPost('bob-elsewhere')
    // #identity, #account and two #commits
    await expectDropped('wrong-host', 4)
    await alice.emitPost('after-wrong-host')
    await consumer.waitForText('after-wrong-host')
    expect(consumer.texts()).not.toContain('bob-elsewhere')
    expect(consumer.events.some((e) => 'did' in e && e.did === bob.did)).toBe(false)
    const status = await xrpcGet(relay.url, 'com.atproto.sync.getRepoStatus', { did: bob.did })
    expect(status.status).toBe(400)
    expect(status.body.error).toBe('RepoNotFound')
  })

  it('drops the connection on malformed CBOR and on a truncated frame, and resumes without loss', async () => {
    const connects = pds.connects
    // a header that is not a map
    pds.emitRaw(new Uint8Array([0x82, 0x01, 0x02, 0xa1, 0x61, 0x61, 0x01]))
    await expectDropped('malformed-frame', 1)
    await waitFor(() => pds.connects > connects && pds.sockets.size > 0, 10_000, 'reconnect')
    await alice.emitPost('after-malformed')
    await consumer.waitForText('after-malformed')

    const connects2 = pds.connects
    const frame = encodeMessageFrame('#identity', { seq: pds.seq + 1, did: alice.did, time: now() })
    pds.emitRaw(frame.subarray(0, frame.length - 5))
    await expectDropped('truncated-frame', 1)
    await waitFor(() => pds.connects > connects2 && pds.sockets.size > 0, 10_000, 'reconnect')
    await alice.emitPost('after-truncated')
    await consumer.waitForText('after-truncated')

    // nothing was processed twice: resuming from the persisted cursor re-sent no processed event
    expect((await droppedCounts(relay.url))['rev-not-newer']).toBe(1)
    const health = await xrpcGet(relay.url, '_health')
    expect(health.status).toBe(200)
  })

  it('a broken commit chain desynchronizes the account; it is resynced from the PDS and announced with #sync', async () => {
    // a commit the relay never sees
    await alice.commit([createWrite(nextRkey(), post('unseen'))])
    const next = await alice.emitPost('after-gap')
    await expectDropped('chain-break', 1)
    await waitFor(() => consumer.events.some((e) => e.event === 'sync'), 10_000, '#sync')
    const sync = consumer.events.find((e) => e.event === 'sync')!
    expect(sync).toMatchObject({ did: alice.did, rev: next.rev })
    expect((sync as unknown as { cid: CID }).cid.toString()).toBe(next.commit.toString())
    expect(pds.getRepoCalls).toBe(1)
    expect(consumer.texts()).not.toContain('after-gap')

    const status = await xrpcGet(relay.url, 'com.atproto.sync.getRepoStatus', { did: alice.did })
    expect(status.body).toEqual({ did: alice.did, active: true, rev: next.rev })
    // the chain goes on from the resynced state
    await alice.emitPost('after-resync')
    await consumer.waitForText('after-resync')
  })

  it('deletes pass through; #account deactivation stops commits until reactivation', async () => {
    const { evt } = await alice.commit([deleteWrite(alice.lastRkey())])
    pds.emit('#commit', evt as unknown as Record<string, unknown>)
    await waitFor(() => consumer.events.some((e) => e.event === 'delete'), 10_000, 'delete')

    pds.emit('#account', { did: alice.did, active: false, status: 'deactivated', time: now() })
    await waitFor(
      () => consumer.events.some((e) => e.event === 'account' && !e.active && e.status === 'deactivated'),
      10_000,
      '#account deactivated',
    )
    pds.emit('#commit', (await alice.commit([createWrite(nextRkey(), post('while-deactivated'))], { apply: false })).evt as never)
    await expectDropped('account-inactive', 1)
    const status = await xrpcGet(relay.url, 'com.atproto.sync.getRepoStatus', { did: alice.did })
    expect(status.body).toEqual({ did: alice.did, active: false, status: 'deactivated' })
    const latest = await xrpcGet(relay.url, 'com.atproto.sync.getLatestCommit', { did: alice.did })
    expect(latest.body.error).toBe('RepoDeactivated')

    pds.emit('#account', { did: alice.did, active: true, time: now() })
    await alice.emitPost('reactivated')
    await consumer.waitForText('reactivated')
    expect(consumer.texts()).not.toContain('while-deactivated')
  })

  it('an operator takedown overrides the upstream status until restored', async () => {
    const down = await xrpcPost(relay.url, 'com.stratos.relay.admin.takedownAccount', { did: alice.did }, adminHeaders())
    expect(down.status).toBe(200)
    expect(down.body).toMatchObject({ did: alice.did, active: false, status: 'takendown', takedown: true })
    await waitFor(() => consumer.events.some((e) => e.event === 'account' && e.status === 'takendown'), 10_000, 'takedown')
    await alice.emitPost('while-takendown')
    await expectDropped('account-takendown', 1)
    expect((await xrpcGet(relay.url, 'com.atproto.sync.getLatestCommit', { did: alice.did })).body.error).toBe('RepoTakendown')

    const up = await xrpcPost(relay.url, 'com.stratos.relay.admin.restoreAccount', { did: alice.did }, adminHeaders())
    expect(up.body).toMatchObject({ active: true, takedown: false })
    const takedownAt = consumer.events.findIndex((e) => e.event === 'account' && e.status === 'takendown')
    await waitFor(() => consumer.events.length > takedownAt + 1, 10_000, '#account after restore')
    expect(consumer.events[takedownAt + 1]).toMatchObject({ event: 'account', did: alice.did, active: true })
    // the commit made while taken down was dropped; the chain continues from the state the relay holds
    await alice.emitPost('restored')
    await expectDropped('chain-break', 2)
    await waitFor(() => consumer.events.filter((e) => e.event === 'sync').length === 2, 10_000, 'second #sync')
    expect(consumer.texts()).not.toContain('while-takendown')
  })

  it('picks up a rotated signing key after one refresh of the DID document', async () => {
    const newKey = await Secp256k1Keypair.create()
    plc.set(alice.did, { signingKey: newKey.did(), pds: pds.url })
    const { evt } = await alice.commit([createWrite(nextRkey(), post('signed-with-new-key'))], { keypair: newKey })
    pds.emit('#commit', evt as unknown as Record<string, unknown>)
    await consumer.waitForText('signed-with-new-key')
    // the old key no longer verifies
    const old = await alice.commit([createWrite(nextRkey(), post('signed-with-old-key'))], { apply: false })
    pds.emit('#commit', old.evt as unknown as Record<string, unknown>)
    await expectDropped('bad-signature', 3)
    plc.set(alice.did, { signingKey: alice.keypair.did(), pds: pds.url })
    pds.emit('#identity', { did: alice.did, time: now() })
    await alice.emitPost('old-key-again')
    await consumer.waitForText('old-key-again')
  })

  it('#sync: a state the relay holds is ignored; a new one is verified, stored and forwarded', async () => {
    const syncsBefore = consumer.events.filter((e) => e.event === 'sync').length
    const syncBody = () => {
      const cid = CID.decode(alice.repo.cid.bytes)
      const bytes = alice.storage.blocks.get(alice.repo.cid)!
      return { did: alice.did, rev: alice.repo.commit.rev, blocks: writeCar(cid, [[cid, bytes]]), time: now() }
    }
    pds.emit('#sync', syncBody())
    await alice.emitPost('after-same-sync')
    await consumer.waitForText('after-same-sync')
    expect(consumer.events.filter((e) => e.event === 'sync').length).toBe(syncsBefore)

    await alice.commit([createWrite(nextRkey(), post('skipped-by-sync'))])
    const body = syncBody()
    pds.emit('#sync', body)
    await waitFor(() => consumer.events.filter((e) => e.event === 'sync').length === syncsBefore + 1, 10_000, '#sync')
    expect(consumer.events.at(-1)).toMatchObject({ event: 'sync', did: alice.did, rev: body.rev })
    // the next commit chains on the synced state
    await alice.emitPost('after-sync')
    await consumer.waitForText('after-sync')
    // a #sync signed by another key is refused
    const forged = await rewriteCommit({ ...(await alice.commit([], { apply: false })).evt }, { keypair: await Secp256k1Keypair.create() })
    const car = readCarSync(forged.blocks)
    pds.emit('#sync', { did: alice.did, rev: forged.rev, blocks: writeCar(forged.commit, [[forged.commit, car.blocks.get(forged.commit as never)!]]), time: now() })
    await expectDropped('bad-signature', 4)
  })

  it('a deleted account (tombstoned DID) is announced by its host; later events for it are dropped', async () => {
    const carol = await pds.createAccount()
    await pds.announce(carol)
    await carol.emitPost('carol-1')
    await consumer.waitForText('carol-1')
    plc.set(carol.did, 'tombstone')
    pds.emit('#account', { did: carol.did, active: false, status: 'deleted', time: now() })
    await waitFor(() => consumer.events.some((e) => e.event === 'account' && e.did === carol.did && e.status === 'deleted'), 10_000, 'deleted')
    pds.emit('#commit', (await carol.commit([createWrite(nextRkey(), post('carol-after-delete'))], { apply: false })).evt as never)
    await expectDropped('account-inactive', 2)
    const status = await xrpcGet(relay.url, 'com.atproto.sync.getRepoStatus', { did: carol.did })
    expect(status.body).toEqual({ did: carol.did, active: false, status: 'deleted' })
  })

  it('counts every drop under its reason in /metrics and never forwarded a tampered event', async () => {
    const counts = await droppedCounts(relay.url)
    expect(counts).toMatchObject({
      'bad-signature': 4,
      'inversion-mismatch': 2,
      'rev-not-newer': 1,
      'blocks-too-big': 1,
      'record-too-big': 1,
      'wrong-host': 4,
      'malformed-frame': 1,
      'truncated-frame': 1,
      'chain-break': 2,
      'account-inactive': 2,
      'account-takendown': 1,
    })
    const forbidden = ['tampered-sig', 'foreign-key', 'partial-1', 'partial-2', 'wrong-prev', 'big-1', 'huge-record', 'bob-elsewhere', 'after-gap', 'while-deactivated', 'while-takendown', 'signed-with-old-key', 'carol-after-delete']
    for (const t of forbidden) expect(consumer.texts()).not.toContain(t)
    expect(consumer.errors).toEqual([])
  })

  it('pipelines an account’s commits: a burst with tampered events in it is judged against the last good state', async () => {
    const base = await droppedCounts(relay.url)
    const g1 = await alice.commit([createWrite(nextRkey(), post('burst-1'))])
    const bad = await alice.commit([createWrite(nextRkey(), post('burst-bad'))], { apply: false })
    const corrupted = await rewriteCommit(bad.evt, {
      editSig: (sig) => {
        const out = sig.slice()
        out[5] ^= 0xff
        return out
      },
    })
    const g2 = await alice.commit([createWrite(nextRkey(), post('burst-2'))])
    const g3 = await alice.commit([createWrite(nextRkey(), post('burst-3'))])
    // back to back: each is verified while the previous one is still being written
    for (const e of [g1.evt, corrupted, g2.evt, { ...g1.evt, time: now() }, g3.evt]) pds.emit('#commit', e as unknown as Record<string, unknown>)
    await consumer.waitForText('burst-3')
    await expectDropped('bad-signature', (base['bad-signature'] ?? 0) + 1)
    await expectDropped('rev-not-newer', (base['rev-not-newer'] ?? 0) + 1)
    const texts = consumer.texts()
    expect(texts.slice(-3)).toEqual(['burst-1', 'burst-2', 'burst-3'])
    expect(texts).not.toContain('burst-bad')
    const latest = await xrpcGet(relay.url, 'com.atproto.sync.getLatestCommit', { did: alice.did })
    expect(latest.body).toEqual({ cid: g3.evt.commit.toString(), rev: g3.evt.rev })
  })

  it('verifies an account’s next commits while its previous one is still being verified, and forwards them in order', async () => {
    // the first verification of the burst is held back: the next ones are asked for meanwhile
    const held = holdVerifications(relay, (did, n) => did === alice.did && n === 1)
    try {
      const burst = [
        await alice.commit([createWrite(nextRkey(), post('pipelined-1'))]),
        await alice.commit([createWrite(nextRkey(), post('pipelined-2'))]),
        await alice.commit([createWrite(nextRkey(), post('pipelined-3'))]),
      ]
      for (const c of burst) pds.emit('#commit', c.evt as unknown as Record<string, unknown>)
      await waitFor(() => held.asked.length >= 3, 4_000, 'the verification of the commits after the held one')
      // the first against the stored state, the next ones against the state they claim (the one before them)
      expect(held.asked.map((a) => (a.claimed ? 'claimed' : 'state'))).toEqual(['state', 'claimed', 'claimed'])
      expect(consumer.texts()).not.toContain('pipelined-2')
      held.release()
      await consumer.waitForText('pipelined-3')
      expect(consumer.texts().slice(-3)).toEqual(['pipelined-1', 'pipelined-2', 'pipelined-3'])
      const latest = await xrpcGet(relay.url, 'com.atproto.sync.getLatestCommit', { did: alice.did })
      expect(latest.body).toEqual({ cid: burst[2]!.evt.commit.toString(), rev: burst[2]!.evt.rev })
    } finally {
      held.restore()
    }
  })

  it('a failed write resets the account to its stored state: no commit chained to the lost one is stored or forwarded', async () => {
    const base = await droppedCounts(relay.url)
    const accounts = relay.ctx.accounts
    const before = accounts.get(alice.did)!
    const original = accounts.setRepoState.bind(accounts)
    let failures = 1
    // a wide group-commit window, so the three commits are verified (each against the previous one's state)
    // before the first is written, and share its transaction
    const outboxOpts = (relay.ctx.outbox as unknown as { opts: { batchDelayMs?: number } }).opts
    const delay = outboxOpts.batchDelayMs
    outboxOpts.batchDelayMs = 500
    accounts.setRepoState = (did, st) => {
      if (did === alice.did && failures-- > 0) throw new Error('simulated write failure')
      original(did, st)
    }
    try {
      const lost = [
        await alice.commit([createWrite(nextRkey(), post('lost-1'))]),
        await alice.commit([createWrite(nextRkey(), post('lost-2'))]),
        await alice.commit([createWrite(nextRkey(), post('lost-3'))]),
      ]
      for (const c of lost) pds.emit('#commit', c.evt as unknown as Record<string, unknown>)
      const dropsOf = async (reasons: string[]) => {
        const d = await droppedCounts(relay.url)
        return reasons.reduce((n, r) => n + (d[r] ?? 0) - (base[r] ?? 0), 0)
      }
      // lost-1: its write fails; lost-2 and lost-3 chain to it: dropped (chain-break, or rev-not-newer once a
      // resync has stored the PDS's newer repo)
      await waitFor(async () => (await dropsOf(['internal-error', 'chain-break', 'rev-not-newer'])) >= 3, 10_000, '3 drops')
      await relay.ctx.ingester.queue.idle()
      expect(await dropsOf(['internal-error'])).toBe(1)
      expect(await dropsOf(['chain-break'])).toBeGreaterThanOrEqual(1)
      expect(await dropsOf(['chain-break', 'rev-not-newer'])).toBe(2)
      expect(consumer.texts().filter((t) => t.startsWith('lost-'))).toEqual([])
      // what is stored is what consumers were told: the state before lost-1, or a #sync's
      const stored = accounts.get(alice.did)!
      if (stored.rev !== before.rev) {
        await waitFor(() => consumer.events.some((e) => e.event === 'sync' && (e as unknown as { rev: string }).rev === stored.rev), 10_000, '#sync')
        expect(stored.syncStatus).toBe('synchronized')
      } else {
        expect(stored.dataCid).toBe(before.dataCid)
      }
    } finally {
      accounts.setRepoState = original
      outboxOpts.batchDelayMs = delay
    }
    const health = await xrpcGet(relay.url, '_health')
    expect(health.status).toBe(200)
  })
})
