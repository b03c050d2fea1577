import { isValidDid } from '@stratos/core/syntax'
import { createServiceJwt } from '@stratos/core/auth'
import { getServiceEndpoint, safeFetch, SafeFetchError, type SafeFetchResponse } from '@stratos/core/identity'
import { readBody, type CatchallContext, type CatchallHandler } from '@stratos/core/xrpc'
import { AuthScope } from '../account/tokens.js'
import { ACCESS_STANDARD, assertRpc, type AccessCredentials } from '../auth.js'
import type { AppContext } from '../context.js'
import { InvalidRequestError, MethodNotImplementedError, UpstreamFailureError, XRPCError } from '../errors.js'
import { getPreferences } from '../actor-store/preferences.js'
import { applyReadAfterWrite, READ_AFTER_WRITE_METHODS } from './read-after-write.js'

/** The service id of the default AppView in service-auth audiences (`<did>#bsky_appview`). */
export const APPVIEW_SERVICE_ID = 'bsky_appview'

/** The service id of a report (moderation) service in service-auth audiences. */
export const REPORT_SERVICE_ID = 'atproto_labeler'
const CREATE_REPORT = 'com.atproto.moderation.createReport'

/** Namespaces that go to the default AppView when the request names no service. */
const DEFAULT_PROXIED = ['app.bsky.', 'chat.bsky.']

/** Account-management methods: never proxied with the user's credentials, whatever the header says. */
export const PROTECTED_PREFIXES = ['com.atproto.admin.', 'com.atproto.identity.', 'com.atproto.server.', 'com.atproto.temp.']

/** Methods an ordinary (non-privileged) app password may not reach through the proxy (DMs). */
export const PRIVILEGED_PREFIXES = ['chat.bsky.']

/** Request headers passed on to the service. */
const FORWARD_REQUEST_HEADERS = ['accept', 'accept-language', 'atproto-accept-labelers', 'x-bsky-topics', 'content-type']
/** Response headers passed back to the client. */
const FORWARD_RESPONSE_HEADERS = ['content-type', 'content-language', 'atproto-repo-rev', 'atproto-content-labelers', 'cache-control', 'retry-after']

const UPSTREAM_TIMEOUT_MS = 30_000
const MAX_REQUEST_BYTES = 5 * 1024 * 1024
const MAX_RESPONSE_BYTES = 20 * 1024 * 1024

export interface ProxyTarget {
  /** `<did>#<service id>`: the service an OAuth token's rpc permission must name */
  aud: string
  /** the service's bare DID: the `aud` of the service JWT sent to it (as the reference PDS sends, and what
   * @atproto/ozone accepts) */
  did: string
  url: string
  /** whether the endpoint may be a private address (operator-configured) */
  trusted: boolean
}

