/** Finding a feed generator's service and asking it for a skeleton. */
import { getServiceEndpoint, safeFetch } from '@stratos/core/identity'
import type { AppContext } from '../context.js'

/** The #bsky_fg endpoint of a feed generator's DID, or undefined. */
export async function feedgenEndpoint(ctx: AppContext, feedDid: string): Promise<string | undefined> {
  try {
    const doc = await ctx.idResolver.resolveDid(feedDid)
    if (!doc) return undefined
    return getServiceEndpoint(doc, '#bsky_fg', 'BskyFeedGenerator')
  } catch {
    return undefined
  }
}

export interface SkeletonItem {
  post: string
  repost?: string
  pinned?: boolean
  feedContext?: string
}

/** Parses a getFeedSkeleton answer, dropping malformed items. */
export function parseSkeleton(body: unknown): { items: SkeletonItem[]; cursor?: string; reqId?: string } | undefined {
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { feed?: unknown }).feed)) return undefined
  const b = body as { feed: unknown[]; cursor?: unknown; reqId?: unknown }
  const items: SkeletonItem[] = []
  for (const raw of b.feed) {
    if (typeof raw !== 'object' || raw === null) continue
    const it = raw as { post?: unknown; reason?: unknown; feedContext?: unknown }
    if (typeof it.post !== 'string' || !it.post.startsWith('at://')) continue
    const item: SkeletonItem = { post: it.post }
    const reason = it.reason as { $type?: unknown; repost?: unknown } | undefined
    if (reason?.$type === 'app.bsky.feed.defs#skeletonReasonRepost' && typeof reason.repost === 'string') item.repost = reason.repost
    if (reason?.$type === 'app.bsky.feed.defs#skeletonReasonPin') item.pinned = true
    if (typeof it.feedContext === 'string' && it.feedContext.length <= 2000) item.feedContext = it.feedContext
    items.push(item)
  }
  const out: { items: SkeletonItem[]; cursor?: string; reqId?: string } = { items }
  if (typeof b.cursor === 'string') out.cursor = b.cursor
  if (typeof b.reqId === 'string' && b.reqId.length <= 100) out.reqId = b.reqId
  return out
}

export async function fetchJson(ctx: AppContext, url: string, headers: Record<string, string> = {}) {
  return safeFetch(url, {
    timeoutMs: 10_000,
    maxBytes: 2 * 1024 * 1024,
    allowPrivateAddresses: ctx.config.devMode,
    headers: { accept: 'application/json', ...headers },
  })
}
