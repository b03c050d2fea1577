import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyRepoCar } from '@stratos/core/repo'
import { createTestAccount, startNetwork, xrpc, type TestNetwork } from './_network.js'

/**
 * PDS_WRITE_WORKERS=1: commits are built, signed and stored in a worker thread on a connection of its own,
 * while the main thread reads the same file through its handle (and its kept rows). Every write below is
 * read back right after it is acknowledged, and the repo verifies (signature, MST) at the end.
 */
describe('commits made in a worker thread', () => {
  let net: TestNetwork
  let did: string
  let token: string
  const coll = 'app.bsky.feed.post'
  const record = (text: string) => ({ $type: coll, text, createdAt: new Date().toISOString() })
  const getRecord = (rkey: string) => xrpc(net.url, 'com.atproto.repo.getRecord', { params: { repo: did, collection: coll, rkey } })
  const call = (nsid: string, body: Record<string, unknown>) => xrpc(net.url, nsid, { token, body: { repo: did, ...body } })
  const workers = () => net.pds.ctx.actorStore.commitWorkers!

  beforeAll(async () => {
    net = await startNetwork({ PDS_WRITE_WORKERS: '1' })
    ;({ did, token } = await createTestAccount(net.url, 'worker'))
  })
  afterAll(() => net?.close())

  it('creates, updates and deletes records there; each read after the write sees it', async () => {
    expect(workers()).toBeTruthy()
    const before = workers().commits
    expect((await getRecord('3kworkerrkey2')).status).toBe(400)
    const created = await call('com.atproto.repo.createRecord', { collection: coll, rkey: '3kworkerrkey2', record: record('one') })
    expect(created.status).toBe(200)
    expect((await getRecord('3kworkerrkey2')).body).toMatchObject({ cid: created.body.cid, value: { text: 'one' } })
    const put = await call('com.atproto.repo.putRecord', { collection: coll, rkey: '3kworkerrkey2', record: record('two') })
    expect(put.status).toBe(200)
    expect((await getRecord('3kworkerrkey2')).body).toMatchObject({ cid: put.body.cid, value: { text: 'two' } })
    const applied = await call('com.atproto.repo.applyWrites', {
      writes: [
        { $type: 'com.atproto.repo.applyWrites#create', collection: coll, rkey: '3kworkerrkey3', value: record('three') },
        { $type: 'com.atproto.repo.applyWrites#delete', collection: coll, rkey: '3kworkerrkey2' },
      ],
    })
    expect(applied.status).toBe(200)
    expect((await getRecord('3kworkerrkey2')).status).toBe(400)
    expect((await getRecord('3kworkerrkey3')).body).toMatchObject({ value: { text: 'three' } })
    expect(workers().commits - before).toBe(3)

    const latest = await xrpc(net.url, 'com.atproto.sync.getLatestCommit', { params: { did } })
    expect(latest.body).toEqual(applied.body.commit)
  })

  it('refuses stale swaps and existing records with the errors of the main thread', async () => {
    const first = await call('com.atproto.repo.createRecord', { collection: coll, record: record('swap') })
    const rkey = first.body.uri.split('/').pop()
    const staleCommit = await call('com.atproto.repo.createRecord', { collection: coll, record: record('x'), swapCommit: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' })
    expect(staleCommit.status).toBe(400)
    expect(staleCommit.body.error).toBe('InvalidSwap')
    const staleRecord = await call('com.atproto.repo.putRecord', { collection: coll, rkey, record: record('y'), swapRecord: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' })
    expect(staleRecord.status).toBe(400)
    expect(staleRecord.body).toMatchObject({ error: 'InvalidSwap', message: `Record was at ${first.body.cid}` })
    const again = await call('com.atproto.repo.createRecord', { collection: coll, rkey, record: record('z') })
    expect(again.status).toBe(400)
    expect(again.body.message).toBe(`Record already exists at ${first.body.uri}`)
  })

  it('interleaves with commits of the main thread (a record with a blob) and the repo verifies', async () => {
    const upRes = await fetch(`${net.url}/xrpc/com.atproto.repo.uploadBlob`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'image/png' },
      body: Buffer.from([1, 2, 3, 4, 5]),
    })
    expect(upRes.status).toBe(200)
    const up = { body: (await upRes.json()) as { blob: unknown } }
    const before = workers().commits
    const withBlob = await call('com.atproto.repo.createRecord', {
      collection: coll,
      record: { ...record('image'), embed: { $type: 'app.bsky.embed.images', images: [{ alt: '', image: up.body.blob }] } },
    })
    expect(withBlob.status).toBe(200)
    // made on the main thread
    expect(workers().commits).toBe(before)
    const after = await call('com.atproto.repo.createRecord', { collection: coll, rkey: '3kworkerrkey4', record: record('after') })
    expect(after.status).toBe(200)
    expect(workers().commits).toBe(before + 1)
    const del = await call('com.atproto.repo.deleteRecord', { collection: coll, rkey: withBlob.body.uri.split('/').pop() })
    expect(del.status).toBe(200)

    const car = await fetch(`${net.url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`)
    expect(car.status).toBe(200)
    const key = await net.pds.ctx.accounts.getSigningKey(did)
    const verified = await verifyRepoCar(new Uint8Array(await car.arrayBuffer()), did, key!.did())
    expect(verified.commitCid.toString()).toBe(del.body.commit.cid)
    const keys = verified.records.map((r) => `${r.collection}/${r.rkey}`)
    expect(keys).toContain(`${coll}/3kworkerrkey3`)
    expect(keys).toContain(`${coll}/3kworkerrkey4`)
    expect(keys).not.toContain(`${coll}/3kworkerrkey2`)
    expect(keys.some((k) => k.endsWith(withBlob.body.uri.split('/').pop()))).toBe(false)
  })
})
