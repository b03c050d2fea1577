/**
 * Backup and restore of a PDS's data: a consistent snapshot of every SQLite database (SQLite's online
 * backup API, so the PDS keeps running and writing), the blobs, and a manifest with each file's size and
 * sha256. To a directory, or to an S3-compatible bucket (`s3://bucket/prefix`).
 *
 * Snapshot order: the service databases first, then the account stores, then the blobs. A repo written
 * meanwhile is then at least as new in its store as in account.sqlite, which the PDS repairs at start
 * (a store ahead of the service database is announced with #sync); blobs are written before the records
 * that reference them, so every blob a snapshot store references is in the copied blobs.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import type { PdsConfig } from './config.js'

export const MANIFEST = 'stratos-pds-backup.json'

export interface BackupFile {
  /** path inside the backup, '/'-separated: db/<name>, actors/<shard>/<did>/store.sqlite, blobs/<did>/<cid> */
  path: string
  size: number
  sha256: string
}

export interface BackupManifest {
  format: 1
  createdAt: string
  hostname: string
  did: string
  /** blobs in S3 storage are not copied: they stay in the PDS's bucket */
  blobsIncluded: boolean
  files: BackupFile[]
}

export interface S3Location {
  bucket: string
  prefix: string
  region: string
  endpoint?: string
  forcePathStyle: boolean
  accessKeyId?: string
  secretAccessKey?: string
}

/** `s3://bucket/some/prefix` -> bucket and prefix, or null for a directory path. */
export function parseS3Url(target: string): { bucket: string; prefix: string } | null {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(target)
  if (!m) return null
  return { bucket: m[1]!, prefix: m[2]!.replace(/\/+$/, '') }
}

function sha256File(file: string): { size: number; sha256: string } {
  const hash = createHash('sha256')
  const fd = fs.openSync(file, 'r')
  const buf = Buffer.allocUnsafe(1 << 20)
  let size = 0
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null)
      if (n === 0) break
      hash.update(buf.subarray(0, n))
      size += n
    }
  } finally {
    fs.closeSync(fd)
  }
  return { size, sha256: hash.digest('hex') }
}

function walk(dir: string, skip: (p: string) => boolean = () => false): string[] {
  if (!fs.existsSync(dir)) return []
  const out: string[] = []
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (skip(p)) continue
    if (entry.isDirectory()) out.push(...walk(p, skip))
    else if (entry.isFile()) out.push(p)
  }
  return out.sort()
}

/** Where each part of the backup lives in this PDS's configuration. */
function layout(cfg: PdsConfig) {
  return {
    dbs: {
      'db/account.sqlite': cfg.db.accountDbPath,
      'db/sequencer.sqlite': cfg.db.sequencerDbPath,
      'db/did_cache.sqlite': cfg.db.didCacheDbPath,
    } as Record<string, string>,
    actors: cfg.db.actorStoreDirectory,
    blobs: cfg.blobstore.s3 ? null : cfg.blobstore.location,
    blobsTemp: cfg.blobstore.tempLocation,
  }
}

async function snapshotDb(source: string, dest: string): Promise<void> {
  fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 })
  const db = new Database(source, { readonly: true, fileMustExist: true })
  try {
    await db.backup(dest)
  } finally {
    db.close()
  }
  fs.chmodSync(dest, 0o600)
}

/**
 * Writes a snapshot of the PDS described by `cfg` into the empty or new directory `dir` (works while the
 * PDS runs). Returns the manifest (also written to `dir`).
 */
export async function backupToDirectory(cfg: PdsConfig, dir: string, onProgress?: (line: string) => void): Promise<BackupManifest> {
  const l = layout(cfg)
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (fs.readdirSync(dir).length > 0) throw new Error(`backup directory ${dir} is not empty`)
  if (!fs.existsSync(cfg.db.accountDbPath)) throw new Error(`no PDS data at ${cfg.db.directory} (${cfg.db.accountDbPath} is missing)`)
  const files: string[] = []
  for (const [rel, source] of Object.entries(l.dbs)) {
    if (!fs.existsSync(source)) continue
    await snapshotDb(source, path.join(dir, rel))
    files.push(rel)
  }
  const stores = walk(l.actors).filter((f) => f.endsWith('.sqlite'))
  for (const store of stores) {
    const rel = path.posix.join('actors', ...path.relative(l.actors, store).split(path.sep))
    await snapshotDb(store, path.join(dir, rel))
    files.push(rel)
  }
  onProgress?.(`${files.length} databases copied (${stores.length} account stores)`)
  if (l.blobs) {
    const temp = path.resolve(l.blobsTemp)
    const blobs = walk(l.blobs, (p) => path.resolve(p) === temp)
    for (const blob of blobs) {
      const rel = path.posix.join('blobs', ...path.relative(l.blobs, blob).split(path.sep))
      const dest = path.join(dir, rel)
      fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 })
      try {
        fs.copyFileSync(blob, dest)
      } catch (err) {
        // deleted since the listing (its record was deleted): not part of the snapshot
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw err
      }
      fs.chmodSync(dest, 0o600)
      files.push(rel)
    }
    onProgress?.(`${blobs.length} blobs copied`)
  }
  const manifest: BackupManifest = {
    format: 1,
    createdAt: new Date().toISOString(),
    hostname: cfg.service.hostname,
    did: cfg.service.did,
    blobsIncluded: l.blobs !== null,
    files: files.map((rel) => ({ path: rel, ...sha256File(path.join(dir, rel)) })),
  }
  fs.writeFileSync(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 })
  return manifest
}

