/**
 * Blobs for image and video URLs: fetched from the owner's PDS (com.atproto.sync.getBlob), streamed to a
 * temp file while being hashed (never held whole in memory), checked against their CID, and cached on
 * disk under <data dir>/blob-cache/<did>/<cid>. The cache has a byte budget; the least recently used
 * files go first. Without a cache directory, blobs up to the image limit are held in memory per request.
 */
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, openSync, writeSync } from 'node:fs'
import { mkdir, readFile, readdir, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { safeFetch, type IdentityResolver } from '@stratos/core/identity'

export class BlobNotFoundError extends Error {
  override name = 'BlobNotFoundError'
}

/** The lexicons' size limits: images (app.bsky.embed.images, avatars, banners) and videos (app.bsky.embed.video). */
export const IMAGE_MAX_BYTES = 1_000_000
export const VIDEO_MAX_BYTES = 100_000_000

export type BlobKind = 'image' | 'video'

export interface CachedBlob {
  mimeType: string
  size: number
  /** the cached file, when there is a disk cache */
  file?: string
  /** the bytes, when there is no disk cache */
  bytes?: Uint8Array
}

export interface BlobCacheOptions {
  /** cache directory; null = no disk cache */
  dir: string | null
  idResolver: IdentityResolver
  allowPrivateAddresses?: boolean
  /** byte budget of the disk cache (default 1 GiB) */
  maxCacheBytes?: number
  /** where fetch failures are reported (the client only sees "not found") */
  onFetchError?: (err: unknown, did: string, cid: string) => void
}

const RAW_SHA256 = 0x12

function safeName(s: string): string {
  return s.replace(/[^a-zA-Z0-9._-]/g, '_')
}

interface Entry {
  size: number
  used: number
}

export class BlobCache {
  private readonly inflight = new Map<string, Promise<CachedBlob>>()
  /** cached files → size and last use; built from the directory on first use */
  private index: Map<string, Entry> | null = null
  private indexing: Promise<void> | null = null
  private total = 0

  constructor(private readonly opts: BlobCacheOptions) {}

  get cachedBytes(): number {
    return this.total
  }

  async get(did: string, cidStr: string, kind: BlobKind = 'image'): Promise<CachedBlob> {
    let cid: CID
    try {
      cid = CID.parse(cidStr)
    } catch {
      throw new BlobNotFoundError('not a CID')
    }
    if (!did.startsWith('did:')) throw new BlobNotFoundError('not a DID')
    const key = `${did} ${cid.toString()} ${kind}`
    const existing = this.inflight.get(key)
    if (existing) return existing
    const p = this.load(did, cid, kind).finally(() => this.inflight.delete(key))
    this.inflight.set(key, p)
    return p
  }

  private paths(did: string, cid: CID): { dir: string; file: string; mime: string } | null {
    if (!this.opts.dir) return null
    const dir = join(this.opts.dir, safeName(did))
    const file = join(dir, safeName(cid.toString()))
    return { dir, file, mime: `${file}.mime` }
  }

  private async ensureIndex(): Promise<void> {
    if (this.index || !this.opts.dir) return
    this.indexing ??= (async () => {
      const index = new Map<string, Entry>()
      let total = 0
      const root = this.opts.dir!
      for (const d of await readdir(root).catch(() => [] as string[])) {
        for (const f of await readdir(join(root, d)).catch(() => [] as string[])) {
          if (f.endsWith('.mime') || f.endsWith('.tmp')) continue
          const st = await stat(join(root, d, f)).catch(() => null)
          if (!st?.isFile()) continue
          index.set(join(root, d, f), { size: st.size, used: st.mtimeMs })
          total += st.size
        }
      }
      this.index = index
      this.total = total
    })()
    await this.indexing
  }

  private async evict(keep: string): Promise<void> {
    const max = this.opts.maxCacheBytes ?? 1024 ** 3
    if (!this.index || this.total <= max) return
    const byAge = [...this.index.entries()].sort((a, b) => a[1].used - b[1].used)
    for (const [file, entry] of byAge) {
      if (this.total <= max) break
      if (file === keep) continue
      this.index.delete(file)
      this.total -= entry.size
      await unlink(file).catch(() => undefined)
      await unlink(`${file}.mime`).catch(() => undefined)
    }
  }

  private async load(did: string, cid: CID, kind: BlobKind): Promise<CachedBlob> {
    const maxBytes = kind === 'video' ? VIDEO_MAX_BYTES : IMAGE_MAX_BYTES
    if (cid.multihash.code !== RAW_SHA256) throw new BlobNotFoundError('unsupported CID hash')
    const paths = this.paths(did, cid)
    if (paths) {
      await this.ensureIndex()
      const entry = this.index!.get(paths.file)
      if (entry && entry.size <= maxBytes) {
        try {
          const mimeType = await readFile(paths.mime, 'utf8')
          entry.used = Date.now()
          void utimes(paths.file, new Date(), new Date()).catch(() => undefined)
          return { file: paths.file, mimeType, size: entry.size }
        } catch {
          // half-written entry: fetch again
        }
      }
    }
    let pds: string | undefined
    try {
      pds = (await this.opts.idResolver.resolveAtprotoData(did)).pdsEndpoint
    } catch {
      pds = undefined
    }
    if (!pds) throw new BlobNotFoundError('blob not found')
    const url = `${pds.replace(/\/+$/, '')}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(did)}&cid=${encodeURIComponent(cid.toString())}`

    // stream: hash every chunk, write it to a temp file (or keep it, without a disk cache), stop at the cap
    const hash = createHash('sha256')
    let fd: number | null = null
    let tmp: string | null = null
    const chunks: Buffer[] = []
    if (paths) {
      await mkdir(paths.dir, { recursive: true, mode: 0o700 })
      tmp = `${paths.file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
      fd = openSync(tmp, 'w', 0o600)
    }
    let size = 0
    let res
    try {
      res = await safeFetch(url, {
        timeoutMs: kind === 'video' ? 120_000 : 30_000,
        maxBytes,
        allowPrivateAddresses: this.opts.allowPrivateAddresses ?? false,
        onChunk: (chunk) => {
          size += chunk.length
          hash.update(chunk)
          if (fd !== null) writeSync(fd, chunk)
          else chunks.push(chunk)
        },
      })
    } catch (err) {
      this.opts.onFetchError?.(err, did, cid.toString())
      if (fd !== null) closeSync(fd)
      if (tmp) await unlink(tmp).catch(() => undefined)
      throw new BlobNotFoundError('blob not found')
    }
    if (fd !== null) closeSync(fd)
    const digest = hash.digest()
    const matches = res.ok && Buffer.from(cid.multihash.digest).equals(digest)
    if (!matches) {
      if (tmp) await unlink(tmp).catch(() => undefined)
      if (!res.ok) throw new BlobNotFoundError('blob not found')
      throw new BlobNotFoundError('blob does not match its CID')
    }
    const mimeType = (res.headers.get('content-type') ?? 'application/octet-stream').split(';')[0]!.trim()
    if (!paths || !tmp) {
      const bytes = Buffer.concat(chunks)
      return { bytes, mimeType, size }
    }
    await writeFile(paths.mime, mimeType, { mode: 0o600 })
    await rename(tmp, paths.file)
    const old = this.index!.get(paths.file)
    if (old) this.total -= old.size
    this.index!.set(paths.file, { size, used: Date.now() })
    this.total += size
    await this.evict(paths.file)
    return { file: paths.file, mimeType, size }
  }
}
