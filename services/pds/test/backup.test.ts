import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
// @ts-expect-error s3rver ships no types
import S3rver from 's3rver'
import { backupPds, MANIFEST, restorePds, verifyBackupDirectory } from '../src/backup.js'
import { readConfigFromEnv } from '../src/config.js'
import { PdsServer } from '../src/server.js'
import { freePort, startNetwork, type TestNetwork } from './_network.js'

interface Snapshot {
  cars: Map<string, Buffer>
  blobs: Map<string, Buffer>
}

describe('stratos pds backup / restore', () => {
  let net: TestNetwork
  let work: string
  const accounts: { did: string; agent: AtpAgent; blobCids: string[] }[] = []
  let s3: { close(): Promise<void> }
  let s3url: string

  /** every repo as getRepo CAR bytes and every blob's bytes, as a PDS at `url` serves them */
  const snapshot = async (url: string): Promise<Snapshot> => {
    const agent = new AtpAgent({ service: url })
    const cars = new Map<string, Buffer>()
    const blobs = new Map<string, Buffer>()
    for (const a of accounts) {
      cars.set(a.did, Buffer.from((await agent.com.atproto.sync.getRepo({ did: a.did })).data))
      const listed = (await agent.com.atproto.sync.listBlobs({ did: a.did })).data.cids.sort()
      expect(listed).toEqual([...a.blobCids].sort())
      for (const cid of listed) blobs.set(`${a.did}/${cid}`, Buffer.from((await agent.com.atproto.sync.getBlob({ did: a.did, cid })).data))
    }
    return { cars, blobs }
  }

  /** a PDS with the same secrets on a new, empty data directory, restored from `source`, then started */
  const restoreAndStart = async (source: string, extraEnv: Record<string, string> = {}) => {
    const dir = fs.mkdtempSync(path.join(work, 'restored-'))
    const env = {
      ...net.env,
      PDS_PORT: String(await freePort()),
      PDS_DATA_DIRECTORY: dir,
      PDS_BLOBSTORE_DISK_LOCATION: path.join(dir, 'blobs'),
      ...extraEnv,
    }
    const cfg = readConfigFromEnv(env)
    const manifest = await restorePds(cfg, source, env)
    const pds = await PdsServer.create(cfg)
    const url = await pds.start()
    return { pds, url, manifest, dir }
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-backup-'))
    net = await startNetwork()
    for (const name of ['alice', 'bob']) {
      const agent = new AtpAgent({ service: net.url })
      await agent.createAccount({ handle: `${name}.test`, email: `${name}@example.com`, password: `${name}-pw-pw` })
      const blobCids: string[] = []
      for (let i = 0; i < 3; i++) {
        const up = await agent.com.atproto.repo.uploadBlob(randomBytes(20_000 + i), { encoding: 'image/jpeg' })
        blobCids.push(up.data.blob.ref.toString())
        await agent.post({
          text: `${name} post ${i}`,
          createdAt: new Date().toISOString(),
          embed: { $type: 'app.bsky.embed.images', images: [{ alt: '', image: up.data.blob }] },
        })
      }
      accounts.push({ did: agent.session!.did, agent, blobCids })
    }
    const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: path.join(work, 's3'), configureBuckets: [{ name: 'backups' }] })
    const { port } = (await server.run()) as { port: number }
    s3 = server
    s3url = `http://127.0.0.1:${port}`
  })
  afterAll(async () => {
    await net?.close()
    await s3?.close()
    if (work) fs.rmSync(work, { recursive: true, force: true })
  })

  it('backup of a running PDS, restored into an empty data directory, serves the same repos (CAR bytes) and blobs', async () => {
    const before = await snapshot(net.url)
    const dest = path.join(work, 'backup-1')
    const manifest = await backupPds(net.cfg, dest, {})
    expect(manifest.blobsIncluded).toBe(true)
    const paths = manifest.files.map((f) => f.path)
    expect(paths).toEqual(expect.arrayContaining(['db/account.sqlite', 'db/sequencer.sqlite']))
    expect(paths.filter((p) => p.startsWith('actors/') && p.endsWith('/store.sqlite'))).toHaveLength(2)
    expect(paths.filter((p) => p.startsWith('blobs/'))).toHaveLength(6)
    expect(paths.some((p) => p.includes('-wal') || p.includes('temp/'))).toBe(false)
    expect(fs.statSync(path.join(dest, 'db', 'account.sqlite')).mode & 0o077).toBe(0)

    // the original keeps running and writing meanwhile
    await accounts[0]!.agent.post({ text: 'after the backup', createdAt: new Date().toISOString() })

    const restored = await restoreAndStart(dest)
    try {
      const after = await snapshot(restored.url)
      for (const [did, car] of before.cars) expect(after.cars.get(did)!.equals(car), did).toBe(true)
      expect([...after.blobs.keys()].sort()).toEqual([...before.blobs.keys()].sort())
      for (const [key, bytes] of before.blobs) expect(after.blobs.get(key)!.equals(bytes), key).toBe(true)
      // accounts work: log in with the old password on the restored PDS
      const alice = new AtpAgent({ service: restored.url })
      await alice.login({ identifier: 'alice.test', password: 'alice-pw-pw' })
      expect(alice.session!.did).toBe(accounts[0]!.did)
    } finally {
      await restored.pds.close()
    }
  })

  it('refuses a damaged backup, a non-empty target and a non-empty backup directory', async () => {
    const dest = path.join(work, 'backup-2')
    await backupPds(net.cfg, dest, {})
    await expect(backupPds(net.cfg, dest, {})).rejects.toThrow(/not empty/)
    // restoring over the running PDS's own data
    await expect(restorePds(net.cfg, dest, {})).rejects.toThrow(/exists: restore only into an empty data directory/)
    const manifest = JSON.parse(fs.readFileSync(path.join(dest, MANIFEST), 'utf8')) as { files: { path: string }[] }
    const blob = manifest.files.find((f) => f.path.startsWith('blobs/'))!
    fs.appendFileSync(path.join(dest, ...blob.path.split('/')), 'x')
    expect(() => verifyBackupDirectory(dest)).toThrow(/damaged/)
    const empty = fs.mkdtempSync(path.join(work, 'empty-'))
    const cfg = readConfigFromEnv({ ...net.env, PDS_DATA_DIRECTORY: empty, PDS_BLOBSTORE_DISK_LOCATION: path.join(empty, 'blobs') })
    await expect(restorePds(cfg, dest, {})).rejects.toThrow(/damaged/)
    expect(fs.readdirSync(empty)).toEqual([])
  })

  it('to and from S3-compatible storage (s3://bucket/prefix)', async () => {
    const before = await snapshot(net.url)
    const s3env = {
      STRATOS_BACKUP_S3_ENDPOINT: s3url,
      STRATOS_BACKUP_S3_FORCE_PATH_STYLE: 'true',
      STRATOS_BACKUP_S3_ACCESS_KEY_ID: 'S3RVER',
      STRATOS_BACKUP_S3_SECRET_ACCESS_KEY: 'S3RVER',
    }
    const manifest = await backupPds(net.cfg, 's3://backups/pds/2026-12-06', s3env)
    // staging is cleaned up
    expect(fs.readdirSync(net.cfg.db.directory).filter((n) => n.startsWith('.backup-'))).toEqual([])
    await expect(backupPds(net.cfg, 's3://backups/pds/2026-12-06', s3env)).rejects.toThrow(/exists: choose a new prefix/)
    const restored = await restoreAndStart('s3://backups/pds/2026-12-06', s3env)
    try {
      expect(restored.manifest.files).toEqual(manifest.files)
      const after = await snapshot(restored.url)
      for (const [did, car] of before.cars) expect(after.cars.get(did)!.equals(car), did).toBe(true)
      for (const [key, bytes] of before.blobs) expect(after.blobs.get(key)!.equals(bytes), key).toBe(true)
    } finally {
      await restored.pds.close()
    }
  })
})