function readManifest(dir: string): BackupManifest {
  let manifest: BackupManifest
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), 'utf8')) as BackupManifest
  } catch (err) {
    throw new Error(`${dir} is not a Stratos PDS backup (${MANIFEST}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  if (manifest.format !== 1 || !Array.isArray(manifest.files)) throw new Error(`unknown backup format in ${dir}`)
  return manifest
}

/** Checks every file of a backup directory against its manifest; returns the manifest. */
export function verifyBackupDirectory(dir: string): BackupManifest {
  const manifest = readManifest(dir)
  for (const f of manifest.files) {
    if (f.path.split('/').includes('..') || path.isAbsolute(f.path)) throw new Error(`unsafe path in the manifest: ${f.path}`)
    const file = path.join(dir, ...f.path.split('/'))
    if (!fs.existsSync(file)) throw new Error(`backup file missing: ${f.path}`)
    const got = sha256File(file)
    if (got.size !== f.size || got.sha256 !== f.sha256) throw new Error(`backup file damaged: ${f.path} (sha256 differs)`)
  }
  return manifest
}

/**
 * Restores a backup directory into the (stopped) PDS described by `cfg`, whose data directory must not
 * hold a PDS yet. Every file is checked against the manifest first.
 */
export function restoreFromDirectory(cfg: PdsConfig, dir: string, onProgress?: (line: string) => void): BackupManifest {
  const manifest = verifyBackupDirectory(dir)
  const l = layout(cfg)
  for (const target of Object.values(l.dbs)) {
    if (fs.existsSync(target)) throw new Error(`${target} exists: restore only into an empty data directory (stop the PDS and move its data away first)`)
  }
  if (walk(l.actors).length > 0) throw new Error(`${l.actors} is not empty: restore only into an empty data directory`)
  if (manifest.blobsIncluded && !l.blobs) throw new Error('the backup holds blobs but this PDS keeps its blobs in S3 (PDS_BLOBSTORE_S3_BUCKET)')
  if (manifest.hostname !== cfg.service.hostname) {
    onProgress?.(`note: the backup is of ${manifest.hostname}, this configuration is for ${cfg.service.hostname}`)
  }
  let count = 0
  for (const f of manifest.files) {
    const [top, ...rest] = f.path.split('/')
    let dest: string
    if (top === 'db') dest = l.dbs[f.path] ?? ''
    else if (top === 'actors') dest = path.join(l.actors, ...rest)
    else if (top === 'blobs' && l.blobs) dest = path.join(l.blobs, ...rest)
    else dest = ''
    if (!dest) throw new Error(`unexpected file in the backup: ${f.path}`)
    fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 })
    fs.copyFileSync(path.join(dir, ...f.path.split('/')), dest)
    fs.chmodSync(dest, 0o600)
    count++
  }
  onProgress?.(`${count} files restored`)
  return manifest
}

// ---------------------------------------------------------------------------------------------
// S3-compatible storage as the backup target

async function s3Client(loc: S3Location) {
  const { S3Client } = await import('@aws-sdk/client-s3')
  return new S3Client({
    region: loc.region,
    ...(loc.endpoint ? { endpoint: loc.endpoint } : {}),
    forcePathStyle: loc.forcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(loc.accessKeyId && loc.secretAccessKey ? { credentials: { accessKeyId: loc.accessKeyId, secretAccessKey: loc.secretAccessKey } } : {}),
  })
}

const s3Key = (loc: S3Location, rel: string) => (loc.prefix ? `${loc.prefix}/${rel}` : rel)

/** Uploads a backup directory (made by backupToDirectory) to `loc`; the manifest goes last. */
export async function uploadBackup(dir: string, loc: S3Location): Promise<void> {
  const manifest = verifyBackupDirectory(dir)
  const { PutObjectCommand, ListObjectsV2Command } = await import('@aws-sdk/client-s3')
  const client = await s3Client(loc)
  try {
    const existing = await client.send(new ListObjectsV2Command({ Bucket: loc.bucket, Prefix: s3Key(loc, MANIFEST), MaxKeys: 1 }))
    if ((existing.Contents ?? []).length > 0) throw new Error(`s3://${loc.bucket}/${s3Key(loc, MANIFEST)} exists: choose a new prefix`)
    for (const rel of [...manifest.files.map((f) => f.path), MANIFEST]) {
      const file = path.join(dir, ...rel.split('/'))
      await client.send(
        new PutObjectCommand({ Bucket: loc.bucket, Key: s3Key(loc, rel), Body: fs.createReadStream(file), ContentLength: fs.statSync(file).size }),
      )
    }
  } finally {
    client.destroy()
  }
}

