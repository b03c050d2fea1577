import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readCarSync, writeCar } from '@stratos/core/repo'
import { HANDLE, jsonLines, makeBlobs, runCli, startNetwork } from './helpers.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stratos-cli-repo-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('stratos repo export', () => {
  let net: Awaited<ReturnType<typeof startNetwork>>
  const blobs = makeBlobs(['image one', 'image two', 'a third blob', 'and a fourth', 'fifth'])
  beforeAll(async () => {
    net = await startNetwork({ blobs })
  })
  afterAll(async () => {
    await net?.close()
  })

  it('downloads the repo CAR and every blob (listBlobs paged), then skips blobs already there', async () => {
    const car = join(dir, 'alice.car')
    const blobDir = join(dir, 'blobs')
    const r = await runCli(['repo', 'export', HANDLE, '-o', car, '--blobs', blobDir, '--json', ...net.flags])
    expect(r.stderr).toContain(`exporting ${net.fx.did} from ${net.pds.url}`)
    expect(r.code).toBe(0)
    expect(new Uint8Array(await readFile(car))).toEqual(net.fx.car)
    const files = (await readdir(blobDir)).sort()
    expect(files).toEqual([...blobs.keys()].sort())
    for (const [cid, bytes] of blobs) expect(new Uint8Array(await readFile(join(blobDir, cid)))).toEqual(bytes)
    expect(JSON.parse(r.stdout)).toMatchObject({ did: net.fx.did, car, carBytes: net.fx.car.byteLength, blobs: 5, blobsSkipped: 0 })
    // 5 blobs, 2 per page: 3 pages plus the empty one that ends the listing
    expect(net.pds.requests.filter((q) => q.path === '/xrpc/com.atproto.sync.listBlobs').length).toBeGreaterThanOrEqual(3)

    const again = await runCli(['repo', 'export', net.fx.did, '-o', car, '--blobs', blobDir, '--json', ...net.flags])
    expect(again.code).toBe(0)
    expect(JSON.parse(again.stdout)).toMatchObject({ blobs: 0, blobsSkipped: 5 })

    // the export verifies
    const inspect = await runCli(['repo', 'inspect', car, '--json', ...net.flags])
    expect(inspect.code).toBe(0)
    expect(JSON.parse(inspect.stdout).verification.status).toBe('verified')
  })

  it('refuses a blob whose bytes do not match its CID (exit 1)', async () => {
    const bad = await startNetwork({ fx: net.fx, blobs, serveBlob: (cid, bytes) => (cid === [...blobs.keys()][1] ? new TextEncoder().encode('evil') : bytes) })
    try {
      const blobDir = join(dir, 'blobs-bad')
      const r = await runCli(['repo', 'export', net.fx.did, '-o', join(dir, 'x.car'), '--blobs', blobDir, ...bad.flags])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain(`blob ${[...blobs.keys()][1]}: the bytes do not hash to the CID`)
      expect(r.stderr).toContain('1 blob could not be downloaded')
      expect((await readdir(blobDir)).length).toBe(4)
    } finally {
      await bad.close()
    }
  })

  it('uses --pds directly (handle resolved by the PDS) and writes to stdout with -o -', async () => {
    const r = await runCli(['repo', 'export', HANDLE, '-o', '-', '--pds', net.pds.url, '--quiet'])
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    expect(Buffer.from(r.stdout, 'latin1').length).toBeGreaterThan(0)
    const resolved = net.pds.requests.find((q) => q.path === '/xrpc/com.atproto.identity.resolveHandle')
    expect(resolved?.query.get('handle')).toBe(HANDLE)
  })

  it('reports a PDS error and needs -o', async () => {
    const r = await runCli(['repo', 'export', 'did:plc:zzzzzzzzzzzzzzzzzzzzzzzz', '-o', join(dir, 'none.car'), '--pds', net.pds.url])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/com\.atproto\.sync\.getRepo on http:\/\/127\.0\.0\.1:\d+ failed: HTTP 404 RepoNotFound/)
    const usage = await runCli(['repo', 'export', HANDLE])
    expect(usage.code).toBe(2)
    expect(usage.stderr).toContain('-o FILE is required')
  })
})

