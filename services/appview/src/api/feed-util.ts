/** Shared steps of the feed endpoints: hydrate feed items, apply block / mute rules, present. */
import type { AppBskyFeedDefs } from '@atproto/api'
import type { AppContext } from '../context.js'
import { HydrationState } from '../hydration/hydrator.js'
import { didFromUri } from '../indexer/records.js'
import { actorInvisible, blockedPair, viewerBlocks, viewerMutes } from '../views/rules.js'
import type { FeedItem } from '../views/views.js'

export interface FeedRow {
  uri: string
  type: string
  postUri: string
  originatorDid: string
}

export function feedItemOf(row: FeedRow): FeedItem {
  return row.type === 'repost' ? { postUri: row.postUri, repostUri: row.uri } : { postUri: row.postUri }
}

export interface FeedRules {
  /** leave out posts and reposts of actors the viewer muted (timelines, custom feeds) */
  applyMutes?: boolean
  /** the Following timeline: a reply shows only when the viewer is or follows the parent's author */
  followedRepliesOnly?: boolean
}

/** Hydrates feed items and presents the ones the viewer may see, in order. */
export async function presentFeed(
  ctx: AppContext,
  viewer: string | null,
  items: FeedItem[],
  rules: FeedRules = {},
): Promise<AppBskyFeedDefs.FeedViewPost[]> {
  const state = new HydrationState(viewer)
  const repostUris = items.map((i) => i.repostUri).filter((u): u is string => !!u)
  await ctx.hydrator.reposts(state, repostUris)
  const reposters = new Set<string>()
  for (const u of repostUris) {
    const r = state.reposts.get(u)
    if (r) reposters.add(r.creator)
  }
  // (the reposters' profiles in the same statements as the posts' authors)
  await ctx.hydrator.posts(state, items.map((i) => i.postUri), { replyContext: true, actors: reposters })
  const out: AppBskyFeedDefs.FeedViewPost[] = []
  for (const item of items) {
    const post = state.posts.get(item.postUri)
    if (!post || actorInvisible(state, post.creator)) continue
    if (rules.applyMutes && viewerMutes(state, post.creator)) continue
    if (item.repostUri) {
      const repost = state.reposts.get(item.repostUri)
      if (!repost || actorInvisible(state, repost.creator)) continue
      if (rules.applyMutes && viewerMutes(state, repost.creator)) continue
    }
    // replies into a conversation with someone the viewer (or the author) blocks are left out
    let blockedReply = false
    for (const ref of [post.replyParent, post.replyRoot]) {
      if (!ref) continue
      const refAuthor = state.posts.get(ref)?.creator ?? didFromUri(ref)
      if (refAuthor && (viewerBlocks(state, refAuthor) || blockedPair(state, post.creator, refAuthor))) blockedReply = true
    }
    if (blockedReply) continue
    if (rules.followedRepliesOnly && !item.repostUri && post.replyParent && post.creator !== viewer) {
      const parentAuthor = state.posts.get(post.replyParent)?.creator ?? didFromUri(post.replyParent)
      if (parentAuthor !== viewer && parentAuthor !== post.creator && !(parentAuthor && state.actorViewers.get(parentAuthor)?.following)) continue
    }
    const view = ctx.views.feedViewPost(state, item)
    if (view) out.push(view)
  }
  return out
}

/** postViews for URIs, in order, leaving out what the viewer may not see. */
export async function presentPosts(ctx: AppContext, viewer: string | null, uris: string[]): Promise<AppBskyFeedDefs.PostView[]> {
  const state = new HydrationState(viewer)
  await ctx.hydrator.posts(state, uris)
  const out: AppBskyFeedDefs.PostView[] = []
  for (const uri of uris) {
    const p = state.posts.get(uri)
    if (!p || actorInvisible(state, p.creator)) continue
    const view = ctx.views.post(state, uri)
    if (view) out.push(view)
  }
  return out
}

/** Profile views for DIDs, in order, leaving out hidden and (unless keepBlocked) blocked actors. */
export async function presentProfiles(
  ctx: AppContext,
  viewer: string | null,
  dids: string[],
  opts: { keepBlocked?: boolean } = {},
): Promise<{ state: HydrationState; dids: string[] }> {
  const state = new HydrationState(viewer)
  await ctx.hydrator.actors(state, dids)
  const visible = dids.filter((d) => state.actors.get(d) && !state.actors.get(d)!.upstreamStatus && (opts.keepBlocked || !viewerBlocks(state, d)))
  return { state, dids: visible }
}
