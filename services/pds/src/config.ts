import path from 'node:path'
import { readNetworkConfig, type NetworkConfig } from '@stratos/core/config'

/**
 * PDS configuration, read once from the environment. Variable names follow the reference PDS wherever
 * the meaning is the same, so an operator can move over without relearning them.
 */
export interface PdsConfig {
  service: {
    hostname: string
    port: number
    /** interface to bind; defaults to all interfaces (127.0.0.1 for loopback hostnames) */
    bindHost: string
    /** origin clients and the DID document use, e.g. https://pds.example.com */
    publicUrl: string
    did: string
    version: string
    devMode: boolean
    blobUploadLimit: number
    /** com.atproto.repo.importRepo is served (PDS_ACCEPTING_REPO_IMPORTS) */
    acceptingImports: boolean
    /** largest repo CAR importRepo takes, bytes (PDS_MAX_REPO_IMPORT_SIZE) */
    maxImportSize: number
    serviceName: string
    privacyPolicyUrl?: string
    termsOfServiceUrl?: string
    contactEmailAddress?: string
  }
  db: {
    directory: string
    accountDbPath: string
    sequencerDbPath: string
    didCacheDbPath: string
    actorStoreDirectory: string
    /** open per-account SQLite handles kept (LRU), plus as many recently evicted ones */
    actorStoreCacheSize: number
    /** worker threads that build, sign and store commits (0: the main thread does) */
    writeWorkers: number
  }
  blobstore: {
    location: string
    tempLocation: string
    /** blobs in an S3-compatible bucket instead of `location` (PDS_BLOBSTORE_S3_*); uploads still land in tempLocation */
    s3: {
      bucket: string
      region: string
      endpoint?: string
      forcePathStyle: boolean
      accessKeyId?: string
      secretAccessKey?: string
      uploadTimeoutMs: number
    } | null
  }
  identity: {
    plcUrl: string
    serviceHandleDomains: string[]
    /** did:key placed above the PDS rotation key in every new did:plc (PDS_RECOVERY_DID_KEY) */
    recoveryDidKey: string | null
    /** private addresses may be resolved (dev mode) */
    allowPrivateAddresses: boolean
  }
  invites: {
    required: boolean
    /** an account earns one invite code per this many ms since it signed up (PDS_INVITE_INTERVAL); null: none */
    interval: number | null
  }
  secrets: { jwtSecret: string; adminPassword: string; plcRotationKeyHex: string }
  bskyAppView: { url: string; did: string } | null
  /** where com.atproto.moderation.createReport goes (PDS_REPORT_SERVICE_URL / _DID), e.g. Bluesky's moderation */
  reportService: { url: string; did: string } | null
  crawlers: string[]
  email: { smtpUrl: string; fromAddress: string } | null
  rateLimits: { enabled: boolean; bypassKey?: string }
  /** per-account limit on uploads not yet referenced by a record (PDS_TEMP_BLOB_MAX_COUNT / _BYTES) */
  tempBlobQuota: { maxCount: number; maxBytes: number }
  /** repo imports (importRepo) running at once (PDS_MAX_CONCURRENT_IMPORTS) */
  maxConcurrentImports: number
  /** 32-byte key (hex or base64) encrypting account signing keys at rest (PDS_SIGNING_KEY_ENCRYPTION_KEY) */
  signingKeyEncryptionKey: Buffer | null
  subscription: { backfillLimitMs: number; maxBuffer: number; maxPerIp: number }
  auth: {
    accessTokenTtlSec: number
    refreshTokenTtlSec: number
    /** how long a rotated refresh token may still be presented (a client retry), in ms */
    refreshGraceMs: number
  }
  /** the OAuth authorization server (sign-in for third-party apps) */
  oauth: {
    /** issuer identifier (PDS_OAUTH_ISSUER); defaults to the public URL */
    issuer: string
    /** P-256 private key (hex) signing access tokens (PDS_OAUTH_SIGNING_KEY_P256_PRIVATE_KEY_HEX); else HS256 on PDS_JWT_SECRET */
    signingKeyHex: string | null
    logoUrl?: string
    /** e.g. rgb(0, 106, 255) or #006aff (PDS_PRIMARY_COLOR) */
    primaryColor?: string
    supportUrl?: string
    /** client ids shown as trusted on the consent page (PDS_OAUTH_TRUSTED_CLIENTS) */
    trustedClients: string[]
  }
  /** trusted proxies, connection caps, request timeout (PDS_TRUSTED_PROXIES, ...) */
  network?: NetworkConfig
  logLevel: string
  /** things worth telling the operator at start-up that do not stop it (e.g. an unknown PDS_* variable) */
  warnings: string[]
}

