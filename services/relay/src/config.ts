/**
 * The relay's configuration, read once from environment variables and validated: a bad value stops the
 * process at start-up with a message naming the variable.
 */
import { resolve } from 'node:path'
import { defaultVerifyWorkers } from '@stratos/core/workers'
import { ConfigError, LOG_LEVELS, readNetworkConfig, readPackageVersion, type LogLevel, type NetworkConfig } from '@stratos/core/config'
import { readZstdDictionary, type ZstdDictionary } from './jetstream/dictionary.js'
export { ConfigError, LOG_LEVELS, type LogLevel }

/** Per-host limits. `null` = unlimited. */
export interface HostLimits {
  /** events per second (above it the relay slows down reading from the host) */
  perSecond: number | null
  /** events per hour (above it the host is throttled until the hour is over) */
  perHour: number | null
  /** events per day (above it the host is throttled until the day is over) */
  perDay: number | null
  /** accounts the relay accepts from the host; events of further new accounts are dropped */
  accounts: number | null
}

export interface RelayConfig {
  /** TCP port (0 = any free port) */
  port: number
  /** bind address */
  host: string
  /** directory for relay.sqlite (state + event log) and identity.sqlite */
  dataDirectory: string
  /** PLC directory for did:plc resolution */
  plcUrl: string
  /** HTTP Basic `admin:<password>` for the admin API; undefined disables the admin API */
  adminPassword: string | undefined
  /** how long events stay replayable (ms) */
  replayWindowMs: number
  /** byte budget of the event log (frames); undefined = no byte limit */
  replayMaxBytes: number | undefined
  /** com.atproto.sync.requestCrawl open to anyone (false: admin auth required) */
  crawlPublic: boolean
  /** new hosts accepted through public requestCrawl per 24 hours */
  newHostsPerDay: number
  /** hosts equal to or under these domains are refused and disconnected */
  bannedDomains: string[]
  /** hosts equal to or under these domains get `trustedHostLimits` */
  trustedDomains: string[]
  defaultHostLimits: HostLimits
  trustedHostLimits: HostLimits
  /** development: http/ws hosts, IP and loopback hostnames, ports; private addresses in outbound fetches */
  devMode: boolean
  /** hosts to subscribe to at start (like an admin addHost) */
  initialHosts: string[]
  /** a subscriber is cut with ConsumerTooSlow when its socket holds more than this many unsent bytes */
  consumerMaxQueuedBytes: number
  /** ... or this many frames not yet handed to the socket */
  consumerMaxQueuedFrames: number
  /** upstream reconnect backoff: first delay and ceiling (ms) */
  reconnectMinMs: number
  reconnectMaxMs: number
  /** consecutive failed connection attempts after which a host goes idle (0 = never) */
  hostMaxFailures: number
  /** events of one host in process at once (verifying, or written and waiting for the WAL sync) before reading from it pauses */
  hostMaxPending: number
  /** how often retention runs (ms) */
  retentionIntervalMs: number
  /** largest repo CAR fetched when resynchronizing a desynchronized account */
  resyncMaxBytes: number
  /** serve Jetstream's JSON stream at GET /subscribe on the relay's port */
  jetstreamEnabled: boolean
  /** open /subscribe connections from one client address */
  jetstreamMaxPerIp: number
  /** /subscribe compress=true: zstd dictionary (RELAY_JETSTREAM_ZSTD_DICTIONARY); null: plain zstd frames */
  jetstreamZstdDictionary: ZstdDictionary | null
  /** v2 zstdDictionary=<id>: zstd dictionary (RELAY_JETSTREAM_V2_ZSTD_DICTIONARY); null: v2 compression refused */
  jetstreamZstdDictionaryV2: ZstdDictionary | null
  /** trusted proxies, connection caps, request timeout (RELAY_TRUSTED_PROXIES, ...) */
  network?: NetworkConfig
  /** open com.atproto.sync.subscribeRepos connections from one client address */
  subscribeMaxPerIp: number
  /** worker threads verifying #commit/#sync (0: verify on the main thread) */
  verifyWorkers: number
  /** listReposByCollection: fetch the repos of accounts whose records the relay has not counted yet */
  collectionBackfill: boolean
  logLevel: LogLevel
  version: string
}


export const DEFAULT_PORT = 2584
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_DATA_DIRECTORY = './data/relay'
export const DEFAULT_PLC_URL = 'https://plc.directory'

export const DEFAULT_HOST_LIMITS: HostLimits = { perSecond: 50, perHour: 10_000, perDay: 100_000, accounts: 1_000 }
export const DEFAULT_TRUSTED_HOST_LIMITS: HostLimits = { perSecond: 5_000, perHour: null, perDay: null, accounts: null }