const header = (ctx: CatchallContext, name: string): string | undefined => {
  const v = ctx.req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Where a call goes: the service named by `atproto-proxy`, else the AppView for app.bsky / chat.bsky. */
export async function resolveProxyTarget(ctx: AppContext, nsid: string, proxyHeader: string | undefined): Promise<ProxyTarget | null> {
  const appView = ctx.cfg.bskyAppView
  if (proxyHeader !== undefined) {
    const value = proxyHeader.trim()
    const hash = value.indexOf('#')
    const did = hash > 0 ? value.slice(0, hash) : ''
    const serviceId = hash > 0 ? value.slice(hash + 1) : ''
    if (!did || !serviceId || serviceId.includes('#') || !isValidDid(did)) {
      throw new InvalidRequestError('atproto-proxy must be <DID>#<service id>, e.g. did:web:api.bsky.app#bsky_appview')
    }
    if (appView && did === appView.did && serviceId === APPVIEW_SERVICE_ID) {
      return { aud: `${did}#${serviceId}`, did, url: appView.url, trusted: true }
    }
    let doc
    try {
      doc = await ctx.idResolver.resolveDid(did)
    } catch (err) {
      ctx.logger.info({ err, did }, 'could not resolve the atproto-proxy DID')
      doc = null
    }
    if (!doc) throw new InvalidRequestError(`could not resolve proxy did: ${did}`)
    const url = getServiceEndpoint(doc, `#${serviceId}`)
    if (!url) throw new InvalidRequestError(`could not resolve proxy did service url: ${did} has no service #${serviceId}`)
    return { aud: `${did}#${serviceId}`, did, url, trusted: false }
  }
  if (nsid === CREATE_REPORT) {
    const report = ctx.cfg.reportService
    if (!report) throw new MethodNotImplementedError(`No report service is configured (PDS_REPORT_SERVICE_URL, PDS_REPORT_SERVICE_DID)`)
    return { aud: `${report.did}#${REPORT_SERVICE_ID}`, did: report.did, url: report.url, trusted: true }
  }
  if (!DEFAULT_PROXIED.some((p) => nsid.startsWith(p))) return null
  if (!appView) {
    throw new MethodNotImplementedError(`No AppView is configured for ${nsid} (PDS_BSKY_APP_VIEW_URL, PDS_BSKY_APP_VIEW_DID)`)
  }
  return { aud: `${appView.did}#${APPVIEW_SERVICE_ID}`, did: appView.did, url: appView.url, trusted: true }
}

/**
 * The XRPC catch-all of the PDS: a query or procedure without a local handler is forwarded, for an
 * authenticated active account, to the service `atproto-proxy` names (resolved from its DID document) or
 * to the configured AppView (app.bsky.*, chat.bsky.*), with a fresh service-auth JWT signed by the
 * account's repo key (iss = account DID, aud = the service's bare DID, lxm = the method). Status, body and
 * the atproto headers come back as the service sent them; a service that cannot be reached is a 502.
 */
export function createProxyCatchall(ctx: AppContext): CatchallHandler {
  const verify = ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true, checkDeactivated: true })
  return async (call) => {
    const { nsid, req, reply } = call
    const proxyHeader = header(call, 'atproto-proxy')
    if (proxyHeader === undefined && nsid !== CREATE_REPORT && !DEFAULT_PROXIED.some((p) => nsid.startsWith(p))) return undefined
    if (PROTECTED_PREFIXES.some((p) => nsid.startsWith(p))) {
      throw new InvalidRequestError(`${nsid} cannot be proxied`, 'InvalidToken')
    }
    const { credentials } = (await verify({ req, nsid })) as { credentials: AccessCredentials }
    if (!credentials.oauth && credentials.scope === AuthScope.AppPass && PRIVILEGED_PREFIXES.some((p) => nsid.startsWith(p))) {
      throw new InvalidRequestError('This app password may not be used for this method', 'InvalidToken')
    }
    const target = await resolveProxyTarget(ctx, nsid, proxyHeader)
    if (!target) return undefined

    // an OAuth token reaches another service only with an rpc permission for it (rpc:<nsid>?aud=<service>)
    assertRpc(credentials, target.aud, nsid)
    const keypair = await ctx.repoWriter.signingKey(credentials.did)
    let aud = target.did
    let lxm = nsid
    if (nsid === 'app.bsky.feed.getFeed' && target.aud.endsWith(`#${APPVIEW_SERVICE_ID}`)) {
      // the AppView hands this token on to the feed generator, so it is made out to the generator
      const feedGen = await feedGeneratorDid(ctx, target, credentials.did, keypair, req.url)
      if (feedGen) {
        aud = feedGen
        lxm = 'app.bsky.feed.getFeedSkeleton'
      }
    }
    const jwt = await createServiceJwt({ iss: credentials.did, aud, lxm, keypair })

    const headers: Record<string, string> = { authorization: `Bearer ${jwt}` }
    for (const name of FORWARD_REQUEST_HEADERS) {
      const v = header(call, name)
      if (v !== undefined) headers[name] = v
    }
    if (headers['atproto-accept-labelers'] === undefined) {
      // a client that names no labelers gets the ones its user subscribed to (app.bsky preferences)
      const labelers = subscribedLabelers(ctx, credentials.did)
      if (labelers.length > 0) headers['atproto-accept-labelers'] = labelers.join(',')
    }
    let body: Uint8Array | undefined
    if (req.method === 'POST' && call.rawBody) {
      body = await readBody(call.rawBody, MAX_REQUEST_BYTES)
      if (body.length === 0) body = undefined
    }
    if (!body) delete headers['content-type']

    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : ''
    const url = `${target.url.replace(/\/+$/, '')}/xrpc/${nsid}${query}`
    let res: SafeFetchResponse
    try {
      res = await safeFetch(url, {
        method: req.method === 'POST' ? 'POST' : 'GET',
        headers,
        body,
        timeoutMs: UPSTREAM_TIMEOUT_MS,
        maxBytes: MAX_RESPONSE_BYTES,
        allowPrivateAddresses: target.trusted || ctx.cfg.identity.allowPrivateAddresses,
      })
    } catch (err) {
      ctx.logger.warn({ err: (err as Error).message, nsid, target: target.aud }, 'proxied request failed')
      if (err instanceof SafeFetchError && err.code === 'timeout') {
        throw new XRPCError(504, 'UpstreamTimeout', `Upstream service timed out: ${target.aud}`)
      }
      throw new UpstreamFailureError(`Upstream service unreachable: ${target.aud}`)
    }

    if (!res.ok) throw upstreamError(res)

    let out: Uint8Array = res.body
    const rev = res.headers.get('atproto-repo-rev') ?? undefined
    if (READ_AFTER_WRITE_METHODS.has(nsid) && /^application\/json/i.test(res.headers.get('content-type') ?? '')) {
      try {
        const params = new URLSearchParams(query.slice(1))
        const munged = await applyReadAfterWrite(ctx, credentials.did, nsid, rev, params, JSON.parse(Buffer.from(out).toString('utf8')))
        if (munged) out = Buffer.from(JSON.stringify(munged.body), 'utf8')
      } catch (err) {
        ctx.logger.warn({ err, nsid }, 'read-after-write merge failed; answering with the upstream response')
      }
    }

    reply.code(res.status)
    for (const name of FORWARD_RESPONSE_HEADERS) {
      const v = res.headers.get(name)
      if (v !== null) reply.header(name, v)
    }
    reply.send(Buffer.from(out.buffer, out.byteOffset, out.byteLength))
    return undefined
  }
}

