/**
 * Identity flags shared by every command that resolves handles or DIDs, and the handle → DID → DID
 * document → PDS walk they all use.
 */
import {
  DidResolutionError,
  IdentityResolver,
  didWebUrl,
  parseDidDocument,
  type AtprotoIdentity,
  type DidDocument,
} from '@stratos/core/identity'
import { isValidDid, isValidHandle } from '@stratos/core/syntax'
import { CliError, UsageError, intOption, urlOption, type OptionSpecs } from './command.js'

export const DEFAULT_PLC_URL = 'https://plc.directory'

export const identityOptions = {
  plc: {
    type: 'string',
    valueName: 'URL',
    description: 'did:plc directory',
    env: 'STRATOS_PLC_URL',
    default: DEFAULT_PLC_URL,
  },
  dev: {
    type: 'boolean',
    description: 'development network: allow loopback/private addresses and http did:web on localhost',
    env: 'STRATOS_DEV',
  },
  'handle-resolver': {
    type: 'string',
    valueName: 'URL',
    description: 'send handle well-known lookups to this server (with Host: <handle>), e.g. a dev PDS',
    env: 'STRATOS_HANDLE_RESOLVER_URL',
  },
  timeout: {
    type: 'string',
    valueName: 'MS',
    description: 'timeout of each identity lookup in milliseconds',
    default: '10000',
  },
} as const satisfies OptionSpecs

export interface IdentityFlags {
  plc: string
  dev: boolean
  'handle-resolver'?: string | undefined
  timeout: string
}

export function resolverFromFlags(values: IdentityFlags): IdentityResolver {
  const plcUrl = urlOption('plc', values.plc)
  const handleBase = values['handle-resolver'] !== undefined ? urlOption('handle-resolver', values['handle-resolver']) : undefined
  const timeoutMs = intOption('timeout', values.timeout, { min: 1 })
  return new IdentityResolver({
    plcUrl,
    timeoutMs,
    allowPrivateAddresses: values.dev,
    handleResolverHttpBase: handleBase,
  })
}

/** Special-use TLDs (RFC 6761, 2606) that never resolve in public DNS: skip the TXT lookup for them. */
const SPECIAL_USE_TLDS = ['test', 'localhost', 'invalid', 'example', 'local']

export function isSpecialUseHandle(handle: string): boolean {
  const tld = handle.slice(handle.lastIndexOf('.') + 1)
  return SPECIAL_USE_TLDS.includes(tld)
}

export interface HandleResolution {
  handle: string
  did?: string
  /** what DNS TXT `_atproto.<handle>` said (null: nothing; 'skipped': special-use TLD) */
  dns: string | null | 'skipped'
  /** what `https://<handle>/.well-known/atproto-did` said */
  http: string | null
  method?: 'dns' | 'http'
  /** both methods answered, with different DIDs (DNS wins) */
  conflict?: boolean
}

export function normalizeHandleInput(input: string): string {
  return input.replace(/^@/, '').toLowerCase()
}

/** Handle → DID, by both methods, reporting each (DNS wins, as the spec says). */
export async function resolveHandleSteps(resolver: IdentityResolver, handle: string): Promise<HandleResolution> {
  const skipDns = isSpecialUseHandle(handle)
  const [dns, http] = await Promise.all([
    skipDns ? Promise.resolve('skipped' as const) : resolver.handles.resolveDns(handle).then((d) => d ?? null),
    resolver.handles.resolveHttp(handle).then((d) => d ?? null),
  ])
  const out: HandleResolution = { handle, dns, http }
  if (dns !== null && dns !== 'skipped') {
    out.did = dns
    out.method = 'dns'
    if (http !== null && http !== dns) out.conflict = true
  } else if (http !== null) {
    out.did = http
    out.method = 'http'
  }
  return out
}

/** Where the DID document of `did` is fetched from (for display). */
export function didDocumentUrl(did: string, plcUrl: string, dev: boolean): string | undefined {
  if (did.startsWith('did:plc:')) return `${plcUrl.replace(/\/+$/, '')}/${did}`
  if (did.startsWith('did:web:')) {
    try {
      return didWebUrl(did, dev).toString()
    } catch {
      return undefined
    }
  }
  return undefined
}

export async function fetchDidDocument(resolver: IdentityResolver, did: string): Promise<{ doc: DidDocument; identity: AtprotoIdentity }> {
  let doc: DidDocument | null
  try {
    doc = await resolver.resolveDid(did)
  } catch (err) {
    if (err instanceof DidResolutionError) throw new CliError(`cannot resolve ${did}: ${err.message}`, 1, { cause: err })
    throw err
  }
  if (!doc) throw new CliError(`DID not found: ${did}`)
  let identity: AtprotoIdentity
  try {
    identity = parseDidDocument(doc, did)
  } catch (err) {
    throw new CliError(`the DID document of ${did} is not valid: ${(err as Error).message}`)
  }
  return { doc, identity }
}

export type ActorKind = 'did' | 'handle'

export function classifyActor(input: string): { kind: ActorKind; value: string } {
  if (input.startsWith('did:')) {
    if (!isValidDid(input)) throw new UsageError(`not a valid DID: '${input}'`)
    return { kind: 'did', value: input }
  }
  const handle = normalizeHandleInput(input)
  if (!isValidHandle(handle)) throw new UsageError(`not a valid handle or DID: '${input}'`)
  return { kind: 'handle', value: handle }
}

/** DID, its atproto data and PDS of an account named by handle or DID (for commands that need the PDS). */
export async function resolveActor(
  resolver: IdentityResolver,
  input: string,
): Promise<{ did: string; handle?: string; identity: AtprotoIdentity; pds: string }> {
  const actor = classifyActor(input)
  let did = actor.value
  if (actor.kind === 'handle') {
    const res = await resolveHandleSteps(resolver, actor.value)
    if (!res.did) throw new CliError(`handle ${actor.value} does not resolve to a DID`)
    did = res.did
  }
  const { identity } = await fetchDidDocument(resolver, did)
  if (!identity.pdsEndpoint) throw new CliError(`the DID document of ${did} names no PDS (#atproto_pds service)`)
  return { did, handle: identity.handle, identity, pds: identity.pdsEndpoint }
}
