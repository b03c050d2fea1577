/**
 * Issue 14 items 6, 13 and 14 on the AppView: /img/ with blobs far over the image limit (8 at once, RSS
 * measured in the AppView's own process), the image cache's byte budget, generic error messages, and
 * /vid playlists built only from a valid DID and CID.
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppViewServer, readConfig } from '@stratos/appview'
import { generateKeypair } from '@stratos/core/crypto'

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))
const DID = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
const KEY = (await generateKeypair('k256')).did().slice('did:key:'.length)

function cidFor(bytes: Uint8Array): string {
  return CID.createV1(0x55, createDigest(0x12, createHash('sha256').update(bytes).digest())).toString()
}

/** A fake PLC + PDS on one server: the DID document points at itself; getBlob serves `blobs` or a 100 MiB stream. */
function fakeUpstream(blobs: Map<string, Buffer>): Promise<{ server: Server; url: string; served: () => number }> {
  let served = 0
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    if (decodeURIComponent(u.pathname) === `/${DID}`) {
      res.setHeader('content-type', 'application/json')
      res.end(
        JSON.stringify({
          '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
          id: DID,
          alsoKnownAs: ['at://victim.test'],
          verificationMethod: [{ id: `${DID}#atproto`, type: 'Multikey', controller: DID, publicKeyMultibase: KEY }],
          service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: base }],
        }),
      )
      return
    }
    if (u.pathname === '/xrpc/com.atproto.sync.getBlob') {
      const blob = blobs.get(u.searchParams.get('cid') ?? '')
      res.setHeader('content-type', 'image/jpeg')
      if (blob) return res.end(blob)
      // the attack: a huge body, sent as fast as the client takes it, no content-length
      let left = 100 * 1024 * 1024
      const chunk = randomBytes(256 * 1024)
      const pump = () => {
        while (left > 0) {
          left -= chunk.length
          served += chunk.length
          if (!res.write(chunk)) return res.once('drain', pump)
        }
        res.end()
      }
      res.on('error', () => undefined)
      pump()
      return
    }
    res.statusCode = 404
    res.end()
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, served: () => served })))
}