export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`invalid PDS configuration:\n  - ${problems.join('\n  - ')}`)
    this.name = 'ConfigError'
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/**
 * Secret values published in this repository (docker-compose.yml's development defaults, documentation
 * examples). A production PDS refuses them: anyone can read them. Compared case-insensitively.
 */
export const SAMPLE_SECRETS: readonly string[] = [
  'insecure-dev-jwt-secret-change-me',
  'admin',
  'admin-pass',
  'admin-password',
  'password',
  'changeme',
  'change-me',
  'secret',
  '3a7b0f6e4c2d19a85f61e0b2c4d7a9e13f5b8c2d6e0a4f7b1c3d5e7f9a2b4c6d',
]

/** Minimum lengths enforced outside dev mode (`stratos pds init` generates 64 and 32 hex characters). */
export const MIN_JWT_SECRET_LENGTH = 32
export const MIN_ADMIN_PASSWORD_LENGTH = 16

/** PDS_* variables read outside this file (PDS_ADMIN_EMAIL: by Caddy in deploy/pds), not reported as unknown. */
const OTHER_KNOWN_VARS = ['PDS_ADMIN_EMAIL']

/**
 * Why a secret is too weak for production, or null. A secret must be long enough, not a value published
 * in this repository, and not a repetition of a few characters ("aaaa...", "abababab...").
 */
export function weakSecretReason(value: string, minLength: number): string | null {
  if (SAMPLE_SECRETS.includes(value.toLowerCase())) return 'is a sample value published in the Stratos repository'
  if (value.length < minLength) return `is too short (${value.length} characters, at least ${minLength} needed)`
  if (new Set(value.toLowerCase()).size < 8) return 'has too few distinct characters to be random'
  return null
}

/** A 32-byte key given as 64 hex characters or base64; problems are reported by name. */
function parseEncryptionKey(value: string | undefined, problems: string[]): Buffer | null {
  if (value === undefined) return null
  const key = /^[0-9a-fA-F]{64}$/.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64')
  if (key.length !== 32) {
    problems.push('PDS_SIGNING_KEY_ENCRYPTION_KEY must be 32 random bytes, as 64 hex characters or base64 (`openssl rand -hex 32`)')
    return null
  }
  return key
}

export const isLoopbackHost = (host: string): boolean =>
  host === 'localhost' || host === '127.0.0.1' || host === '::1' || host === '[::1]' || host.endsWith('.localhost')

/**
 * Reads and validates the configuration. Every problem found is collected, and all are reported together
 * in one ConfigError, so a self-hoster fixes them in a single pass.
 */
