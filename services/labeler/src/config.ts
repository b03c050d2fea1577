/**
 * The labeler's configuration, read once from environment variables and validated: a bad value stops the
 * process at start-up with a message naming the variable.
 */
import { resolve } from 'node:path'
import { ConfigError, LOG_LEVELS, readNetworkConfig, readPackageVersion, type LogLevel, type NetworkConfig } from '@stratos/core/config'
export { ConfigError, LOG_LEVELS, type LogLevel }

export interface LabelerConfig {
  /** TCP port (0 = any free port) */
  port: number
  /** bind address */
  host: string
  /** directory of labeler.sqlite and the generated signing key; ':memory:' keeps everything in memory (tests) */
  dataDirectory: string
  /** the labeler account's DID: `src` of every label it signs, audience of the service JWTs it accepts */
  did: string
  /** hex k256 private key of the #atproto_label key; undefined = generated once and kept in the data directory */
  signingKeyHex: string | undefined
  /** HTTP Basic `admin:<password>` for the admin API; undefined disables it */
  adminPassword: string | undefined
  /** PLC directory (resolves the DIDs of report senders) */
  plcUrl: string
  /** the URL the labeler is reached at (its #atproto_labeler endpoint) */
  publicUrl: string | undefined
  /** development: private addresses and http did:web allowed in outbound fetches */
  devMode: boolean
  /** trusted proxies, connection caps, request timeout (LABELER_TRUSTED_PROXIES, ...) */
  network?: NetworkConfig
  logLevel: LogLevel
  version: string
}

export const DEFAULT_PORT = 2586
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_DATA_DIRECTORY = './data/labeler'
export const DEFAULT_PLC_URL = 'https://plc.directory'

export function packageVersion(): string {
  return readPackageVersion(new URL('../package.json', import.meta.url))
}

type Env = Record<string, string | undefined>

/**
 * Reads the configuration from the environment (see README.md for every variable). Throws ConfigError
 * listing every problem found.
 */
export function readConfig(env: Env = process.env): LabelerConfig {
  const errors: string[] = []
  const str = (name: string): string | undefined => {
    const v = env[name]?.trim()
    return v ? v : undefined
  }
  const url = (name: string, def: string | undefined): string | undefined => {
    const raw = str(name) ?? def
    if (raw === undefined) return undefined
    try {
      const u = new URL(raw)
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme')
      return raw.replace(/\/+$/, '')
    } catch {
      errors.push(`${name} must be an http(s) URL, got "${raw}"`)
      return def
    }
  }

  const rawPort = str('LABELER_PORT')
  let port = DEFAULT_PORT
  if (rawPort !== undefined) {
    port = Number(rawPort)
    if (!/^[0-9]+$/.test(rawPort) || port > 65535) {
      errors.push(`LABELER_PORT must be an integer between 0 and 65535, got "${rawPort}"`)
      port = DEFAULT_PORT
    }
  }
  const did = str('LABELER_DID')
  if (!did) errors.push('LABELER_DID is required: the DID of the labeler account (see `stratos labeler init`)')
  else if (!/^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/.test(did)) errors.push(`LABELER_DID is not a DID: "${did}"`)

  const signingKeyHex = str('LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX')
  if (signingKeyHex !== undefined && !/^[0-9a-fA-F]{64}$/.test(signingKeyHex)) {
    errors.push('LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX must be 64 hex characters')
  }
  const rawDev = str('LABELER_DEV_MODE')
  let devMode = false
  if (rawDev !== undefined) {
    if (/^(1|true|yes|on)$/i.test(rawDev)) devMode = true
    else if (!/^(0|false|no|off)$/i.test(rawDev)) errors.push(`LABELER_DEV_MODE must be true or false, got "${rawDev}"`)
  }
  const logLevel = (str('LOG_LEVEL') ?? str('LABELER_LOG_LEVEL') ?? 'info').toLowerCase()
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    errors.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`)
  }
  const dataDir = str('LABELER_DATA_DIRECTORY') ?? DEFAULT_DATA_DIRECTORY
  const config: LabelerConfig = {
    port,
    host: str('LABELER_HOST') ?? DEFAULT_HOST,
    dataDirectory: dataDir === ':memory:' ? dataDir : resolve(dataDir),
    did: did ?? '',
    signingKeyHex,
    adminPassword: str('LABELER_ADMIN_PASSWORD'),
    plcUrl: url('LABELER_PLC_URL', str('STRATOS_PLC_URL') ?? DEFAULT_PLC_URL)!,
    publicUrl: url('LABELER_PUBLIC_URL', undefined),
    devMode,
    network: readNetworkConfig(
      env,
      {
        trustedProxies: 'LABELER_TRUSTED_PROXIES',
        maxConnections: 'LABELER_MAX_CONNECTIONS',
        maxConnectionsPerIp: 'LABELER_MAX_CONNECTIONS_PER_IP',
        requestTimeoutMs: 'LABELER_REQUEST_TIMEOUT_MS',
      },
      errors,
    ),
    logLevel: logLevel as LogLevel,
    version: str('LABELER_VERSION') ?? packageVersion(),
  }
  if (errors.length > 0) throw new ConfigError(`invalid labeler configuration:\n  ${errors.join('\n  ')}`)
  return config
}
