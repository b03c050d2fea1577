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
  afterAll(async () => {
    store.close()
    await sequencer.close()
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

describe('actor store: importing a repo (com.atproto.repo.importRepo)', () => {
  const DID2 = 'did:plc:importtarget000000000000'
  let dir: string
  let source: ActorStore
  let target: ActorStore
  let oldKey: SigningKeypair
  let newKey: SigningKeypair

  const upload = async (s: ActorStore, repo: ActorRepo, text: string) => {
    const up = await s.blobstore.putTemp(Readable.from([Buffer.from(text)]), 1_000_000)
    await repo.trackUploadedBlob(up.key, up.cid, up.size, 'image/png')
    return { up, ref: { $type: 'blob', ref: { $link: up.cid.toString() }, mimeType: 'image/png', size: up.size } }
  }
  const withImage = (text: string, ref: unknown) =>
    post(text, { embed: { $type: 'app.bsky.embed.images', images: [{ image: ref, alt: 'x' }] } })
  const create = (collection: string, rkey: string, record: Record<string, unknown>) =>
    prepareCreateOrUpdate({ action: 'create', did: DID2, collection, rkey, record })

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-import-'))
    const open = async (name: string) => {
      const blobs = new DiskBlobStore(path.join(dir, name, 'blobs'), path.join(dir, name, 'blobs', 'temp'))
      await blobs.init()
      return new ActorStore(path.join(dir, name, 'actors'), blobs)
    }
    source = await open('old-pds')
    target = await open('new-pds')
    oldKey = await generateKeypair()
    newKey = await generateKeypair()
  })
  afterAll(() => {
    source.close()
    target.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('replaces the repo with the imported records, re-signed, indexing blobs and backlinks', async () => {
    // the account's repo on its old PDS: two posts with images (x, z), a like, a follow
    const src = source.create(DID2)
    await src.createEmptyRepo(oldKey)
    const x = await upload(source, src, 'blob x')
    const z = await upload(source, src, 'blob z')
    const p1 = create('app.bsky.feed.post', '3aaaaaaaaaa22', withImage('one', x.ref))
    const p2 = create('app.bsky.feed.post', '3aaaaaaaaab22', withImage('two', z.ref))
    await src.applyWrites([p1, p2], oldKey)
    const like = create('app.bsky.feed.like', '3aaaaaaaaac22', {
      $type: 'app.bsky.feed.like',
      subject: { uri: p1.uri, cid: p1.cid.toString() },
      createdAt: new Date().toISOString(),
    })
    await src.applyWrites([like, create('app.bsky.graph.follow', '3aaaaaaaaad22', { $type: 'app.bsky.graph.follow', subject: 'did:plc:zzzzzzzzzzzzzzzzzzzzzzzz', createdAt: new Date().toISOString() })], oldKey)
    const car = await concatChunks(src.exportRepo())
    const verified = await verifyRepoCar(car, DID2, oldKey.did())

    // the new PDS already holds something for the account: a record the import drops (with blob y),
    // a different record at p2's key, and blob x uploaded ahead of the import
    const dst = target.create(DID2)
    await dst.createEmptyRepo(newKey)
    const y = await upload(target, dst, 'blob y')
    await dst.applyWrites([create('app.bsky.feed.post', '3aaaaaaaaaz22', withImage('old', y.ref)), create('app.bsky.feed.post', '3aaaaaaaaab22', post('not two'))], newKey)
    const xEarly = await upload(target, dst, 'blob x')
    expect(dst.getBlob(x.up.cid.toString())?.tempKey).toBe(xEarly.up.key)
    const headBefore = dst.getHead()!

    const outcome = await dst.importRepo(verified, newKey)
    expect(outcome).toMatchObject({ records: 4, created: 3, updated: 1, deleted: 1, missingBlobs: 1 })

    // same tree and records, a new commit signed with the new key, later than both old heads
    const head = dst.getHead()!
    expect(head.data.equals(verified.commit.data)).toBe(true)
    expect(head.cid.equals(verified.commitCid)).toBe(false)
    expect(head.rev > verified.commit.rev && head.rev > headBefore.rev).toBe(true)
    const exported = await verifyRepoCar(await concatChunks(dst.exportRepo()), DID2, newKey.did())
    expect(exported.records.map((r) => [r.collection, r.rkey, r.cid.toString()])).toEqual(
      verified.records.map((r) => [r.collection, r.rkey, r.cid.toString()]),
    )
    await expect(verifyRepoCar(await concatChunks(dst.exportRepo()), DID2, oldKey.did())).rejects.toMatchObject({ reason: 'bad-signature' })
    const posts = dst.listRecords({ collection: 'app.bsky.feed.post', limit: 10 })
    expect(posts.map((r) => [r.rkey, (r.value as { text: string }).text])).toEqual([
      ['3aaaaaaaaab22', 'two'],
      ['3aaaaaaaaaa22', 'one'],
    ])
    expect(dst.getRecordRow('app.bsky.feed.post', '3aaaaaaaaaz22')).toBeNull()
    expect(dst.storage.stats().blocks).toBe(exported.blocks.size)

    // blobs: x (uploaded early) is now permanent, y (only the dropped record used it) is gone, z is missing
    expect(dst.getBlob(x.up.cid.toString())?.tempKey).toBeNull()
    expect(Buffer.from((await target.blobstore.getBytes(DID2, x.up.cid))!).toString()).toBe('blob x')
    expect(dst.getBlob(y.up.cid.toString())).toBeNull()
    expect(await target.blobstore.getBytes(DID2, y.up.cid)).toBeNull()
    expect(dst.listMissingBlobs({ limit: 10 })).toEqual([{ cid: z.up.cid.toString(), recordUri: p2.uri }])
    expect([dst.expectedBlobCount(), dst.importedBlobCount()]).toEqual([2, 1])
    // uploading z satisfies it at once (a record already uses it)
    await upload(target, dst, 'blob z')
    expect(dst.listMissingBlobs({ limit: 10 })).toEqual([])
    expect(dst.getBlob(z.up.cid.toString())?.tempKey).toBeNull()
    expect([dst.expectedBlobCount(), dst.importedBlobCount()]).toEqual([2, 2])

    // backlinks: a second like of p1 replaces the imported one
    expect(dst.backlinkConflicts('app.bsky.feed.like', [{ path: 'subject.uri', linkTo: p1.uri }])).toEqual([like.uri])

    // the next write follows the imported state: its #commit verifies against it (sync 1.1)
    const seq = new Sequencer(path.join(dir, 'seq.sqlite'))
    try {
      const out = await dst.applyWrites([create('app.bsky.feed.post', '3aaaaaaaaae22', post('after the move'))], newKey)
      const [, body] = cborDecodeMulti(seq.sequenceCommit(out).frame) as [unknown, CommitEvent]
      const check = await verifyCommitEvent(body, { signingKey: newKey.did(), prev: { rev: head.rev, data: head.data } })
      expect(check.ok).toBe(true)
    } finally {
      seq.close()
    }
  })

  it('refuses a repo of another DID', async () => {
    const other = source.create('did:plc:someoneelse0000000000000')
    await other.createEmptyRepo(oldKey)
    const verified = await verifyRepoCar(await concatChunks(other.exportRepo()), 'did:plc:someoneelse0000000000000', oldKey.did())
    await expect(target.get(DID2)!.importRepo(verified, newKey)).rejects.toThrow(/belongs to did:plc:someoneelse/)
  })
})

describe('actor store handle cache', () => {
  it('takes an evicted handle back instead of reopening, closes it once the pool is full, and keeps writing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-handles-'))
    try {
      const blobs = new DiskBlobStore(path.join(dir, 'blobs'), path.join(dir, 'blobs', 'temp'))
      await blobs.init()
      const store = new ActorStore(path.join(dir, 'actors'), blobs, 2)
      const key = await generateKeypair()
      const dids = Array.from({ length: 6 }, (_, i) => `did:plc:handlecache00000000000${i}`)
      for (const did of dids) await store.create(did).createEmptyRepo(key)
      // handles pushed out while creating are being closed (under their account's lock): let that finish
      await new Promise((r) => setTimeout(r, 300))
      const [a, b, c, d, e, f] = dids as [string, string, string, string, string, string]

      const first = store.get(a)!
      store.get(b)
      store.get(c) // a leaves the LRU of 2, parked
      expect(store.get(a)).toBe(first)
      expect(first.db.open).toBe(true)
      // a is pushed out of the pool of 2 and closed (its fsyncs on the thread pool). A handle whose account
      // has another handle closing (same lock) stays cached a moment longer: touch the others twice.
      for (const did of [b, c, d, e, f]) store.get(did)
      await new Promise((r) => setTimeout(r, 300))
      for (const did of [b, c, d, e, f]) store.get(did)
      for (let i = 0; i < 200 && first.db.open; i++) await new Promise((r) => setTimeout(r, 10))
      expect(first.db.open).toBe(false)
      // closed cleanly: the WAL was checkpointed into the database file and removed
      expect(fs.existsSync(`${first.db.name}-wal`)).toBe(false)
      const again = store.get(a)!
      expect(again).not.toBe(first)

      // round-robin writes over more accounts than handles, through the tree cache and reloads
      for (let round = 0; round < 3; round++) {
        for (const did of dids) {
          const w = prepareCreateOrUpdate({ action: 'create', did, collection: 'app.bsky.feed.post', rkey: `3aaaaaaaaa${'abc'[round]}22`, record: post(`round ${round}`) })
          await store.get(did)!.applyWrites([w], key)
        }
      }
      for (const did of dids) {
        expect(store.get(did)!.recordCount()).toBe(3)
        expect((await verifyRepoCar(await concatChunks(store.get(did)!.exportRepo()), did, key.did())).records).toHaveLength(3)
      }
      store.close()
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("starts a reopened store's new WAL with SQLite's syncs off for that commit only, and keeps the commit", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-newwal-'))
    try {
      const blobs = new DiskBlobStore(path.join(dir, 'blobs'), path.join(dir, 'blobs', 'temp'))
      await blobs.init()
      const key = await generateKeypair()
      const did = 'did:plc:newwal00000000000000000'
      const write = (rkey: string) =>
        prepareCreateOrUpdate({ action: 'create', did, collection: 'app.bsky.feed.post', rkey, record: post(rkey) })
      let store = new ActorStore(path.join(dir, 'actors'), blobs)
      await store.create(did).createEmptyRepo(key)
      await store.get(did)!.durable()
      await store.get(did)!.closeQuietly()
      store.close()

      for (const [rkey, next] of [['3aaaaaaaaaa22', '3aaaaaaaaac22'], ['3aaaaaaaaab22', '3aaaaaaaaad22']] as const) {
        store = new ActorStore(path.join(dir, 'actors'), blobs)
        const repo = store.get(did)!
        const wal = `${repo.db.name}-wal`
        // the last close removed the WAL; opening made it again, empty
        expect(fs.existsSync(wal) ? fs.statSync(wal).size : 0).toBe(0)
        await repo.applyWrites([write(rkey)], key)
        // synchronous = NORMAL (1) again right after the commit that started the WAL
        expect(repo.db.pragma('synchronous', { simple: true })).toBe(1)
        expect(fs.statSync(wal).size).toBeGreaterThan(0)
        const second = repo.applyWrites([write(next)], key)
        await Promise.all([repo.durable(), second.then(() => repo.durable())])
        expect(repo.db.pragma('synchronous', { simple: true })).toBe(1)
        await repo.closeQuietly()
        store.close()
      }
      store = new ActorStore(path.join(dir, 'actors'), blobs)
      expect(store.get(did)!.recordCount()).toBe(4)
      expect((await verifyRepoCar(await concatChunks(store.get(did)!.exportRepo()), did, key.did())).records).toHaveLength(4)
      store.close()
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  /** Two handles on one account's file, as two ActorStores (two connections); `a` has made one commit. */
  async function twoHandles(name: string, fn: (h: { a: ActorRepo; b: ActorRepo; key: SigningKeypair; did: string; write: (rkey: string) => ReturnType<typeof prepareCreateOrUpdate> }) => Promise<void>) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pds-${name}-`))
    try {
      const blobs = new DiskBlobStore(path.join(dir, 'blobs'), path.join(dir, 'blobs', 'temp'))
      await blobs.init()
      const key = await generateKeypair()
      const did = `did:plc:${name.padEnd(24, '0')}`
      const write = (rkey: string) =>
        prepareCreateOrUpdate({ action: 'create', did, collection: 'app.bsky.feed.post', rkey, record: post(rkey) })
      const one = new ActorStore(path.join(dir, 'actors'), blobs)
      const a = one.create(did)
      await a.createEmptyRepo(key)
      await a.applyWrites([write('3aaaaaaaaaa22')], key)
      const two = new ActorStore(path.join(dir, 'actors'), blobs)
      await fn({ a, b: two.get(did)!, key, did, write })
      await two.close()
      await one.close()
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }

  it('a commit starts from the stored head when another connection wrote to the store since this handle last did', async () => {
    await twoHandles('twohandles', async ({ a, b, key, did, write }) => {
      // b's commit moves the stored head
      await b.applyWrites([write('3aaaaaaaaab22')], key)
      // the first handle's kept tree is stale: its next commit must build on b's, not drop b's record
      const third = await a.applyWrites([write('3aaaaaaaaac22')], key)
      expect(third.ops.map((op) => op.path)).toEqual(['app.bsky.feed.post/3aaaaaaaaac22'])
      const verified = await verifyRepoCar(await concatChunks(a.exportRepo()), did, key.did())
      expect(verified.records.map((r) => r.rkey).sort()).toEqual(['3aaaaaaaaaa22', '3aaaaaaaaab22', '3aaaaaaaaac22'])
    })
  })

  it('a commit built while another connection commits to the store is made again from the stored head', async () => {
    await twoHandles('racinghandles', async ({ a, b, key, did, write }) => {
      // the second connection commits while the first is signing a commit built on the head it kept
      let raced = false
      const racingKey: SigningKeypair = Object.assign(Object.create(key) as SigningKeypair, {
        sign: async (msg: Uint8Array) => {
          if (!raced) {
            raced = true
            await b.applyWrites([write('3aaaaaaaaab22')], key)
          }
          return key.sign(msg)
        },
      })
      await a.applyWrites([write('3aaaaaaaaac22')], racingKey)
      expect(raced).toBe(true)
      const verified = await verifyRepoCar(await concatChunks(a.exportRepo()), did, key.did())
      expect(verified.records.map((r) => r.rkey).sort()).toEqual(['3aaaaaaaaaa22', '3aaaaaaaaab22', '3aaaaaaaaac22'])
      // a write refused on the first connection's kept head is checked against the stored one: b deletes a
      // record, a creates it again (and swaps on b's commit)
      const del = await b.applyWrites([prepareDelete({ did, collection: 'app.bsky.feed.post', rkey: '3aaaaaaaaaa22' })], key)
      const again = await a.applyWrites([write('3aaaaaaaaaa22')], key, del.commit.cid)
      expect(again.ops.map((op) => op.action)).toEqual(['create'])
    })
  })
})