export function readConfigFromEnv(env: Record<string, string | undefined> = process.env): PdsConfig {
  const problems: string[] = []
  const warnings: string[] = []
  const read = new Set<string>(OTHER_KNOWN_VARS)
  const str = (name: string): string | undefined => {
    read.add(name)
    const v = env[name]?.trim()
    return v ? v : undefined
  }
  const int = (name: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
    const v = str(name)
    if (v === undefined) return def
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      problems.push(`${name} must be an integer between ${min} and ${max} (got "${v}")`)
      return def
    }
    return Number(v)
  }
  const bool = (name: string, def: boolean): boolean => {
    const v = str(name)?.toLowerCase()
    if (v === undefined) return def
    if (['true', '1', 'yes', 'on'].includes(v)) return true
    if (['false', '0', 'no', 'off'].includes(v)) return false
    problems.push(`${name} must be true or false (got "${env[name]}")`)
    return def
  }
  const list = (name: string): string[] | undefined => {
    const v = str(name)
    if (v === undefined) return undefined
    return v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
  }
  const url = (name: string, value: string, devMode: boolean): string => {
    let u: URL
    try {
      u = new URL(value)
    } catch {
      problems.push(`${name} is not a URL: "${value}"`)
      return value
    }
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && devMode)) {
      problems.push(`${name} must be an https:// URL${devMode ? ' or http://' : ' (http:// needs PDS_DEV_MODE=true)'}: "${value}"`)
    }
    return value.replace(/\/+$/, '')
  }

  const devMode = bool('PDS_DEV_MODE', false)
  const hostname = str('PDS_HOSTNAME')?.toLowerCase()
  if (!hostname) problems.push('PDS_HOSTNAME is required (the public host name of this PDS, e.g. pds.example.com)')
  else if (!/^[a-z0-9.-]+$/.test(hostname) && !isLoopbackHost(hostname)) {
    problems.push(`PDS_HOSTNAME must be a bare host name without scheme, port or path (got "${hostname}")`)
  }
  // without a hostname the checks derived from it would only add noise
  const host = hostname ?? 'pds.invalid'
  const loopback = isLoopbackHost(host)
  if (loopback && !devMode) {
    problems.push(`PDS_HOSTNAME=${host} is a loopback address; set PDS_DEV_MODE=true to run a local development PDS`)
  }
  const port = int('PDS_PORT', 2583, 0, 65535)
  const publicUrl = loopback || (devMode && host.endsWith('.test')) ? `http://${host}:${port}` : `https://${host}`

  const did = str('PDS_SERVICE_DID') ?? `did:web:${host}`
  if (!/^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/.test(did)) problems.push(`PDS_SERVICE_DID is not a valid DID: "${did}"`)

  const dataDir = str('PDS_DATA_DIRECTORY')
  if (!dataDir) problems.push('PDS_DATA_DIRECTORY is required (where the PDS keeps its databases)')
  const dir = path.resolve(dataDir ?? '.')
  const blobDir = str('PDS_BLOBSTORE_DISK_LOCATION')
  const s3Bucket = str('PDS_BLOBSTORE_S3_BUCKET')
  if (!blobDir && !s3Bucket) {
    problems.push('PDS_BLOBSTORE_DISK_LOCATION (blobs on disk) or PDS_BLOBSTORE_S3_BUCKET (blobs in S3-compatible storage) is required')
  }
  if (blobDir && s3Bucket) problems.push('set either PDS_BLOBSTORE_DISK_LOCATION or PDS_BLOBSTORE_S3_BUCKET, not both')
  const blobLocation = path.resolve(blobDir ?? path.join(dir, 'blobs'))
  const s3Endpoint = str('PDS_BLOBSTORE_S3_ENDPOINT')
  if (s3Endpoint) url('PDS_BLOBSTORE_S3_ENDPOINT', s3Endpoint, devMode)
  const s3KeyId = str('PDS_BLOBSTORE_S3_ACCESS_KEY_ID')
  const s3Secret = str('PDS_BLOBSTORE_S3_SECRET_ACCESS_KEY')
  if (Boolean(s3KeyId) !== Boolean(s3Secret)) {
    problems.push('PDS_BLOBSTORE_S3_ACCESS_KEY_ID and PDS_BLOBSTORE_S3_SECRET_ACCESS_KEY must be set together')
  }
  const s3 = {
    bucket: s3Bucket ?? '',
    region: str('PDS_BLOBSTORE_S3_REGION') ?? 'us-east-1',
    endpoint: s3Endpoint,
    forcePathStyle: bool('PDS_BLOBSTORE_S3_FORCE_PATH_STYLE', false),
    accessKeyId: s3KeyId,
    secretAccessKey: s3Secret,
    uploadTimeoutMs: int('PDS_BLOBSTORE_S3_UPLOAD_TIMEOUT_MS', 20_000, 1),
  }

  let serviceHandleDomains = list('PDS_SERVICE_HANDLE_DOMAINS') ?? (loopback ? ['.test'] : [`.${host}`])
  serviceHandleDomains = serviceHandleDomains.map((d) => d.toLowerCase())
  for (const d of serviceHandleDomains) {
    if (!d.startsWith('.') || d.length < 2) {
      problems.push(`PDS_SERVICE_HANDLE_DOMAINS entries must start with a dot, like ".${host}" (got "${d}")`)
    } else if (!devMode && (d.endsWith('.test') || d.endsWith('.local') || d.endsWith('.localhost'))) {
      problems.push(`handle domain "${d}" is reserved for testing; set PDS_DEV_MODE=true to use it`)
    }
  }

  const plcUrl = url('PDS_DID_PLC_URL', str('PDS_DID_PLC_URL') ?? 'https://plc.directory', devMode)

  const recoveryDidKey = str('PDS_RECOVERY_DID_KEY') ?? null
  if (recoveryDidKey && !recoveryDidKey.startsWith('did:key:z')) {
    problems.push(`PDS_RECOVERY_DID_KEY must be a did:key (got "${recoveryDidKey}")`)
  }

  const jwtSecret = str('PDS_JWT_SECRET')
  if (!jwtSecret) problems.push('PDS_JWT_SECRET is required (a long random string; `openssl rand --hex 16`)')
  const adminPassword = str('PDS_ADMIN_PASSWORD')
  if (!adminPassword) problems.push('PDS_ADMIN_PASSWORD is required')
  const rotationKey = str('PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX')
  if (!rotationKey) {
    problems.push('PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX is required (32-byte secp256k1 private key, hex)')
  } else if (!/^[0-9a-fA-F]{64}$/.test(rotationKey)) {
    problems.push('PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX must be 64 hex characters (a 32-byte secp256k1 key)')
  }

  if (!devMode) {
    // a production PDS must not run on guessable or published secrets (dev mode generates or accepts anything)
    const weak = (name: string, value: string | undefined, min: number) => {
      const why = value ? weakSecretReason(value, min) : null
      if (why) problems.push(`${name} ${why}; generate one with \`stratos pds init\` or \`openssl rand --hex ${min}\``)
    }
    weak('PDS_JWT_SECRET', jwtSecret, MIN_JWT_SECRET_LENGTH)
    weak('PDS_ADMIN_PASSWORD', adminPassword, MIN_ADMIN_PASSWORD_LENGTH)
    if (rotationKey && /^[0-9a-fA-F]{64}$/.test(rotationKey)) {
      const why = weakSecretReason(rotationKey, 64)
      if (why) problems.push(`PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX ${why}; generate one with \`stratos pds init\``)
    }
  }

  let bskyAppView: PdsConfig['bskyAppView'] = null
  const appViewUrl = str('PDS_BSKY_APP_VIEW_URL')
  const appViewDid = str('PDS_BSKY_APP_VIEW_DID')
  if (appViewUrl || appViewDid) {
    if (!appViewUrl || !appViewDid) {
      problems.push('PDS_BSKY_APP_VIEW_URL and PDS_BSKY_APP_VIEW_DID must be set together')
    } else {
      if (!appViewDid.startsWith('did:')) problems.push(`PDS_BSKY_APP_VIEW_DID is not a DID: "${appViewDid}"`)
      bskyAppView = { url: url('PDS_BSKY_APP_VIEW_URL', appViewUrl, devMode), did: appViewDid }
    }
  }

  let reportService: PdsConfig['reportService'] = null
  const reportUrl = str('PDS_REPORT_SERVICE_URL')
  const reportDid = str('PDS_REPORT_SERVICE_DID')
  if (reportUrl || reportDid) {
    if (!reportUrl || !reportDid) {
      problems.push('PDS_REPORT_SERVICE_URL and PDS_REPORT_SERVICE_DID must be set together')
    } else {
      if (!reportDid.startsWith('did:')) problems.push(`PDS_REPORT_SERVICE_DID is not a DID: "${reportDid}"`)
      reportService = { url: url('PDS_REPORT_SERVICE_URL', reportUrl, devMode), did: reportDid }
    }
  }

  const crawlers = (list('PDS_CRAWLERS') ?? []).map((c) => url('PDS_CRAWLERS', c, devMode))

  let email: PdsConfig['email'] = null
  const smtpUrl = str('PDS_EMAIL_SMTP_URL')
  const fromAddress = str('PDS_EMAIL_FROM_ADDRESS')
  if (smtpUrl || fromAddress) {
    if (!smtpUrl || !fromAddress) {
      problems.push('PDS_EMAIL_SMTP_URL and PDS_EMAIL_FROM_ADDRESS must be set together')
    } else if (!/^smtps?:\/\//.test(smtpUrl)) {
      problems.push(`PDS_EMAIL_SMTP_URL must be an smtp:// or smtps:// URL`)
    } else {
      email = { smtpUrl, fromAddress }
    }
  }

  const oauthIssuer = str('PDS_OAUTH_ISSUER') ? url('PDS_OAUTH_ISSUER', str('PDS_OAUTH_ISSUER')!, devMode) : publicUrl
  // the OAuth server (@atproto/oauth-provider) takes an http:// issuer only on a loopback host: say so here
  // instead of failing later with the library's error (a dev PDS named e.g. pds.test, as in docker-compose.yml)
  const issuerUrl = URL.canParse(oauthIssuer) ? new URL(oauthIssuer) : null
  if (issuerUrl?.protocol === 'http:' && !['localhost', '127.0.0.1', '[::1]'].includes(issuerUrl.hostname)) {
    problems.push(
      `the OAuth issuer ${oauthIssuer} (PDS_OAUTH_ISSUER, by default the public URL) must be https:// or http:// on ` +
        `localhost/127.0.0.1/[::1]; for a development PDS on another name set e.g. PDS_OAUTH_ISSUER=http://127.0.0.1:${port}`,
    )
  }
  const oauthKey = str('PDS_OAUTH_SIGNING_KEY_P256_PRIVATE_KEY_HEX') ?? null
  if (oauthKey && !/^[0-9a-fA-F]{64}$/.test(oauthKey)) {
    problems.push('PDS_OAUTH_SIGNING_KEY_P256_PRIVATE_KEY_HEX must be 64 hex characters (a 32-byte P-256 private key)')
  }
  const logoUrl = str('PDS_LOGO_URL')
  if (logoUrl && !logoUrl.startsWith('data:')) url('PDS_LOGO_URL', logoUrl, devMode)
  let primaryColor = str('PDS_PRIMARY_COLOR')
  if (primaryColor) {
    const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(primaryColor)
    if (hex) primaryColor = `rgb(${hex.slice(1).map((h) => parseInt(h, 16)).join(', ')})`
    else if (!/^rgb\(\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*\)$/.test(primaryColor)) {
      problems.push(`PDS_PRIMARY_COLOR must be #rrggbb or rgb(r, g, b) (got "${primaryColor}")`)
    }
  }
  const supportUrl = str('PDS_SUPPORT_URL')
  if (supportUrl) url('PDS_SUPPORT_URL', supportUrl, devMode)
  const trustedClients = list('PDS_OAUTH_TRUSTED_CLIENTS') ?? []
  for (const c of trustedClients) {
    if (!c.startsWith('https://')) problems.push(`PDS_OAUTH_TRUSTED_CLIENTS entries must be https:// client ids (got "${c}")`)
  }

  const blobUploadLimit = int('PDS_BLOB_UPLOAD_LIMIT', 5 * 1024 * 1024, 1)

  const logLevel = (str('LOG_LEVEL') ?? 'info').toLowerCase()
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`)

  const config: PdsConfig = {
    service: {
      hostname: host,
      port,
      bindHost: str('PDS_BIND_HOST') ?? (loopback ? '127.0.0.1' : '0.0.0.0'),
      publicUrl,
      did,
      version: str('PDS_VERSION') ?? '0.1.0',
      devMode,
      blobUploadLimit,
      acceptingImports: bool('PDS_ACCEPTING_REPO_IMPORTS', true),
      maxImportSize: int('PDS_MAX_REPO_IMPORT_SIZE', 100 * 1024 * 1024, 1),
      serviceName: str('PDS_SERVICE_NAME') ?? `${host} PDS`,
      privacyPolicyUrl: str('PDS_PRIVACY_POLICY_URL'),
      termsOfServiceUrl: str('PDS_TERMS_OF_SERVICE_URL'),
      contactEmailAddress: str('PDS_CONTACT_EMAIL_ADDRESS'),
    },
    db: {
      directory: dir,
      accountDbPath: path.resolve(str('PDS_ACCOUNT_DB_LOCATION') ?? path.join(dir, 'account.sqlite')),
      sequencerDbPath: path.resolve(str('PDS_SEQUENCER_DB_LOCATION') ?? path.join(dir, 'sequencer.sqlite')),
      didCacheDbPath: path.resolve(str('PDS_DID_CACHE_DB_LOCATION') ?? path.join(dir, 'did_cache.sqlite')),
      actorStoreDirectory: path.resolve(str('PDS_ACTOR_STORE_DIRECTORY') ?? path.join(dir, 'actors')),
      actorStoreCacheSize: int('PDS_ACTOR_STORE_CACHE_SIZE', 500, 1),
      writeWorkers: int('PDS_WRITE_WORKERS', 1, 0, 16),
    },
    blobstore: {
      location: blobLocation,
      tempLocation: path.resolve(str('PDS_BLOBSTORE_DISK_TMP_LOCATION') ?? (s3Bucket ? path.join(dir, 'blobs-temp') : path.join(blobLocation, 'temp'))),
      s3: s3Bucket ? s3 : null,
    },
    identity: {
      plcUrl,
      serviceHandleDomains,
      recoveryDidKey,
      allowPrivateAddresses: devMode,
    },
    invites: {
      required: bool('PDS_INVITE_REQUIRED', true),
      interval: str('PDS_INVITE_INTERVAL') === undefined ? null : int('PDS_INVITE_INTERVAL', 0, 1),
    },
    secrets: { jwtSecret: jwtSecret ?? '', adminPassword: adminPassword ?? '', plcRotationKeyHex: rotationKey ?? '' },
    bskyAppView,
    reportService,
    crawlers,
    email,
    // on by default in production: a public PDS without limits lets anyone create accounts in bulk
    rateLimits: { enabled: bool('PDS_RATE_LIMITS_ENABLED', !devMode), bypassKey: str('PDS_RATE_LIMIT_BYPASS_KEY') },
    tempBlobQuota: {
      maxCount: int('PDS_TEMP_BLOB_MAX_COUNT', 64, 1),
      maxBytes: int('PDS_TEMP_BLOB_MAX_BYTES', Math.max(256 * 1024 * 1024, 4 * blobUploadLimit), 1),
    },
    maxConcurrentImports: int('PDS_MAX_CONCURRENT_IMPORTS', 2, 1),
    signingKeyEncryptionKey: parseEncryptionKey(str('PDS_SIGNING_KEY_ENCRYPTION_KEY'), problems),
    subscription: {
      backfillLimitMs: int('PDS_REPO_BACKFILL_LIMIT_MS', 24 * 60 * 60 * 1000),
      maxBuffer: int('PDS_MAX_SUBSCRIPTION_BUFFER', 500, 1),
      maxPerIp: int('PDS_MAX_SUBSCRIPTIONS_PER_IP', 32, 1),
    },
    auth: {
      accessTokenTtlSec: int('PDS_ACCESS_TOKEN_TTL_SECONDS', 2 * 60 * 60, 1),
      refreshTokenTtlSec: int('PDS_REFRESH_TOKEN_TTL_SECONDS', 90 * 24 * 60 * 60, 1),
      refreshGraceMs: int('PDS_REFRESH_GRACE_MS', 2 * 60 * 1000),
    },
    oauth: {
      issuer: oauthIssuer,
      signingKeyHex: oauthKey,
      logoUrl,
      primaryColor,
      supportUrl,
      trustedClients,
    },
    network: readNetworkConfig(
      env,
      {
        trustedProxies: 'PDS_TRUSTED_PROXIES',
        maxConnections: 'PDS_MAX_CONNECTIONS',
        maxConnectionsPerIp: 'PDS_MAX_CONNECTIONS_PER_IP',
        requestTimeoutMs: 'PDS_REQUEST_TIMEOUT_MS',
      },
      problems,
    ),
    logLevel,
    warnings,
  }
  // every variable is read above: a PDS_* name never read is a misspelling or a variable this PDS lacks
  for (const name of Object.keys(env).sort()) {
    if (name.startsWith('PDS_') && !read.has(name) && env[name] !== undefined) {
      warnings.push(`unknown variable ${name} is ignored (misspelt? see the Configuration table in README.md)`)
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return config
}
