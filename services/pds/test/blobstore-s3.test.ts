import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
// @ts-expect-error s3rver ships no types
import S3rver from 's3rver'
import { readConfigFromEnv } from '../src/config.js'
import { startNetwork, type TestNetwork } from './_network.js'

/** A local S3-compatible server (s3rver) with one bucket, on a free loopback port. */
async function startS3(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: 'pds-blobs' }],
  })
  const { port } = (await server.run()) as { port: number }
  return { url: `http://127.0.0.1:${port}`, close: () => server.close() }
}

describe('blobs in S3-compatible storage (PDS_BLOBSTORE_S3_*)', () => {
  let s3dir: string
  let s3: Awaited<ReturnType<typeof startS3>>
  let net: TestNetwork
  let client: S3Client

  const keys = async () =>
    ((await client.send(new ListObjectsV2Command({ Bucket: 'pds-blobs' }))).Contents ?? []).map((o) => o.Key!).sort()

  beforeAll(async () => {
    s3dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-s3-'))
    s3 = await startS3(s3dir)
    net = await startNetwork({
      PDS_BLOBSTORE_DISK_LOCATION: '',
      PDS_BLOBSTORE_S3_BUCKET: 'pds-blobs',
      PDS_BLOBSTORE_S3_REGION: 'us-east-1',
      PDS_BLOBSTORE_S3_ENDPOINT: s3.url,
      PDS_BLOBSTORE_S3_FORCE_PATH_STYLE: 'true',
      PDS_BLOBSTORE_S3_ACCESS_KEY_ID: 'S3RVER',
      PDS_BLOBSTORE_S3_SECRET_ACCESS_KEY: 'S3RVER',
    })
    client = new S3Client({
      region: 'us-east-1',
      endpoint: s3.url,
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    })
  })
  afterAll(async () => {
    client?.destroy()
    await net?.close()
    await s3?.close()
    fs.rmSync(s3dir, { recursive: true, force: true })
  })

  it('reads the reference variables; disk and S3 exclude each other', () => {
    expect(net.cfg.blobstore.s3).toMatchObject({ bucket: 'pds-blobs', endpoint: s3.url, forcePathStyle: true, region: 'us-east-1' })
    expect(() => readConfigFromEnv({ ...net.env, PDS_BLOBSTORE_DISK_LOCATION: '/x' })).toThrow(/not both/)
    expect(() => readConfigFromEnv({ ...net.env, PDS_BLOBSTORE_S3_SECRET_ACCESS_KEY: '' })).toThrow(/must be set together/)
  })

  it('stores a referenced blob in the bucket, serves it back, and deletes it with the record and the account', async () => {
    const alice = new AtpAgent({ service: net.url })
    await alice.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: 'alice-pw' })
    const did = alice.session!.did
    const bytes = randomBytes(300_000)
    const up = await alice.com.atproto.repo.uploadBlob(bytes, { encoding: 'image/png' })
    // not referenced yet: nothing in the bucket
    expect(await keys()).toEqual([])
    const post = await alice.com.atproto.repo.createRecord({
      repo: did,
      collection: 'app.bsky.feed.post',
      record: {
        $type: 'app.bsky.feed.post',
        text: 'with an image',
        createdAt: new Date().toISOString(),
        embed: { $type: 'app.bsky.embed.images', images: [{ alt: '', image: up.data.blob }] },
      },
    })
    const cid = up.data.blob.ref.toString()
    expect(await keys()).toEqual([`blocks/${encodeURIComponent(did)}/${cid}`])
    const got = await alice.com.atproto.sync.getBlob({ did, cid })
    expect(Buffer.from(got.data).equals(bytes)).toBe(true)

    await alice.com.atproto.repo.deleteRecord({ repo: did, collection: 'app.bsky.feed.post', rkey: post.data.uri.split('/').pop()! })
    expect(await keys()).toEqual([])

    const up2 = await alice.com.atproto.repo.uploadBlob(randomBytes(1000), { encoding: 'image/png' })
    await alice.com.atproto.repo.putRecord({
      repo: did,
      collection: 'app.bsky.actor.profile',
      rkey: 'self',
      record: { $type: 'app.bsky.actor.profile', avatar: up2.data.blob },
    })
    expect(await keys()).toHaveLength(1)
    const admin = new AtpAgent({ service: net.url })
    admin.setHeader('authorization', `Basic ${Buffer.from(`admin:${net.env.PDS_ADMIN_PASSWORD}`).toString('base64')}`)
    await admin.com.atproto.admin.deleteAccount({ did })
    expect(await keys()).toEqual([])
  })
})
