import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { generateKeypair, type SigningKeypair } from '@stratos/core/crypto'
import { cborDecodeMulti } from '@stratos/core/data'
import { concatChunks, verifyCommitEvent, verifyRepoCar, type CommitEvent } from '@stratos/core/repo'
import { ActorStore, prepareCreateOrUpdate, prepareDelete, type ActorRepo } from '../src/actor-store/index.js'
import { DiskBlobStore } from '../src/blobstore.js'
import { Sequencer } from '../src/sequencer/index.js'

const DID = 'did:plc:testactor0000000000000'

const post = (text: string, extra: Record<string, unknown> = {}) => ({
  $type: 'app.bsky.feed.post',
  text,
  createdAt: new Date().toISOString(),
  ...extra,
})

describe('actor store + sequencer', () => {
  let dir: string
  let store: ActorStore
  let repo: ActorRepo
  let key: SigningKeypair
  let sequencer: Sequencer
  let state: { rev: string; data: CID } | null = null

  /** Applies writes, sequences the commit, and checks the #commit with core's sync 1.1 verifier. */
  async function commit(writes: Parameters<ActorRepo['applyWrites']>[0], swap?: CID) {
    const outcome = await repo.applyWrites(writes, key, swap)
    const evt = sequencer.sequenceCommit(outcome)
    const [header, body] = cborDecodeMulti(evt.frame) as [Record<string, unknown>, CommitEvent & { seq: number }]
    expect(header).toEqual({ op: 1, t: '#commit' })
    expect(body.seq).toBe(evt.seq)
    const check = await verifyCommitEvent(body, { signingKey: key.did(), prev: state })
    if (!check.ok) throw new Error(`commit event failed verification: ${check.reason}: ${check.message}`)
    state = { rev: body.rev, data: check.newData }
    return { outcome, body }
  }

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-actor-'))
    const blobs = new DiskBlobStore(path.join(dir, 'blobs'), path.join(dir, 'blobs', 'temp'))
    await blobs.init()
    store = new ActorStore(path.join(dir, 'actors'), blobs)
    sequencer = new Sequencer(path.join(dir, 'seq.sqlite'))
    key = await generateKeypair()
    repo = store.create(DID)
    const init = await repo.createEmptyRepo(key)
    const head = repo.getHead()!
    expect(head.cid.toString()).toBe(init.cid.toString())
    state = { rev: head.rev, data: head.data }
  })
  afterAll(() => {
    store.close()
    sequencer.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('creates, updates and deletes records with verifiable #commit events', async () => {
    const a = prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', rkey: '3aaaaaaaaaa22', record: post('one') })
    const b = prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', rkey: '3aaaaaaaaab22', record: post('two') })
    expect(a.validationStatus).toBe('valid')
    const { body } = await commit([a, b])
    expect(body.ops.map((o) => [o.action, o.path])).toEqual([
      ['create', 'app.bsky.feed.post/3aaaaaaaaaa22'],
      ['create', 'app.bsky.feed.post/3aaaaaaaaab22'],
    ])
    expect(repo.getRecord('app.bsky.feed.post', '3aaaaaaaaaa22')?.value.text).toBe('one')

    const upd = prepareCreateOrUpdate({ action: 'update', did: DID, collection: 'app.bsky.feed.post', rkey: '3aaaaaaaaaa22', record: post('one, edited') })
    const u = await commit([upd])
    expect(u.body.ops[0]).toMatchObject({ action: 'update', prev: a.cid })
    const d = await commit([prepareDelete({ did: DID, collection: 'app.bsky.feed.post', rkey: '3aaaaaaaaab22' })])
    expect(d.body.ops[0]).toMatchObject({ action: 'delete', cid: null, prev: b.cid })
    expect(repo.getRecord('app.bsky.feed.post', '3aaaaaaaaab22')).toBeNull()
    expect(repo.listRecords({ collection: 'app.bsky.feed.post', limit: 10 }).map((r) => r.value?.text)).toEqual(['one, edited'])
  })

  it('refuses a stale swapCommit and a wrong swapRecord with InvalidSwap', async () => {
    const head = repo.getHead()!
    await commit([prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', record: post('three') })], head.cid)
    await expect(
      repo.applyWrites([prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', record: post('x') })], key, head.cid),
    ).rejects.toMatchObject({ error: 'InvalidSwap' })
    const current = repo.getRecordRow('app.bsky.feed.post', '3aaaaaaaaaa22')!
    await expect(
      repo.applyWrites(
        [prepareCreateOrUpdate({ action: 'update', did: DID, collection: 'app.bsky.feed.post', rkey: '3aaaaaaaaaa22', record: post('y'), swapCid: head.data })],
        key,
      ),
    ).rejects.toMatchObject({ error: 'InvalidSwap' })
    expect(repo.getRecordRow('app.bsky.feed.post', '3aaaaaaaaaa22')!.cid).toBe(current.cid)
  })

  it('validates known collections and reports unknown ones', () => {
    expect(() => prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 5 } })).toThrow(
      /Invalid app.bsky.feed.post record/,
    )
    const unknown = prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'com.example.thing', record: { $type: 'com.example.thing', n: 1 } })
    expect(unknown.validationStatus).toBe('unknown')
    expect(() =>
      prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'com.example.thing', record: { $type: 'com.example.thing' }, validate: true }),
    ).toThrow(/Lexicon not found/)
    const skipped = prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 5 }, validate: false })
    expect(skipped.validationStatus).toBeUndefined()
    expect(() => prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.like' } })).toThrow(/Invalid \$type/)
    expect(() => prepareCreateOrUpdate({ action: 'create', did: DID, collection: 'app.bsky.feed.post', record: post('f', { n: 1.5 }) })).toThrow(/float/)
  })

  it('keeps a blob temporary until a record references it, and drops it when dereferenced', async () => {
    const bytes = Buffer.from('hello blob '.repeat(100))
    const up = await store.blobstore.putTemp(Readable.from([bytes]), 1_000_000)
    await repo.trackUploadedBlob(up.key, up.cid, up.size, 'image/png')
    expect(repo.getBlob(up.cid.toString())?.tempKey).toBe(up.key)
    const blob = { $type: 'blob', ref: { $link: up.cid.toString() }, mimeType: 'image/png', size: up.size }
    const rec = prepareCreateOrUpdate({
      action: 'create',
      did: DID,
      collection: 'app.bsky.feed.post',
      rkey: '3aaaaaaaaac22',
      record: post('with image', { embed: { $type: 'app.bsky.embed.images', images: [{ image: blob, alt: 'x' }] } }),
    })
    await commit([rec])
    expect(repo.getBlob(up.cid.toString())?.tempKey).toBeNull()
    expect(Buffer.from((await store.blobstore.getBytes(DID, up.cid))!)).toEqual(bytes)
    expect(repo.listBlobs({ limit: 10 })).toEqual([up.cid.toString()])
    await commit([prepareDelete({ did: DID, collection: 'app.bsky.feed.post', rkey: '3aaaaaaaaac22' })])
    expect(repo.getBlob(up.cid.toString())).toBeNull()
    expect(await store.blobstore.getBytes(DID, up.cid)).toBeNull()

    const missing = prepareCreateOrUpdate({
      action: 'create',
      did: DID,
      collection: 'app.bsky.feed.post',
      record: post('ghost', { embed: { $type: 'app.bsky.embed.images', images: [{ image: blob, alt: 'x' }] } }),
    })
    await expect(repo.applyWrites([missing], key)).rejects.toMatchObject({ error: 'BlobNotFound' })
  })

  it('exports a CAR that verifies and holds exactly the listed records', async () => {
    const car = await concatChunks(repo.exportRepo())
    const verified = await verifyRepoCar(car, DID, key.did())
    const listed = repo.listRecords({ collection: 'app.bsky.feed.post', limit: 100 })
    expect(verified.records.map((r) => `${r.collection}/${r.rkey}`).sort()).toEqual(listed.map((r) => `app.bsky.feed.post/${r.rkey}`).sort())
  })

  it('assigns gap-free seqs that survive a reopen', () => {
    const last = sequencer.lastSeq()
    expect(last).toBeGreaterThan(3)
    const rows = sequencer.log.readRowsAfter(0, 1000)
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: last }, (_, i) => i + 1))
    const reopened = new Sequencer(path.join(dir, 'seq.sqlite'))
    expect(reopened.sequenceIdentity(DID, 'x.test').seq).toBe(last + 1)
    reopened.close()
  })
})