export function packageVersion(): string {
  return readPackageVersion(new URL('../package.json', import.meta.url))
}

type Env = Record<string, string | undefined>

/** A zstd dictionary file named by an env var, read and checked now (null when the var is not set). */
function dictionary(r: Reader, name: string): ZstdDictionary | null {
  const path = r.str(name)
  if (path === undefined) return null
  const dict = readZstdDictionary(path)
  if (typeof dict === 'string') {
    r.errors.push(`${name}: ${dict}`)
    return null
  }
  return dict
}

class Reader {
  readonly errors: string[] = []
  constructor(private readonly env: Env) {}

  str(name: string): string | undefined {
    const v = this.env[name]
    if (v === undefined) return undefined
    const t = v.trim()
    return t === '' ? undefined : t
  }

  int(name: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const raw = this.str(name)
    if (raw === undefined) return def
    const n = Number(raw.replace(/_/g, ''))
    if (!/^-?[0-9_]+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
      this.errors.push(`${name} must be an integer between ${min} and ${max}, got "${raw}"`)
      return def
    }
    return n
  }

  num(name: string, def: number, min: number): number {
    const raw = this.str(name)
    if (raw === undefined) return def
    const n = Number(raw)
    if (!Number.isFinite(n) || n < min) {
      this.errors.push(`${name} must be a number >= ${min}, got "${raw}"`)
      return def
    }
    return n
  }

  /** a limit: integer >= 0, or "none"/"unlimited" for no limit */
  limit(name: string, def: number | null): number | null {
    const raw = this.str(name)
    if (raw === undefined) return def
    if (/^(none|unlimited|off)$/i.test(raw)) return null
    const n = Number(raw.replace(/_/g, ''))
    if (!/^[0-9_]+$/.test(raw) || !Number.isSafeInteger(n)) {
      this.errors.push(`${name} must be a non-negative integer or "none", got "${raw}"`)
      return def
    }
    return n
  }

  bool(name: string, def: boolean): boolean {
    const raw = this.str(name)
    if (raw === undefined) return def
    if (/^(1|true|yes|on)$/i.test(raw)) return true
    if (/^(0|false|no|off)$/i.test(raw)) return false
    this.errors.push(`${name} must be true or false, got "${raw}"`)
    return def
  }

  list(name: string): string[] {
    const raw = this.str(name)
    if (raw === undefined) return []
    return raw
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s.length > 0)
  }

  url(name: string, def: string): string {
    const raw = this.str(name) ?? def
    try {
      const u = new URL(raw)
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme')
      return raw.replace(/\/+$/, '')
    } catch {
      this.errors.push(`${name} must be an http(s) URL, got "${raw}"`)
      return def
    }
  }
}

/**
 * Reads the configuration from the environment (see README.md for every variable). Throws ConfigError
 * listing every problem found.
 */