/** Downloads a backup from `loc` into the new or empty directory `dir` and verifies it. */
export async function downloadBackup(loc: S3Location, dir: string): Promise<BackupManifest> {
  const { GetObjectCommand } = await import('@aws-sdk/client-s3')
  const client = await s3Client(loc)
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (fs.readdirSync(dir).length > 0) throw new Error(`${dir} is not empty`)
  const get = async (rel: string, dest: string) => {
    const res = await client.send(new GetObjectCommand({ Bucket: loc.bucket, Key: s3Key(loc, rel) }))
    fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 })
    const { pipeline } = await import('node:stream/promises')
    await pipeline(res.Body as NodeJS.ReadableStream, fs.createWriteStream(dest, { mode: 0o600 }))
  }
  try {
    await get(MANIFEST, path.join(dir, MANIFEST))
    const manifest = readManifest(dir)
    for (const f of manifest.files) {
      if (f.path.split('/').includes('..')) throw new Error(`unsafe path in the manifest: ${f.path}`)
      await get(f.path, path.join(dir, ...f.path.split('/')))
    }
    return verifyBackupDirectory(dir)
  } finally {
    client.destroy()
  }
}

/**
 * An S3 target from `s3://bucket/prefix` and STRATOS_BACKUP_S3_ENDPOINT, _REGION, _FORCE_PATH_STYLE,
 * _ACCESS_KEY_ID, _SECRET_ACCESS_KEY (without keys: the AWS SDK's default credential chain).
 */
export function s3LocationFromEnv(target: string, env: Record<string, string | undefined>): S3Location | null {
  const parsed = parseS3Url(target)
  if (!parsed) return null
  const v = (name: string) => env[`STRATOS_BACKUP_S3_${name}`]?.trim() || undefined
  return {
    ...parsed,
    region: v('REGION') ?? 'us-east-1',
    endpoint: v('ENDPOINT'),
    forcePathStyle: ['true', '1', 'yes'].includes((v('FORCE_PATH_STYLE') ?? '').toLowerCase()),
    accessKeyId: v('ACCESS_KEY_ID'),
    secretAccessKey: v('SECRET_ACCESS_KEY'),
  }
}

/** Backs up to a directory or to `s3://bucket/prefix` (staged in a temporary directory beside the data). */
export async function backupPds(
  cfg: PdsConfig,
  target: string,
  env: Record<string, string | undefined>,
  onProgress?: (line: string) => void,
): Promise<BackupManifest> {
  const s3 = s3LocationFromEnv(target, env)
  if (!s3) return backupToDirectory(cfg, target, onProgress)
  const staging = fs.mkdtempSync(path.join(cfg.db.directory, '.backup-'))
  try {
    const manifest = await backupToDirectory(cfg, staging, onProgress)
    await uploadBackup(staging, s3)
    onProgress?.(`uploaded to ${target}`)
    return manifest
  } finally {
    fs.rmSync(staging, { recursive: true, force: true })
  }
}

/** Restores from a directory or from `s3://bucket/prefix` into the stopped, empty PDS of `cfg`. */
export async function restorePds(
  cfg: PdsConfig,
  source: string,
  env: Record<string, string | undefined>,
  onProgress?: (line: string) => void,
): Promise<BackupManifest> {
  const s3 = s3LocationFromEnv(source, env)
  if (!s3) return restoreFromDirectory(cfg, source, onProgress)
  fs.mkdirSync(cfg.db.directory, { recursive: true, mode: 0o700 })
  const staging = fs.mkdtempSync(path.join(cfg.db.directory, '.restore-'))
  try {
    const dl = path.join(staging, 'backup')
    await downloadBackup(s3, dl)
    onProgress?.(`downloaded ${source}`)
    return restoreFromDirectory(cfg, dl, onProgress)
  } finally {
    fs.rmSync(staging, { recursive: true, force: true })
  }
}