describe('stratos repo inspect', () => {
  let net: Awaited<ReturnType<typeof startNetwork>>
  let car: string
  beforeAll(async () => {
    net = await startNetwork()
    car = join(dir, 'inspect.car')
    await writeFile(car, net.fx.car)
  })
  afterAll(async () => {
    await net?.close()
  })

  it('verifies with the key from the DID document and counts records per collection', async () => {
    const r = await runCli(['repo', 'inspect', car, ...net.flags])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`  did       ${net.fx.did}`)
    expect(r.stdout).toContain(`  rev       ${net.fx.repo.commit.rev}`)
    expect(r.stdout).toContain(`signature   verified: signature by ${net.fx.keypair.did()} (from the DID document of ${net.fx.did}), MST complete`)
    expect(r.stdout).toContain('records     4')
    expect(r.stdout).toMatch(/^ {2}app\.bsky\.feed\.post +2$/m)
    expect(r.stdout).toMatch(/^ {2}app\.bsky\.actor\.profile +1$/m)
    expect(r.stdout).toMatch(/^ {2}app\.bsky\.graph\.follow +1$/m)

    const j = await runCli(['repo', 'inspect', car, '--json', '--records', '--key', net.fx.keypair.did()])
    expect(j.code).toBe(0)
    const [summary, ...records] = jsonLines(j.stdout) as Record<string, any>[]
    expect(summary!.commit.did).toBe(net.fx.did)
    expect(summary!.collections).toEqual({ 'app.bsky.actor.profile': 1, 'app.bsky.feed.post': 2, 'app.bsky.graph.follow': 1 })
    expect(summary!.verification).toEqual({ status: 'verified', key: net.fx.keypair.did(), keySource: 'flag' })
    expect(records.map((x) => x.uri)).toContain(`at://${net.fx.did}/app.bsky.feed.post/${net.fx.postRkey}`)
    expect(records.find((x) => x.uri.endsWith(net.fx.postRkey))!.value.text).toBe('hello world')
  })

  it('fails with another key, another DID, or a CAR missing a record block', async () => {
    const other = (await Secp256k1Keypair.create()).did()
    const wrongKey = await runCli(['repo', 'inspect', car, '--json', '--key', other])
    expect(wrongKey.code).toBe(1)
    const out = JSON.parse(wrongKey.stdout)
    expect(out.verification).toMatchObject({ status: 'failed', reason: 'bad-signature' })
    expect(out.records).toBe(4) // still counted from the walk
    expect(wrongKey.stderr).toContain('verification failed (bad-signature)')

    const wrongDid = await runCli(['repo', 'inspect', car, '--did', 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb', '--key', net.fx.keypair.did()])
    expect(wrongDid.code).toBe(1)
    expect(wrongDid.stdout).toContain('FAILED (did-mismatch)')

    // drop one record block
    const parsed = readCarSync(net.fx.car)
    const recordCid = (await net.fx.repo.data.get(`app.bsky.feed.post/${net.fx.postRkey}`))!
    const kept = [...parsed.blocks.entries()].filter(({ cid }) => !cid.equals(recordCid)).map(({ cid, bytes }) => [cid, bytes] as const)
    const broken = join(dir, 'broken.car')
    await writeFile(broken, writeCar(parsed.roots[0]!, kept))
    const missing = await runCli(['repo', 'inspect', broken, '--key', net.fx.keypair.did()])
    expect(missing.code).toBe(1)
    expect(missing.stdout).toContain('FAILED (missing-block)')
  })

  it('reports unverified (exit 0) when the key cannot be looked up, exit 1 when it was asked for', async () => {
    const offline = await runCli(['repo', 'inspect', car, '--offline', '--json'])
    expect(offline.code).toBe(0)
    expect(JSON.parse(offline.stdout)).toMatchObject({ records: 4, verification: { status: 'unverified', reason: 'offline' } })
    expect(offline.stderr).toContain('warning')

    const noPlc = await runCli(['repo', 'inspect', car, '--did', net.fx.did, '--dev', '--plc', 'http://127.0.0.1:1'])
    expect(noPlc.code).toBe(1)
    expect(noPlc.stdout).toContain(`not verified: cannot get the signing key of ${net.fx.did}`)
  })

  it('rejects files that are not repo CARs', async () => {
    const junk = join(dir, 'junk.car')
    await writeFile(junk, 'not a car file')
    const r = await runCli(['repo', 'inspect', junk])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('invalid CAR')
    const none = await runCli(['repo', 'inspect', join(dir, 'does-not-exist.car')])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain('ENOENT')
  })
})