export function readConfig(env: Env = process.env): RelayConfig {
  const r = new Reader(env)

  const port = r.int('RELAY_PORT', DEFAULT_PORT, 0, 65535)
  const host = r.str('RELAY_HOST') ?? DEFAULT_HOST
  const dataDirectory = resolve(r.str('RELAY_DATA_DIRECTORY') ?? DEFAULT_DATA_DIRECTORY)
  const plcUrl = r.url('RELAY_PLC_URL', r.str('STRATOS_PLC_URL') ?? DEFAULT_PLC_URL)
  const adminPassword = r.str('RELAY_ADMIN_PASSWORD')

  const replayHours = r.num('RELAY_REPLAY_WINDOW_HOURS', 72, 0)
  const replayMaxBytes = r.limit('RELAY_REPLAY_MAX_BYTES', 10 * 1024 ** 3)

  const logLevel = (r.str('LOG_LEVEL') ?? r.str('RELAY_LOG_LEVEL') ?? 'info').toLowerCase()
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    r.errors.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`)
  }

  const defaults: HostLimits = {
    perSecond: r.limit('RELAY_HOST_LIMIT_PER_SECOND', DEFAULT_HOST_LIMITS.perSecond),
    perHour: r.limit('RELAY_HOST_LIMIT_PER_HOUR', DEFAULT_HOST_LIMITS.perHour),
    perDay: r.limit('RELAY_HOST_LIMIT_PER_DAY', DEFAULT_HOST_LIMITS.perDay),
    accounts: r.limit('RELAY_HOST_ACCOUNT_LIMIT', DEFAULT_HOST_LIMITS.accounts),
  }
  const trusted: HostLimits = {
    perSecond: r.limit('RELAY_TRUSTED_HOST_LIMIT_PER_SECOND', DEFAULT_TRUSTED_HOST_LIMITS.perSecond),
    perHour: r.limit('RELAY_TRUSTED_HOST_LIMIT_PER_HOUR', DEFAULT_TRUSTED_HOST_LIMITS.perHour),
    perDay: r.limit('RELAY_TRUSTED_HOST_LIMIT_PER_DAY', DEFAULT_TRUSTED_HOST_LIMITS.perDay),
    accounts: r.limit('RELAY_TRUSTED_HOST_ACCOUNT_LIMIT', DEFAULT_TRUSTED_HOST_LIMITS.accounts),
  }
  if (defaults.perSecond === 0 || trusted.perSecond === 0) {
    r.errors.push('RELAY_HOST_LIMIT_PER_SECOND / RELAY_TRUSTED_HOST_LIMIT_PER_SECOND must be at least 1 (or "none")')
  }

  const config: RelayConfig = {
    port,
    host,
    dataDirectory,
    plcUrl,
    adminPassword,
    replayWindowMs: Math.round(replayHours * 3600_000),
    replayMaxBytes: replayMaxBytes ?? undefined,
    crawlPublic: r.bool('RELAY_CRAWL_PUBLIC', true),
    newHostsPerDay: r.int('RELAY_NEW_HOSTS_PER_DAY', 50, 0),
    bannedDomains: r.list('RELAY_BANNED_DOMAINS'),
    trustedDomains: r.list('RELAY_TRUSTED_DOMAINS'),
    defaultHostLimits: defaults,
    trustedHostLimits: trusted,
    devMode: r.bool('RELAY_DEV_MODE', false),
    initialHosts: r.list('RELAY_CRAWL_HOSTS'),
    consumerMaxQueuedBytes: r.int('RELAY_CONSUMER_MAX_QUEUED_BYTES', 16 * 1024 * 1024, 1024),
    consumerMaxQueuedFrames: r.int('RELAY_CONSUMER_MAX_QUEUED_EVENTS', 20_000, 1),
    reconnectMinMs: r.int('RELAY_RECONNECT_MIN_MS', 1_000, 1),
    reconnectMaxMs: r.int('RELAY_RECONNECT_MAX_MS', 60_000, 1),
    hostMaxFailures: r.int('RELAY_HOST_MAX_FAILURES', 30, 0),
    hostMaxPending: r.int('RELAY_HOST_MAX_PENDING', 100, 1, 100_000),
    retentionIntervalMs: r.int('RELAY_RETENTION_INTERVAL_MS', 60_000, 100),
    resyncMaxBytes: r.int('RELAY_RESYNC_MAX_BYTES', 256 * 1024 * 1024, 1024),
    jetstreamEnabled: r.bool('RELAY_JETSTREAM_ENABLED', true),
    jetstreamMaxPerIp: r.int('RELAY_JETSTREAM_MAX_PER_IP', 32, 1),
    jetstreamZstdDictionary: dictionary(r, 'RELAY_JETSTREAM_ZSTD_DICTIONARY'),
    jetstreamZstdDictionaryV2: dictionary(r, 'RELAY_JETSTREAM_V2_ZSTD_DICTIONARY'),
    network: readNetworkConfig(
      env,
      {
        trustedProxies: 'RELAY_TRUSTED_PROXIES',
        maxConnections: 'RELAY_MAX_CONNECTIONS',
        maxConnectionsPerIp: 'RELAY_MAX_CONNECTIONS_PER_IP',
        requestTimeoutMs: 'RELAY_REQUEST_TIMEOUT_MS',
      },
      r.errors,
    ),
    collectionBackfill: r.bool('RELAY_COLLECTION_BACKFILL', true),
    subscribeMaxPerIp: r.int('RELAY_SUBSCRIBE_MAX_PER_IP', 32, 1),
    verifyWorkers: r.int('RELAY_VERIFY_WORKERS', defaultVerifyWorkers(), 0, 256),
    logLevel: logLevel as LogLevel,
    version: r.str('RELAY_VERSION') ?? packageVersion(),
  }
  if (config.reconnectMaxMs < config.reconnectMinMs) {
    r.errors.push('RELAY_RECONNECT_MAX_MS must be >= RELAY_RECONNECT_MIN_MS')
  }
  if (r.errors.length > 0) throw new ConfigError(`invalid relay configuration:\n  ${r.errors.join('\n  ')}`)
  return config
}
