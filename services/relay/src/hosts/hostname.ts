/**
 * Host names as the relay keeps them: `host` or (development) `host:port`, lowercase, no scheme. Pure.
 */
import net from 'node:net'

export class InvalidHostnameError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'InvalidHostnameError'
  }
}

export interface ParsedHost {
  /** `example.com` or `127.0.0.1:2583` */
  hostname: string
  /** https/wss (true) or http/ws (false, development only) */
  ssl: boolean
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

function isDomainName(host: string): boolean {
  if (host.length > 253) return false
  const labels = host.split('.')
  if (labels.length < 2) return false
  if (!labels.every((l) => LABEL.test(l))) return false
  return /^[a-z]/.test(labels[labels.length - 1]!)
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '')
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\./.test(h)
}

/** The host part of `hostname` (without the port). */
export function hostPart(hostname: string): string {
  if (hostname.startsWith('[')) return hostname.slice(0, hostname.indexOf(']') + 1)
  const colon = hostname.lastIndexOf(':')
  return colon >= 0 ? hostname.slice(0, colon) : hostname
}

/**
 * Parses what a host or an operator gives as a hostname: `pds.example.com`, `https://pds.example.com/`, or in
 * development mode also `http://localhost:2583`, `127.0.0.1:2583`. Throws InvalidHostnameError.
 * Outside development mode only public DNS names are accepted (no IP addresses, no ports, no http).
 */
export function parseHostname(input: string, devMode: boolean): ParsedHost {
  let raw = input.trim()
  if (raw.length === 0) throw new InvalidHostnameError('hostname is empty')
  if (raw.length > 300) throw new InvalidHostnameError('hostname is too long')
  let scheme: 'https' | 'http' | undefined
  const m = /^([a-z]+):\/\//i.exec(raw)
  if (m) {
    const s = m[1]!.toLowerCase()
    if (s === 'https' || s === 'wss') scheme = 'https'
    else if (s === 'http' || s === 'ws') scheme = 'http'
    else throw new InvalidHostnameError(`unsupported scheme ${s}://`)
    raw = raw.slice(m[0].length)
  }
  raw = raw.replace(/\/+$/, '')
  if (/[/?#@\s]/.test(raw)) throw new InvalidHostnameError('hostname must be a host name, not a URL with a path')
  let url: URL
  try {
    url = new URL(`http://${raw}`)
  } catch {
    throw new InvalidHostnameError(`not a valid hostname: ${input}`)
  }
  const host = url.hostname.toLowerCase()
  const port = url.port
  const isIp = net.isIP(host.replace(/^\[|\]$/g, '')) !== 0
  if (!devMode) {
    if (scheme === 'http') throw new InvalidHostnameError('hosts must be reachable over https (wss)')
    if (port) throw new InvalidHostnameError('hostname must not have a port')
    if (isIp) throw new InvalidHostnameError('hostname must be a domain name, not an IP address')
    if (isLoopbackHost(host)) throw new InvalidHostnameError('hostname must be a public domain name')
    if (!isDomainName(host)) throw new InvalidHostnameError(`not a valid domain name: ${host}`)
    return { hostname: host, ssl: true }
  }
  if (!isIp && host !== 'localhost' && !isDomainName(host)) {
    throw new InvalidHostnameError(`not a valid host name: ${host}`)
  }
  const canonical = loopbackAlias(host) ?? host
  const hostname = port ? `${canonical}:${port}` : canonical
  const ssl = scheme ? scheme === 'https' : !(isIp || isLoopbackHost(host))
  return { hostname, ssl }
}

/**
 * Development: the addresses of this machine a PDS may announce itself under (0.0.0.0, ::, ::1) are one
 * host with 127.0.0.1, so one PDS is not followed twice. (`localhost` stays a name of its own: banned and
 * trusted domains match names.)
 */
function loopbackAlias(host: string): string | undefined {
  const h = host.replace(/^\[|\]$/g, '')
  return h === '0.0.0.0' || h === '::' || h === '::1' ? '127.0.0.1' : undefined
}

/** The host (`host[:port]`) of a service endpoint URL, as the relay keys hosts; undefined if not a URL. */
export function endpointHostname(endpoint: string | undefined): string | undefined {
  if (!endpoint) return undefined
  try {
    const u = new URL(endpoint)
    const host = u.hostname.toLowerCase()
    const canonical = loopbackAlias(host) ?? host
    return u.port ? `${canonical}:${u.port}` : canonical
  } catch {
    return undefined
  }
}

/** True when `hostname` (port ignored) is one of `domains` or under one of them. */
export function matchesDomain(hostname: string, domains: readonly string[]): boolean {
  const h = hostPart(hostname).toLowerCase()
  return domains.some((d) => h === d || h.endsWith(`.${d}`))
}

export function hostBaseUrl(hostname: string, ssl: boolean): string {
  return `${ssl ? 'https' : 'http'}://${hostname}`
}
