import { join, resolve } from 'node:path'
import { ConfigError, LOG_LEVELS, readNetworkConfig, readPackageVersion, type LogLevel, type NetworkConfig } from '@stratos/core/config'
export { ConfigError, LOG_LEVELS, type LogLevel }

export interface PlcConfig {
  /** TCP port (0 = any free port) */
  port: number
  host: string
  /** SQLite file path, or ':memory:' */
  dbPath: string
  /** reported by GET /xrpc/_health */
  version: string
  logLevel: LogLevel
  /** trusted proxies, connection caps, request timeout (PLC_TRUSTED_PROXIES, ...) */
  network?: NetworkConfig
}


export const DEFAULT_PORT = 2582
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_DATA_DIRECTORY = './data/plc'
export const DB_FILE_NAME = 'plc.sqlite'

export function packageVersion(): string {
  return readPackageVersion(new URL('../package.json', import.meta.url))
}

function nonEmpty(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]
  if (v === undefined) return undefined
  const trimmed = v.trim()
  return trimmed === '' ? undefined : trimmed
}

/**
 * Reads the configuration from environment variables, failing with a message that names the variable:
 * PLC_PORT (default 2582), PLC_HOST (default 127.0.0.1), PLC_DATA_DIRECTORY (default ./data/plc; the database
 * is <dir>/plc.sqlite) or PLC_DB_PATH (a SQLite file, or :memory:), PLC_VERSION, PLC_LOG_LEVEL or LOG_LEVEL (default info).
 */
export function readConfig(env: NodeJS.ProcessEnv = process.env): PlcConfig {
  const errors: string[] = []

  let port = DEFAULT_PORT
  const portRaw = nonEmpty(env, 'PLC_PORT')
  if (portRaw !== undefined) {
    const n = Number(portRaw)
    if (!/^\d+$/.test(portRaw) || !Number.isInteger(n) || n < 0 || n > 65535) {
      errors.push(`PLC_PORT must be an integer between 0 and 65535, got "${portRaw}"`)
    } else {
      port = n
    }
  }

  const host = nonEmpty(env, 'PLC_HOST') ?? DEFAULT_HOST
  if (/\s|\//.test(host)) errors.push(`PLC_HOST must be a host name or IP address, got "${host}"`)

  const dataDir = nonEmpty(env, 'PLC_DATA_DIRECTORY')
  const dbPathRaw = nonEmpty(env, 'PLC_DB_PATH')
  let dbPath: string
  if (dataDir !== undefined && dbPathRaw !== undefined) {
    errors.push('set either PLC_DATA_DIRECTORY or PLC_DB_PATH, not both')
    dbPath = dbPathRaw
  } else if (dbPathRaw !== undefined) {
    dbPath = dbPathRaw === ':memory:' ? dbPathRaw : resolve(dbPathRaw)
  } else {
    dbPath = join(resolve(dataDir ?? DEFAULT_DATA_DIRECTORY), DB_FILE_NAME)
  }

  const logLevelRaw = nonEmpty(env, 'PLC_LOG_LEVEL') ?? nonEmpty(env, 'LOG_LEVEL') ?? 'info'
  if (!(LOG_LEVELS as readonly string[]).includes(logLevelRaw)) {
    errors.push(`PLC_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevelRaw}"`)
  }

  const network = readNetworkConfig(
    env,
    {
      trustedProxies: 'PLC_TRUSTED_PROXIES',
      maxConnections: 'PLC_MAX_CONNECTIONS',
      maxConnectionsPerIp: 'PLC_MAX_CONNECTIONS_PER_IP',
      requestTimeoutMs: 'PLC_REQUEST_TIMEOUT_MS',
    },
    errors,
  )

  if (errors.length > 0) throw new ConfigError(`invalid PLC configuration:\n  - ${errors.join('\n  - ')}`)
  return {
    port,
    host,
    dbPath,
    version: nonEmpty(env, 'PLC_VERSION') ?? packageVersion(),
    logLevel: logLevelRaw as LogLevel,
    network,
  }
}
