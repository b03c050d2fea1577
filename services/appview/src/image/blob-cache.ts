/**
 * Blobs for image and video URLs: fetched from the owner's PDS (com.atproto.sync.getBlob), checked
 * against their CID, and cached on disk under <data dir>/blob-cache/<did>/<cid>.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { verifyCidForBytes } from '@stratos/core/data'
import { safeFetch, type IdentityResolver } from '@stratos/core/identity'

export class BlobNotFoundError extends Error {
  override name = 'BlobNotFoundError'
}

export interface CachedBlob {
  bytes: Uint8Array
  mimeType: string
}

export interface BlobCacheOptions {
  /** cache directory; null = no disk cache */
  dir: string | null
  idResolver: IdentityResolver
  allowPrivateAddresses?: boolean
  /** largest blob fetched (default 100 MiB) */
  maxBytes?: number
}

function safeName(s: string): string {
  return s.replace(/[^a-zA-Z0-9._-]/g, '_')
}

export class BlobCache {
  private readonly inflight = new Map<string, Promise<CachedBlob>>()

  constructor(private readonly opts: BlobCacheOptions) {}

  async get(did: string, cidStr: string): Promise<CachedBlob> {
    let cid: CID
    try {
      cid = CID.parse(cidStr)
    } catch {
      throw new BlobNotFoundError('not a CID')
    }
    if (!did.startsWith('did:')) throw new BlobNotFoundError('not a DID')
    const key = `${did} ${cid.toString()}`
    const existing = this.inflight.get(key)
    if (existing) return existing
    const p = this.load(did, cid).finally(() => this.inflight.delete(key))
    this.inflight.set(key, p)
    return p
  }

  private paths(did: string, cid: CID): { dir: string; file: string; mime: string } | null {
    if (!this.opts.dir) return null
    const dir = join(this.opts.dir, safeName(did))
    const file = join(dir, safeName(cid.toString()))
    return { dir, file, mime: `${file}.mime` }
  }

  private async load(did: string, cid: CID): Promise<CachedBlob> {
    const paths = this.paths(did, cid)
    if (paths) {
      try {
        const [bytes, mime] = await Promise.all([readFile(paths.file), readFile(paths.mime, 'utf8')])
        return { bytes, mimeType: mime }
      } catch {
        // not cached
      }
    }
    let pds: string | undefined
    try {
      pds = (await this.opts.idResolver.resolveAtprotoData(did)).pdsEndpoint
    } catch {
      pds = undefined
    }
    if (!pds) throw new BlobNotFoundError('account has no PDS')
    const url = `${pds.replace(/\/+$/, '')}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(did)}&cid=${encodeURIComponent(cid.toString())}`
    let res
    try {
      res = await safeFetch(url, {
        timeoutMs: 60_000,
        maxBytes: this.opts.maxBytes ?? 100 * 1024 * 1024,
        allowPrivateAddresses: this.opts.allowPrivateAddresses ?? false,
      })
    } catch (err) {
      throw new BlobNotFoundError(`blob fetch failed: ${(err as Error).message}`)
    }
    if (!res.ok) throw new BlobNotFoundError(`PDS answered ${res.status}`)
    if (!verifyCidForBytes(cid, res.body)) throw new BlobNotFoundError('blob does not match its CID')
    const mimeType = (res.headers.get('content-type') ?? 'application/octet-stream').split(';')[0]!.trim()
    if (paths) {
      try {
        await mkdir(paths.dir, { recursive: true })
        const tmp = `${paths.file}.${process.pid}.${Date.now()}.tmp`
        await writeFile(tmp, res.body)
        await writeFile(paths.mime, mimeType)
        await rename(tmp, paths.file)
      } catch {
        // cache write failures only cost a refetch
      }
    }
    return { bytes: res.body, mimeType }
  }
}
