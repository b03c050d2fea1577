import { defaultVerifyWorkers } from '@stratos/core/workers'
import { join, resolve } from 'node:path'
import { ConfigError, LOG_LEVELS, readNetworkConfig, readPackageVersion, type LogLevel, type NetworkConfig } from '@stratos/core/config'
export { ConfigError, LOG_LEVELS, type LogLevel }

export interface AppViewConfig {
  /** TCP port (0 = any free port) */
  port: number
  host: string
  /** data directory (SQLite database, image cache, generated signing key); null = nothing on disk */
  dataDirectory: string | null
  /** a postgres:// URL, a SQLite file path, or ':memory:' */
  dbUrl: string
  /** PostgreSQL schema (search_path); default public */
  dbSchema?: string
  plcUrl: string
  /** relay to follow (its com.atproto.sync.subscribeRepos) */
  relayUrl?: string
  /** PDSes to follow directly */
  pdsUrls: string[]
  /** the AppView's did:web; default did:web:<host of publicUrl> */
  did?: string
  /** hex k256 private key for the #atproto key of the DID document */
  signingKeyHex?: string
  /** base URL clients reach this AppView at (image URLs, DID document); default http://<host>:<port> */
  publicUrl?: string
  adminPassword?: string
  /** development: private addresses, http did:web on localhost */
  devMode: boolean
  /** development: where handle well-known lookups go (see core HandleResolver httpBase) */
  handleResolverUrl?: string
  logLevel: LogLevel
  version: string
  /** validate every XRPC output against the lexicons (tests; costs CPU) */
  validateOutput: boolean
  /** getRepo limits (resyncs and backfill); unset fields take the RepoFetcher defaults */
  repoFetch?: RepoFetchConfig
  /** backfill every upstream repo on first start (and resume an unfinished one); default true */
  backfillOnStart?: boolean
  /** repos fetched and indexed at once by the network backfill (default 32) */
  backfillConcurrency?: number
  /** CAR bytes of the repos in flight above which the backfill starts no new repo (default 64 MiB) */
  backfillMaxBytes?: number
  /** worker threads verifying live #commit events (0 or unset: in the main thread) */
  verifyWorkers?: number
  /** worker threads answering the read-only methods on read-only connections (SQLite files; 0 or unset: in the main thread) */
  readWorkers?: number
  /** rows of statement results each read worker keeps while the database does not change (0: none; default 200,000) */
  readCacheRows?: number
  /** labelers followed whatever records say, and applied when a request names none (atproto-accept-labelers) */
  labelers: string[]
  /** the AppView's own moderation service: its !takedown / !suspend labels remove content; always applied */
  modServiceDid?: string
  /** how often the labelers declared by indexed app.bsky.labeler.service records are looked up (ms) */
  labelerRefreshMs: number
  /** trusted proxies, connection caps, request timeout (APPVIEW_TRUSTED_PROXIES, ...) */
  network?: NetworkConfig
  /** size limit of the on-disk image cache, bytes (APPVIEW_IMAGE_CACHE_MAX_BYTES; default 1 GiB) */
  imageCacheMaxBytes?: number
}

export interface RepoFetchConfig {
  concurrency?: number
  hostConcurrency?: number
  hostQueueLimit?: number
  minBytesPerSec?: number
  rateWindowMs?: number
  timeoutMs?: number
}


export const DEFAULT_PORT = 2585
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_DATA_DIRECTORY = './data/appview'
export const DB_FILE_NAME = 'appview.sqlite'
export const DEFAULT_PLC_URL = 'https://plc.directory'

export function packageVersion(): string {
  return readPackageVersion(new URL('../package.json', import.meta.url))
}

function nonEmpty(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]
  if (v === undefined) return undefined
  const trimmed = v.trim()
  return trimmed === '' ? undefined : trimmed
}