/**
 * The service DID of the feed generator behind a getFeed call (asked of the AppView), or null if the
 * AppView does not know it: then the call goes on with an ordinary token for the AppView.
 */
async function feedGeneratorDid(
  ctx: AppContext,
  target: ProxyTarget,
  iss: string,
  keypair: Parameters<typeof createServiceJwt>[0]['keypair'],
  reqUrl: string,
): Promise<string | null> {
  const feed = new URLSearchParams(reqUrl.includes('?') ? reqUrl.slice(reqUrl.indexOf('?') + 1) : '').get('feed')
  if (!feed) return null
  const lxm = 'app.bsky.feed.getFeedGenerator'
  const jwt = await createServiceJwt({ iss, aud: target.did, lxm, keypair })
  try {
    const res = await safeFetch(`${target.url.replace(/\/+$/, '')}/xrpc/${lxm}?feed=${encodeURIComponent(feed)}`, {
      headers: { authorization: `Bearer ${jwt}`, accept: 'application/json' },
      timeoutMs: UPSTREAM_TIMEOUT_MS,
      allowPrivateAddresses: target.trusted || ctx.cfg.identity.allowPrivateAddresses,
    })
    if (!res.ok) return null
    const did = (JSON.parse(res.text()) as { view?: { did?: unknown } }).view?.did
    return typeof did === 'string' && isValidDid(did) ? did : null
  } catch {
    return null
  }
}

/** An upstream error as an XRPC error with the upstream's status, name and message. */
function upstreamError(res: SafeFetchResponse): XRPCError {
  let parsed: { error?: unknown; message?: unknown } | null = null
  try {
    parsed = JSON.parse(res.text())
  } catch {
    parsed = null
  }
  const headers: Record<string, string> = {}
  for (const name of ['retry-after', 'www-authenticate', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']) {
    const v = res.headers.get(name)
    if (v !== null) headers[name] = v
  }
  if (parsed && typeof parsed === 'object' && typeof parsed.error === 'string') {
    const message = typeof parsed.message === 'string' ? parsed.message : undefined
    return new XRPCError(res.status, parsed.error, message, headers)
  }
  if (res.status >= 500) return new UpstreamFailureError(`Upstream service error (${res.status})`)
  return new XRPCError(res.status, undefined, `Upstream service error (${res.status})`, headers)
}

/** The labelers (DIDs) in the account's app.bsky.actor.defs#labelersPref, in order. */
export function subscribedLabelers(ctx: AppContext, did: string): string[] {
  const repo = ctx.actorStore.get(did)
  if (!repo) return []
  const out: string[] = []
  for (const pref of getPreferences(repo, 'app.bsky')) {
    if (pref.$type !== 'app.bsky.actor.defs#labelersPref' || !Array.isArray(pref.labelers)) continue
    for (const l of pref.labelers as unknown[]) {
      const d = (l as { did?: unknown } | null)?.did
      if (typeof d === 'string' && isValidDid(d) && !out.includes(d)) out.push(d)
    }
  }
  return out
}
