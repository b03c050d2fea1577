import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Transform } from 'node:stream'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'

const RAW_CODEC = 0x55
const SHA256_CODE = 0x12

export class BlobTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`blob is larger than the upload limit of ${limit} bytes`)
    this.name = 'BlobTooLargeError'
  }
}

/**
 * Blobs on disk. Uploads land in a temp directory under a random key; once a record references the blob
 * it moves to `<location>/<did>/<cid>`. Files are written whole to a temp name and renamed, so a reader
 * never sees a partial blob.
 */
export class DiskBlobStore {
  constructor(
    readonly location: string,
    readonly tempLocation: string,
  ) {}

  async init(): Promise<void> {
    await fs.mkdir(this.location, { recursive: true })
    await fs.mkdir(this.tempLocation, { recursive: true })
  }

  private didDir(did: string): string {
    return path.join(this.location, encodeURIComponent(did))
  }

  private permPath(did: string, cid: CID | string): string {
    return path.join(this.didDir(did), cid.toString())
  }

  private tempPath(key: string): string {
    if (!/^[a-f0-9]{32}$/.test(key)) throw new Error('invalid temp key')
    return path.join(this.tempLocation, key)
  }

  /** Streams an upload to a temp file, hashing it and enforcing the size limit. */
  async putTemp(stream: Readable, limit: number): Promise<{ key: string; cid: CID; size: number }> {
    const key = randomBytes(16).toString('hex')
    const file = this.tempPath(key)
    const hash = createHash('sha256')
    let size = 0
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length
        if (size > limit) return cb(new BlobTooLargeError(limit))
        hash.update(chunk)
        cb(null, chunk)
      },
    })
    try {
      await pipeline(stream, meter, createWriteStream(file))
    } catch (err) {
      await fs.rm(file, { force: true })
      throw err
    }
    const cid = CID.createV1(RAW_CODEC, createDigest(SHA256_CODE, hash.digest()))
    return { key, cid, size }
  }

  async hasTemp(key: string): Promise<boolean> {
    return fs.access(this.tempPath(key)).then(
      () => true,
      () => false,
    )
  }

  /** Moves a temp upload into permanent storage (idempotent when already moved). */
  async makePermanent(did: string, key: string, cid: CID | string): Promise<void> {
    const dest = this.permPath(did, cid)
    await fs.mkdir(this.didDir(did), { recursive: true })
    try {
      await fs.rename(this.tempPath(key), dest)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (await this.hasStored(did, cid))) return
      throw err
    }
  }

  async hasStored(did: string, cid: CID | string): Promise<boolean> {
    return fs.access(this.permPath(did, cid)).then(
      () => true,
      () => false,
    )
  }

  async getStream(did: string, cid: CID | string): Promise<Readable | null> {
    const file = this.permPath(did, cid)
    try {
      await fs.access(file)
    } catch {
      return null
    }
    return createReadStream(file)
  }

  async getBytes(did: string, cid: CID | string): Promise<Uint8Array | null> {
    try {
      return new Uint8Array(await fs.readFile(this.permPath(did, cid)))
    } catch {
      return null
    }
  }

  async deletePermanent(did: string, cid: CID | string): Promise<void> {
    await fs.rm(this.permPath(did, cid), { force: true })
  }

  async deleteTemp(key: string): Promise<void> {
    await fs.rm(this.tempPath(key), { force: true })
  }

  async deleteAllForDid(did: string): Promise<void> {
    await fs.rm(this.didDir(did), { recursive: true, force: true })
  }
}
