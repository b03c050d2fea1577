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

  tempPath(key: string): string {
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

/** Where an S3-compatible bucket is (PDS_BLOBSTORE_S3_*). */
export interface S3BlobStoreOptions {
  bucket: string
  region: string
  endpoint?: string
  forcePathStyle: boolean
  accessKeyId?: string
  secretAccessKey?: string
  uploadTimeoutMs: number
}

/**
 * Blobs in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, ...) under `blocks/<did>/<cid>`.
 * Uploads still land in the local temp directory first (hashed and size-checked while they stream in);
 * a blob goes to the bucket when a record references it.
 */
export class S3BlobStore extends DiskBlobStore {
  private clientPromise?: Promise<import('@aws-sdk/client-s3').S3Client>

  constructor(
    tempLocation: string,
    readonly s3: S3BlobStoreOptions,
  ) {
    super(tempLocation, tempLocation)
  }

  override async init(): Promise<void> {
    await fs.mkdir(this.tempLocation, { recursive: true })
  }

  private client() {
    this.clientPromise ??= import('@aws-sdk/client-s3').then(
      ({ S3Client }) =>
        new S3Client({
          region: this.s3.region,
          ...(this.s3.endpoint ? { endpoint: this.s3.endpoint } : {}),
          forcePathStyle: this.s3.forcePathStyle,
          // checksums only where S3 requires them: many S3-compatible servers reject the SDK's default
          // aws-chunked uploads with trailing checksums
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
          ...(this.s3.accessKeyId && this.s3.secretAccessKey
            ? { credentials: { accessKeyId: this.s3.accessKeyId, secretAccessKey: this.s3.secretAccessKey } }
            : {}),
        }),
    )
    return this.clientPromise
  }

  private key(did: string, cid: CID | string): string {
    return `blocks/${encodeURIComponent(did)}/${cid.toString()}`
  }

  private async send<T>(make: (m: typeof import('@aws-sdk/client-s3')) => unknown): Promise<T> {
    const [client, m] = await Promise.all([this.client(), import('@aws-sdk/client-s3')])
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    return (await client.send(make(m) as any, { abortSignal: AbortSignal.timeout(this.s3.uploadTimeoutMs) })) as T
  }

  override async makePermanent(did: string, key: string, cid: CID | string): Promise<void> {
    const file = path.join(this.tempLocation, key)
    if (!/^[a-f0-9]{32}$/.test(key)) throw new Error('invalid temp key')
    let size: number
    try {
      size = (await fs.stat(file)).size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (await this.hasStored(did, cid))) return
      throw err
    }
    await this.send((m) => new m.PutObjectCommand({ Bucket: this.s3.bucket, Key: this.key(did, cid), Body: createReadStream(file), ContentLength: size }))
    await fs.rm(file, { force: true })
  }

  override async hasStored(did: string, cid: CID | string): Promise<boolean> {
    try {
      await this.send((m) => new m.HeadObjectCommand({ Bucket: this.s3.bucket, Key: this.key(did, cid) }))
      return true
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
  }

  override async getStream(did: string, cid: CID | string): Promise<Readable | null> {
    try {
      const res = await this.send<{ Body?: unknown }>((m) => new m.GetObjectCommand({ Bucket: this.s3.bucket, Key: this.key(did, cid) }))
      return (res.Body as Readable | undefined) ?? null
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
  }

  override async getBytes(did: string, cid: CID | string): Promise<Uint8Array | null> {
    const stream = await this.getStream(did, cid)
    if (!stream) return null
    const chunks: Buffer[] = []
    for await (const chunk of stream) chunks.push(chunk as Buffer)
    return new Uint8Array(Buffer.concat(chunks))
  }

  override async deletePermanent(did: string, cid: CID | string): Promise<void> {
    await this.send((m) => new m.DeleteObjectCommand({ Bucket: this.s3.bucket, Key: this.key(did, cid) }))
  }

  /** Every blob key of an account in the bucket. */
  async listKeys(did: string): Promise<string[]> {
    const keys: string[] = []
    let token: string | undefined
    do {
      const res = await this.send<{ Contents?: { Key?: string }[]; NextContinuationToken?: string; IsTruncated?: boolean }>(
        (m) => new m.ListObjectsV2Command({ Bucket: this.s3.bucket, Prefix: `blocks/${encodeURIComponent(did)}/`, ContinuationToken: token }),
      )
      for (const o of res.Contents ?? []) if (o.Key) keys.push(o.Key)
      token = res.IsTruncated ? res.NextContinuationToken : undefined
    } while (token)
    return keys
  }

  override async deleteAllForDid(did: string): Promise<void> {
    for (const key of await this.listKeys(did)) {
      await this.send((m) => new m.DeleteObjectCommand({ Bucket: this.s3.bucket, Key: key }))
    }
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } }
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404
}
