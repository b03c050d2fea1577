import { isValidHandle } from '@stratos/core/syntax'
import { InvalidRequestError } from '../errors.js'

/** TLDs that can never be a public handle. `.test` is allowed only in dev mode. */
const DISALLOWED_TLDS = ['.local', '.arpa', '.invalid', '.localhost', '.internal', '.example', '.alt', '.onion']

/** Sub-domains of a service domain that no user may claim. */
const RESERVED = new Set([
  'about', 'abuse', 'account', 'accounts', 'admin', 'administrator', 'api', 'app', 'atproto', 'auth', 'blog',
  'bsky', 'bluesky', 'contact', 'dev', 'did', 'docs', 'email', 'feed', 'feeds', 'ftp', 'help', 'host',
  'hostmaster', 'info', 'mail', 'moderation', 'moderator', 'noreply', 'oauth', 'pds', 'plc', 'postmaster',
  'relay', 'root', 'security', 'service', 'staff', 'status', 'support', 'sync', 'system', 'team', 'test',
  'webmaster', 'www', 'xrpc',
])

export const normalizeHandle = (handle: string): string => handle.trim().toLowerCase()

/** Normalizes a handle and checks its syntax; throws InvalidHandle. */
export function normalizeAndValidateHandle(handle: string, opts: { devMode: boolean }): string {
  const h = normalizeHandle(handle)
  if (!isValidHandle(h)) throw new InvalidRequestError('Invalid handle', 'InvalidHandle')
  if (DISALLOWED_TLDS.some((tld) => h.endsWith(tld))) {
    throw new InvalidRequestError('Handle TLD is not allowed', 'InvalidHandle')
  }
  if (h.endsWith('.test') && !opts.devMode) throw new InvalidRequestError('Handle TLD is not allowed', 'InvalidHandle')
  return h
}

export const serviceDomainOf = (handle: string, domains: string[]): string | undefined =>
  domains.find((d) => handle.endsWith(d))

/**
 * A handle under one of the service's own domains: one label in front, 3-18 characters, not reserved.
 * Throws InvalidHandle / HandleNotAvailable like the reference PDS.
 */
export function ensureServiceHandleConstraints(handle: string, domains: string[], allowReserved = false): void {
  const domain = serviceDomainOf(handle, domains)
  if (!domain) throw new InvalidRequestError(`Handle must end with one of: ${domains.join(', ')}`, 'UnsupportedDomain')
  const front = handle.slice(0, handle.length - domain.length)
  if (front.includes('.')) throw new InvalidRequestError('Invalid characters in handle', 'InvalidHandle')
  if (front.length < 3) throw new InvalidRequestError('Handle too short', 'InvalidHandle')
  if (front.length > 18) throw new InvalidRequestError('Handle too long', 'InvalidHandle')
  if (!allowReserved && RESERVED.has(front)) throw new InvalidRequestError('Reserved handle', 'HandleNotAvailable')
}