describe('AppView /img/ and /vid/ under attack', () => {
  const blobs = new Map<string, Buffer>()
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>
  const dirs: string[] = []

  beforeAll(async () => {
    upstream = await fakeUpstream(blobs)
  })
  afterAll(async () => {
    await new Promise((r) => upstream.server.close(r))
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it('8 parallel requests for 100 MiB blobs: refused, RSS growth under 100 MB (measured in the AppView process)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'appview-img-'))
    dirs.push(dir)
    const cids = Array.from({ length: 8 }, () => cidFor(randomBytes(32)))
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--import', './packages/cli/dev/register.mjs', 'services/appview/test/security/_img-attack-child.ts', upstream.url, dir, DID, JSON.stringify(cids)],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    await new Promise((r) => child.once('exit', r))
    const line = out.trim().split('\n').pop()
    expect(line, err).toBeTruthy()
    const result = JSON.parse(line!) as { statuses: { status: number; body: string }[]; before: number; peak: number }
    expect(result.statuses.map((s) => s.status)).toEqual(Array(8).fill(404))
    for (const s of result.statuses) expect(JSON.parse(s.body)).toEqual({ error: 'NotFound', message: 'blob not found' })
    const growthMb = (result.peak - result.before) / 1024 / 1024
    expect(growthMb).toBeLessThan(100)
    // nothing of the refused bodies stays on disk
    const cacheDir = join(dir, 'blob-cache')
    const left = readdirSync(cacheDir, { recursive: true }).filter((f) => statSync(join(cacheDir, String(f))).isFile())
    expect(left).toEqual([])
  }, 60_000)

  describe('in process', () => {
    let server: AppViewServer
    let url: string
    beforeAll(async () => {
      const dir = mkdtempSync(join(tmpdir(), 'appview-img-'))
      dirs.push(dir)
      server = await AppViewServer.create(
        readConfig({
          APPVIEW_PORT: '0',
          APPVIEW_DATA_DIRECTORY: dir,
          APPVIEW_PLC_URL: upstream.url,
          APPVIEW_DEV_MODE: 'true',
          APPVIEW_BACKFILL: 'false',
          APPVIEW_IMAGE_CACHE_MAX_BYTES: String(250_000),
          APPVIEW_ADMIN_PASSWORD: 'appview-admin-password',
          LOG_LEVEL: 'silent',
        }),
      )
      url = await server.xrpc.listen({ port: 0, host: '127.0.0.1' })
      await server.ctx.db.insertInto('actor').values({ did: DID, handle: 'victim.test', indexedAt: new Date().toISOString(), upstreamStatus: null }).execute()
    })
    afterAll(async () => {
      await server.close()
    })

    it('serves real images, and keeps the disk cache within APPVIEW_IMAGE_CACHE_MAX_BYTES (least recently used go)', async () => {
      const images = Array.from({ length: 5 }, () => randomBytes(100_000))
      for (const img of images) blobs.set(cidFor(img), img)
      for (const img of images) {
        const res = await fetch(`${url}/img/feed_thumbnail/plain/${DID}/${cidFor(img)}@jpeg`)
        expect(res.status).toBe(200)
        expect(Buffer.from(await res.arrayBuffer()).equals(img)).toBe(true)
      }
      expect(server.ctx.blobs.cachedBytes).toBeLessThanOrEqual(250_000)
      expect(server.ctx.blobs.cachedBytes).toBeGreaterThanOrEqual(200_000)
    })

    it('a blob whose bytes do not match its CID is refused; the fetch error detail is not sent to the client', async () => {
      const cid = cidFor(randomBytes(8))
      blobs.set(cid, randomBytes(1000))
      const res = await fetch(`${url}/img/avatar/plain/${DID}/${cid}@jpeg`)
      expect(res.status).toBe(404)
      expect(await res.json()).toEqual({ error: 'NotFound', message: 'blob does not match its CID' })
      const unreachable = await fetch(`${url}/img/avatar/plain/${DID}/${cidFor(randomBytes(9))}@jpeg`)
      const body = (await unreachable.json()) as { message: string }
      expect(body.message).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|exceeds/)
    })

    it('admin Basic auth: 429 after 10 wrong passwords from one IP, the right one included (item 4)', async () => {
      const basic = (pw: string) => ({ authorization: `Basic ${Buffer.from(`admin:${pw}`).toString('base64')}` })
      const call = (pw: string) => fetch(`${url}/admin/backfill?did=${DID}`, { method: 'POST', headers: basic(pw) }).then((r) => r.status)
      const statuses = await Promise.all(Array.from({ length: 50 }, (_, i) => call(`guess-${i}`)))
      expect(statuses.filter((s) => s === 401)).toHaveLength(10)
      expect(statuses.filter((s) => s === 429)).toHaveLength(40)
      expect(await call('appview-admin-password')).toBe(429)
    })

    it('/vid playlists accept only a valid DID and CID, and never echo CR/LF (item 14)', async () => {
      const cid = cidFor(randomBytes(8))
      const ok = await fetch(`${url}/vid/${DID}/${cid}/playlist.m3u8`)
      expect(ok.status).toBe(200)
      expect(await ok.text()).toContain(`/vid/${encodeURIComponent(DID)}/${cid}/video`)
      const injected = await fetch(`${url}/vid/${DID}/${cid}%0D%0A%23EXT-X-KEY:x/playlist.m3u8`)
      expect(injected.status).toBe(400)
      const text = await injected.text()
      expect(text).not.toMatch(/\r|\n#EXT/)
      expect(JSON.parse(text)).toMatchObject({ error: 'InvalidRequest' })
      const badDid = await fetch(`${url}/vid/did:plc:abc%0Aevil/${cid}/playlist.m3u8`)
      expect(badDid.status).toBe(400)
    })
  })
})