function parseBool(raw: string | undefined, name: string, errors: string[]): boolean {
  if (raw === undefined) return false
  const v = raw.toLowerCase()
  if (['1', 'true', 'yes', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'off'].includes(v)) return false
  errors.push(`${name} must be true or false, got "${raw}"`)
  return false
}

function httpUrl(raw: string, name: string, errors: string[], protocols = ['http:', 'https:']): string | undefined {
  try {
    const u = new URL(raw)
    if (!protocols.includes(u.protocol)) {
      errors.push(`${name} must be an ${protocols.join(' or ')} URL, got "${raw}"`)
      return undefined
    }
    return raw.replace(/\/+$/, '')
  } catch {
    errors.push(`${name} must be a URL, got "${raw}"`)
    return undefined
  }
}

/**
 * Reads the configuration from the environment once, failing with a message naming every bad variable.
 * See README.md for the variables.
 */
export function readConfig(env: NodeJS.ProcessEnv = process.env): AppViewConfig {
  const errors: string[] = []

  let port = DEFAULT_PORT
  const portRaw = nonEmpty(env, 'APPVIEW_PORT')
  if (portRaw !== undefined) {
    const n = Number(portRaw)
    if (!/^\d+$/.test(portRaw) || n > 65535) errors.push(`APPVIEW_PORT must be an integer between 0 and 65535, got "${portRaw}"`)
    else port = n
  }
  const host = nonEmpty(env, 'APPVIEW_HOST') ?? DEFAULT_HOST
  if (/\s|\//.test(host)) errors.push(`APPVIEW_HOST must be a host name or IP address, got "${host}"`)

  const dataDirectory = resolve(nonEmpty(env, 'APPVIEW_DATA_DIRECTORY') ?? DEFAULT_DATA_DIRECTORY)
  const dbRaw = nonEmpty(env, 'APPVIEW_DB_URL')
  let dbUrl: string
  if (dbRaw === undefined) dbUrl = join(dataDirectory, DB_FILE_NAME)
  else if (/^postgres(ql)?:\/\//.test(dbRaw) || dbRaw === ':memory:') dbUrl = dbRaw
  else if (/^[a-z]+:\/\//i.test(dbRaw)) {
    errors.push(`APPVIEW_DB_URL must be a postgres:// URL or a SQLite file path, got "${dbRaw}"`)
    dbUrl = dbRaw
  } else dbUrl = resolve(dataDirectory, dbRaw)
  const dbSchema = nonEmpty(env, 'APPVIEW_DB_SCHEMA')
  if (dbSchema !== undefined && !/^[a-z_][a-z0-9_]*$/.test(dbSchema)) {
    errors.push(`APPVIEW_DB_SCHEMA must be a lowercase SQL identifier, got "${dbSchema}"`)
  }

  const plcRaw = nonEmpty(env, 'APPVIEW_PLC_URL') ?? nonEmpty(env, 'STRATOS_PLC_URL') ?? DEFAULT_PLC_URL
  const plcUrl = httpUrl(plcRaw, 'APPVIEW_PLC_URL', errors) ?? DEFAULT_PLC_URL

  const relayRaw = nonEmpty(env, 'APPVIEW_RELAY_URL')
  const relayUrl = relayRaw ? httpUrl(relayRaw, 'APPVIEW_RELAY_URL', errors, ['http:', 'https:', 'ws:', 'wss:']) : undefined
  const pdsUrls: string[] = []
  for (const part of (nonEmpty(env, 'APPVIEW_PDS_URLS') ?? '').split(',')) {
    const p = part.trim()
    if (!p) continue
    const u = httpUrl(p, 'APPVIEW_PDS_URLS', errors, ['http:', 'https:', 'ws:', 'wss:'])
    if (u) pdsUrls.push(u)
  }

  const publicRaw = nonEmpty(env, 'APPVIEW_PUBLIC_URL')
  const publicUrl = publicRaw ? httpUrl(publicRaw, 'APPVIEW_PUBLIC_URL', errors) : undefined
  const did = nonEmpty(env, 'APPVIEW_DID')
  if (did !== undefined && !/^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/.test(did)) {
    errors.push(`APPVIEW_DID must be a DID (normally did:web:<host>), got "${did}"`)
  }
  const signingKeyHex = nonEmpty(env, 'APPVIEW_SIGNING_KEY_K256_PRIVATE_KEY_HEX')
  if (signingKeyHex !== undefined && !/^[0-9a-fA-F]{64}$/.test(signingKeyHex)) {
    errors.push('APPVIEW_SIGNING_KEY_K256_PRIVATE_KEY_HEX must be 32 bytes of hex (64 characters)')
  }
  const adminPassword = nonEmpty(env, 'APPVIEW_ADMIN_PASSWORD')
  const devMode = parseBool(nonEmpty(env, 'APPVIEW_DEV_MODE'), 'APPVIEW_DEV_MODE', errors)
  const handleRaw = nonEmpty(env, 'APPVIEW_HANDLE_RESOLVER_URL')
  const handleResolverUrl = handleRaw ? (handleRaw.includes('{handle}') ? handleRaw : httpUrl(handleRaw, 'APPVIEW_HANDLE_RESOLVER_URL', errors)) : undefined

  const logLevelRaw = (nonEmpty(env, 'LOG_LEVEL') ?? 'info').toLowerCase()
  let logLevel: LogLevel = 'info'
  if ((LOG_LEVELS as readonly string[]).includes(logLevelRaw)) logLevel = logLevelRaw as LogLevel
  else errors.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevelRaw}"`)
  const validateOutput = parseBool(nonEmpty(env, 'APPVIEW_VALIDATE_OUTPUT'), 'APPVIEW_VALIDATE_OUTPUT', errors)

  const int = (name: string, min: number, max: number): number | undefined => {
    const raw = nonEmpty(env, name)
    if (raw === undefined) return undefined
    const n = Number(raw)
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      errors.push(`${name} must be an integer between ${min} and ${max}, got "${raw}"`)
      return undefined
    }
    return n
  }
  const repoFetch: RepoFetchConfig = {}
  const setFetch = <K extends keyof RepoFetchConfig>(key: K, v: number | undefined) => {
    if (v !== undefined) repoFetch[key] = v
  }
  setFetch('concurrency', int('APPVIEW_REPO_FETCH_CONCURRENCY', 1, 1024))
  setFetch('hostConcurrency', int('APPVIEW_REPO_FETCH_HOST_CONCURRENCY', 1, 1024))
  setFetch('hostQueueLimit', int('APPVIEW_REPO_FETCH_HOST_QUEUE', 0, 1_000_000))
  setFetch('minBytesPerSec', int('APPVIEW_REPO_FETCH_MIN_BYTES_PER_SEC', 0, 1_000_000_000))
  setFetch('rateWindowMs', int('APPVIEW_REPO_FETCH_RATE_WINDOW_MS', 100, 3_600_000))
  setFetch('timeoutMs', int('APPVIEW_REPO_FETCH_TIMEOUT_MS', 1000, 86_400_000))
  const backfillRaw = nonEmpty(env, 'APPVIEW_BACKFILL')
  const backfillOnStart = backfillRaw === undefined ? true : parseBool(backfillRaw, 'APPVIEW_BACKFILL', errors)
  const backfillConcurrency = int('APPVIEW_BACKFILL_CONCURRENCY', 1, 1024)
  const backfillMaxBytes = int('APPVIEW_BACKFILL_MAX_BYTES', 1024 * 1024, Number.MAX_SAFE_INTEGER)
  const verifyWorkers = int('APPVIEW_VERIFY_WORKERS', 0, 256) ?? defaultVerifyWorkers()
  const readWorkers = int('APPVIEW_READ_WORKERS', 0, 256) ?? defaultVerifyWorkers()
  const labelers: string[] = []
  for (const part of (nonEmpty(env, 'APPVIEW_LABELERS') ?? '').split(',')) {
    const d = part.trim()
    if (!d) continue
    if (!/^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/.test(d)) errors.push(`APPVIEW_LABELERS must be a comma-separated list of DIDs, got "${d}"`)
    else if (!labelers.includes(d)) labelers.push(d)
  }
  const modServiceDid = nonEmpty(env, 'APPVIEW_MOD_SERVICE_DID')
  if (modServiceDid && !/^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/.test(modServiceDid)) {
    errors.push(`APPVIEW_MOD_SERVICE_DID must be a DID, got "${modServiceDid}"`)
  }
  const refreshRaw = nonEmpty(env, 'APPVIEW_LABELER_REFRESH_MS')
  let labelerRefreshMs = 30_000
  if (refreshRaw !== undefined) {
    labelerRefreshMs = Number(refreshRaw)
    if (!/^\d+$/.test(refreshRaw) || labelerRefreshMs < 100) {
      errors.push(`APPVIEW_LABELER_REFRESH_MS must be an integer >= 100, got "${refreshRaw}"`)
      labelerRefreshMs = 30_000
    }
  }
  const network = readNetworkConfig(
    env,
    {
      trustedProxies: 'APPVIEW_TRUSTED_PROXIES',
      maxConnections: 'APPVIEW_MAX_CONNECTIONS',
      maxConnectionsPerIp: 'APPVIEW_MAX_CONNECTIONS_PER_IP',
      requestTimeoutMs: 'APPVIEW_REQUEST_TIMEOUT_MS',
    },
    errors,
  )
  let imageCacheMaxBytes: number | undefined
  const cacheRaw = nonEmpty(env, 'APPVIEW_IMAGE_CACHE_MAX_BYTES')
  if (cacheRaw !== undefined) {
    if (!/^\d+$/.test(cacheRaw) || !Number.isSafeInteger(Number(cacheRaw))) errors.push(`APPVIEW_IMAGE_CACHE_MAX_BYTES must be a byte count, got "${cacheRaw}"`)
    else imageCacheMaxBytes = Number(cacheRaw)
  }

  if (errors.length > 0) throw new ConfigError(`invalid AppView configuration:\n  ${errors.join('\n  ')}`)

  const config: AppViewConfig = {
    port,
    host,
    dataDirectory,
    dbUrl,
    plcUrl,
    pdsUrls,
    devMode,
    logLevel,
    version: nonEmpty(env, 'APPVIEW_VERSION') ?? packageVersion(),
    validateOutput,
    backfillOnStart,
    labelers,
    labelerRefreshMs,
    network,
  }
  if (Object.keys(repoFetch).length > 0) config.repoFetch = repoFetch
  if (backfillConcurrency !== undefined) config.backfillConcurrency = backfillConcurrency
  if (backfillMaxBytes !== undefined) config.backfillMaxBytes = backfillMaxBytes
  config.verifyWorkers = verifyWorkers
  config.readWorkers = readWorkers
  if (modServiceDid) config.modServiceDid = modServiceDid
  if (imageCacheMaxBytes !== undefined) config.imageCacheMaxBytes = imageCacheMaxBytes
  if (dbSchema) config.dbSchema = dbSchema
  if (relayUrl) config.relayUrl = relayUrl
  if (did) config.did = did
  if (signingKeyHex) config.signingKeyHex = signingKeyHex.toLowerCase()
  if (publicUrl) config.publicUrl = publicUrl
  if (adminPassword) config.adminPassword = adminPassword
  if (handleResolverUrl) config.handleResolverUrl = handleResolverUrl
  return config
}

/** did:web for a public URL: did:web:<host>, the port percent-encoded (did:web:localhost%3A2585). */
export function didWebFor(publicUrl: string): string {
  const u = new URL(publicUrl)
  return `did:web:${u.port ? `${u.hostname}%3A${u.port}` : u.hostname}`
}
