/** What every service's config.ts shares: the error it throws, the log levels, its package version. */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** A bad environment: the message names every offending variable. Start-up fails with it. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** The `version` of the package.json at `packageJsonUrl` (e.g. `new URL('../package.json', import.meta.url)`). */
export function readPackageVersion(packageJsonUrl: URL): string {
  try {
    const pkg = JSON.parse(readFileSync(packageJsonUrl, 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0'
  } catch {
    return '0.0.0'
  }
}

/** The network protections every service configures the same way (see @stratos/core/xrpc hardening). */
export interface NetworkConfig {
  /** peers whose X-Forwarded-For is believed (IPs, CIDRs, loopback / linklocal / uniquelocal); default none */
  trustedProxies: string[]
  /** open connections accepted at once (undefined: derived from the open-file limit) */
  maxConnections?: number
  /** open connections per client address */
  maxConnectionsPerIp?: number
  /** time to receive a whole request, ms */
  requestTimeoutMs?: number
}

export interface NetworkEnvNames {
  trustedProxies: string
  maxConnections: string
  maxConnectionsPerIp: string
  requestTimeoutMs: string
}

/**
 * Reads `<PREFIX>_TRUSTED_PROXIES`, `<PREFIX>_MAX_CONNECTIONS`, `<PREFIX>_MAX_CONNECTIONS_PER_IP` and
 * `<PREFIX>_REQUEST_TIMEOUT_MS` (names given by the caller); problems are pushed onto `problems`.
 */
export function readNetworkConfig(
  env: Record<string, string | undefined>,
  names: NetworkEnvNames,
  problems: string[],
  defaults: { trustedProxies?: string[] } = {},
): NetworkConfig {
  const out: NetworkConfig = { trustedProxies: defaults.trustedProxies ?? [] }
  const proxies = env[names.trustedProxies]
  if (proxies !== undefined && proxies.trim() !== '') {
    out.trustedProxies = []
    for (const raw of proxies.split(',')) {
      const entry = raw.trim().toLowerCase()
      if (!entry) continue
      if (!isProxyEntry(entry)) {
        problems.push(`${names.trustedProxies}: "${raw.trim()}" is not an IP address, a CIDR range or one of loopback, linklocal, uniquelocal`)
      } else {
        out.trustedProxies.push(entry)
      }
    }
  }
  const int = (name: string, min: number): number | undefined => {
    const v = env[name]?.trim()
    if (!v) return undefined
    if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
      problems.push(`${name} must be an integer >= ${min} (got "${v}")`)
      return undefined
    }
    return Number(v)
  }
  const max = int(names.maxConnections, 16)
  if (max !== undefined) out.maxConnections = max
  const perIp = int(names.maxConnectionsPerIp, 1)
  if (perIp !== undefined) out.maxConnectionsPerIp = perIp
  const timeout = int(names.requestTimeoutMs, 1000)
  if (timeout !== undefined) out.requestTimeoutMs = timeout
  return out
}

function isProxyEntry(entry: string): boolean {
  if (entry === 'loopback' || entry === 'linklocal' || entry === 'uniquelocal') return true
  const slash = entry.indexOf('/')
  const addr = slash < 0 ? entry : entry.slice(0, slash)
  const family = isIP(addr)
  if (family === 0) return false
  if (slash < 0) return true
  const bits = entry.slice(slash + 1)
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)
}

/** The XrpcServer options for a NetworkConfig. */
export function networkServerOptions(net: NetworkConfig | undefined): {
  trustedProxies: string[]
  connections: { maxConnections?: number; maxConnectionsPerIp?: number; requestTimeoutMs?: number }
} {
  const connections: { maxConnections?: number; maxConnectionsPerIp?: number; requestTimeoutMs?: number } = {}
  if (!net) return { trustedProxies: [], connections }
  if (net.maxConnections !== undefined) connections.maxConnections = net.maxConnections
  if (net.maxConnectionsPerIp !== undefined) connections.maxConnectionsPerIp = net.maxConnectionsPerIp
  if (net.requestTimeoutMs !== undefined) connections.requestTimeoutMs = net.requestTimeoutMs
  return { trustedProxies: net.trustedProxies, connections }
}
