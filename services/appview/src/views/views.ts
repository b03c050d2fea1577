/**
 * Presentation: lexicon views built from a HydrationState. Pure functions of the state (no I/O); a
 * view that must not be shown (unknown record, inactive author) comes back undefined.
 */
import type {
  $Typed,
  AppBskyActorDefs,
  AppBskyEmbedExternal,
  AppBskyEmbedImages,
  AppBskyEmbedRecord,
  AppBskyEmbedRecordWithMedia,
  AppBskyEmbedVideo,
  AppBskyFeedDefs,
  AppBskyGraphDefs,
} from '@atproto/api'
import type { ActorInfo, HydrationState, PostInfo } from '../hydration/hydrator.js'
import { COLLECTIONS, blobCidOf, collectionFromUri, didFromUri, mentionedDids } from '../indexer/records.js'
import { selfLabels, type ViewLabel } from '../labels/labels.js'
import { actorHidden, blockedPair, viewerBlocks } from './rules.js'

type Json = Record<string, unknown>

export type ImagePreset = 'avatar' | 'banner' | 'feed_thumbnail' | 'feed_fullsize'

export interface ViewsOptions {
  /** base URL of this AppView (image and video URLs point here) */
  publicUrl: string
}

export type MaybePostView =
  | $Typed<AppBskyFeedDefs.PostView>
  | $Typed<AppBskyFeedDefs.NotFoundPost>
  | $Typed<AppBskyFeedDefs.BlockedPost>

export interface FeedItem {
  postUri: string
  /** the repost that put the post in the feed */
  repostUri?: string
  pinned?: boolean
}

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

function aspectRatio(v: unknown): { width: number; height: number } | undefined {
  if (!isObj(v)) return undefined
  const { width, height } = v
  if (typeof width === 'number' && typeof height === 'number' && Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0) {
    return { width, height }
  }
  return undefined
}

/** A view without its (optional) $type, to extend into a bigger view. */
function untype<T extends { $type?: string }>(v: T): Omit<T, '$type'> {
  const { $type: _t, ...rest } = v
  return rest
}

function typeOf(v: Json): string {
  return (str(v.$type) ?? '').replace(/#main$/, '')
}

export class Views {
  publicUrl: string

  constructor(opts: ViewsOptions) {
    this.publicUrl = opts.publicUrl.replace(/\/+$/, '')
  }

  // urls
  // =

  imageUrl(preset: ImagePreset, did: string, cid: string): string {
    return `${this.publicUrl}/img/${preset}/plain/${did}/${cid}@jpeg`
  }

  videoPlaylistUrl(did: string, cid: string): string {
    return `${this.publicUrl}/vid/${did}/${cid}/playlist.m3u8`
  }

  // labels
  // =

  /** Labels on `uri` from the request's labelers, then the record's self-labels (if a record is given). */
  labelsOf(
    state: HydrationState,
    uri: string,
    self?: { cid: string; creator: string; record: Record<string, unknown>; cts: string },
  ): ViewLabel[] {
    const out = [...(state.labels.get(uri) ?? [])]
    if (self) out.push(...selfLabels(uri, self.cid, self.creator, self.record, self.cts))
    return out
  }

  /** An actor's labels: on the account (DID) and on its profile record, plus the profile's self-labels. */
  actorLabels(state: HydrationState, did: string): ViewLabel[] {
    const p = state.actors.get(did)?.profile
    const out = this.labelsOf(state, did)
    if (p) out.push(...this.labelsOf(state, p.uri, { cid: p.cid, creator: did, record: p.record, cts: p.createdAt ?? p.indexedAt }))
    else out.push(...this.labelsOf(state, `at://${did}/app.bsky.actor.profile/self`))
    return out
  }

  // actors
  // =

  private handleOf(a: ActorInfo): string {
    return a.handle ?? 'handle.invalid'
  }

  actorViewer(state: HydrationState, did: string): AppBskyActorDefs.ViewerState | undefined {
    if (!state.viewer) return undefined
    const v = state.actorViewers.get(did) ?? {}
    const out: AppBskyActorDefs.ViewerState = { muted: !!(v.muted || v.mutedByList), blockedBy: !!(v.blockedBy || v.blockedByList) }
    if (v.mutedByList) {
      const list = this.listBasic(state, v.mutedByList)
      if (list) out.mutedByList = list
    }
    if (v.blocking) out.blocking = v.blocking
    if (v.blockingByList) {
      const list = this.listBasic(state, v.blockingByList)
      if (list) out.blockingByList = list
    }
    const blocked = !!(v.blocking || v.blockingByList || v.blockedBy || v.blockedByList)
    if (!blocked) {
      if (v.following) out.following = v.following
      if (v.followedBy) out.followedBy = v.followedBy
    }
    return out
  }

  profileBasic(state: HydrationState, did: string): AppBskyActorDefs.ProfileViewBasic | undefined {
    const a = state.actors.get(did)
    if (!a || actorHidden(state, did)) return undefined
    const p = a.profile
    const out: AppBskyActorDefs.ProfileViewBasic = { did, handle: this.handleOf(a), labels: this.actorLabels(state, did) }
    if (p?.displayName) out.displayName = p.displayName
    if (p?.avatarCid) out.avatar = this.imageUrl('avatar', did, p.avatarCid)
    const viewer = this.actorViewer(state, did)
    if (viewer) out.viewer = viewer
    out.createdAt = p?.createdAt ?? a.indexedAt
    return out
  }

  profile(state: HydrationState, did: string): AppBskyActorDefs.ProfileView | undefined {
    const basic = this.profileBasic(state, did)
    if (!basic) return undefined
    const a = state.actors.get(did)!
    const out: AppBskyActorDefs.ProfileView = { ...untype(basic), indexedAt: a.profile?.indexedAt ?? a.indexedAt }
    if (a.profile?.description) out.description = a.profile.description
    return out
  }

  profileDetailed(state: HydrationState, did: string): AppBskyActorDefs.ProfileViewDetailed | undefined {
    const view = this.profile(state, did)
    if (!view) return undefined
    const a = state.actors.get(did)!
    const agg = state.profileAggs.get(did)
    const out: AppBskyActorDefs.ProfileViewDetailed = {
      ...untype(view),
      followersCount: Math.max(0, agg?.followers ?? 0),
      followsCount: Math.max(0, agg?.follows ?? 0),
      postsCount: Math.max(0, agg?.posts ?? 0),
      associated: {
        lists: Math.max(0, agg?.lists ?? 0),
        feedgens: Math.max(0, agg?.feedgens ?? 0),
        starterPacks: Math.max(0, agg?.starterPacks ?? 0),
        labeler: state.labelerActors.has(did),
      },
    }
    if (a.profile?.bannerCid) out.banner = this.imageUrl('banner', did, a.profile.bannerCid)
    if (a.profile?.pinnedPostUri && a.profile.pinnedPostCid) out.pinnedPost = { uri: a.profile.pinnedPostUri, cid: a.profile.pinnedPostCid }
    return out
  }

  /** The `author` of a blockedPost / viewBlocked. */
  blockedAuthor(state: HydrationState, did: string): AppBskyFeedDefs.BlockedAuthor {
    const out: AppBskyFeedDefs.BlockedAuthor = { did }
    const viewer = this.actorViewer(state, did)
    if (viewer) out.viewer = viewer
    return out
  }

  // posts
  // =

  /** Whether the viewer may not reply in the thread of `root` (its threadgate). */
  replyDisabled(state: HydrationState, root: PostInfo): boolean {
    const gate = state.threadgates.get(root.uri)
    if (!gate || !state.viewer || state.viewer === root.creator) return false
    const allow = gate.record.allow
    if (!Array.isArray(allow)) return false
    const rel = state.actorViewers.get(root.creator) ?? {}
    for (const rule of allow) {
      if (!isObj(rule)) continue
      switch (rule.$type) {
        case 'app.bsky.feed.threadgate#mentionRule':
          if (mentionedDids(root.record).includes(state.viewer)) return false
          break
        case 'app.bsky.feed.threadgate#followerRule':
          if (rel.following) return false
          break
        case 'app.bsky.feed.threadgate#followingRule':
          if (rel.followedBy) return false
          break
        case 'app.bsky.feed.threadgate#listRule':
          // list membership is not hydrated for the viewer: leave the decision to the PDS / indexer
          return false
      }
    }
    return true
  }

  private embeddingDisabled(state: HydrationState, post: PostInfo): boolean {
    const gate = state.postgates.get(post.uri)
    if (!gate || !state.viewer || state.viewer === post.creator) return false
    const rules = gate.record.embeddingRules
    return Array.isArray(rules) && rules.some((r) => isObj(r) && r.$type === 'app.bsky.feed.postgate#disableRule')
  }

  threadgateView(state: HydrationState, postUri: string): AppBskyFeedDefs.ThreadgateView | undefined {
    const gate = state.threadgates.get(postUri)
    if (!gate) return undefined
    const lists: AppBskyGraphDefs.ListViewBasic[] = []
    const allow = gate.record.allow
    if (Array.isArray(allow)) {
      for (const rule of allow) {
        if (isObj(rule) && rule.$type === 'app.bsky.feed.threadgate#listRule' && typeof rule.list === 'string') {
          const l = this.listBasic(state, rule.list)
          if (l) lists.push(l)
        }
      }
    }
    return { uri: gate.uri, cid: gate.cid, record: gate.record, lists }
  }

  /** A postView, or undefined when the post or its author is not visible at all. */
  post(state: HydrationState, uri: string, depth = 0): AppBskyFeedDefs.PostView | undefined {
    const p = state.posts.get(uri)
    if (!p) return undefined
    const author = this.profileBasic(state, p.creator)
    if (!author) return undefined
    const agg = state.recordAggs.get(uri)
    const out: AppBskyFeedDefs.PostView = {
      uri: p.uri,
      cid: p.cid,
      author,
      record: p.record,
      replyCount: Math.max(0, agg?.replies ?? 0),
      repostCount: Math.max(0, agg?.reposts ?? 0),
      likeCount: Math.max(0, agg?.likes ?? 0),
      quoteCount: Math.max(0, agg?.quotes ?? 0),
      bookmarkCount: 0,
      indexedAt: p.indexedAt,
      labels: this.labelsOf(state, uri, { cid: p.cid, creator: p.creator, record: p.record, cts: p.indexedAt }),
    }
    const embed = this.embed(state, p, depth)
    if (embed) out.embed = embed
    if (state.viewer) {
      const viewer: AppBskyFeedDefs.ViewerState = { threadMuted: false, bookmarked: false }
      const like = state.viewerLikes.get(uri)
      const repost = state.viewerReposts.get(uri)
      if (like) viewer.like = like
      if (repost) viewer.repost = repost
      const root = p.replyRoot ? state.posts.get(p.replyRoot) : p
      viewer.replyDisabled = root ? this.replyDisabled(state, root) : false
      viewer.embeddingDisabled = this.embeddingDisabled(state, p)
      const pinned = state.actors.get(p.creator)?.profile?.pinnedPostUri === uri
      if (pinned) viewer.pinned = true
      out.viewer = viewer
    }
    if (!p.replyRoot) {
      const tg = this.threadgateView(state, uri)
      if (tg) out.threadgate = tg
    }
    return out
  }

  /** postView, or notFoundPost / blockedPost in its place (for reply refs and threads). */
  maybePost(state: HydrationState, uri: string): MaybePostView {
    const p = state.posts.get(uri)
    const author = p?.creator ?? didFromUri(uri)
    if (p && author && viewerBlocks(state, author)) {
      return { $type: 'app.bsky.feed.defs#blockedPost', uri, blocked: true, author: this.blockedAuthor(state, author) }
    }
    const view = this.post(state, uri)
    if (!view) return { $type: 'app.bsky.feed.defs#notFoundPost', uri, notFound: true }
    return { $type: 'app.bsky.feed.defs#postView', ...view }
  }

  // embeds
  // =

  embed(state: HydrationState, post: PostInfo, depth: number): AppBskyFeedDefs.PostView['embed'] | undefined {
    const e = post.record.embed
    if (!isObj(e)) return undefined
    const type = typeOf(e)
    if (type === 'app.bsky.embed.record') {
      if (depth >= 2 || !isObj(e.record) || typeof e.record.uri !== 'string') return undefined
      const record = this.embedRecord(state, post, e.record.uri, depth)
      return { $type: 'app.bsky.embed.record#view', record }
    }
    if (type === 'app.bsky.embed.recordWithMedia') {
      const media = isObj(e.media) ? this.mediaView(post.creator, e.media) : undefined
      const inner = isObj(e.record) && isObj(e.record.record) ? e.record.record : undefined
      if (!media || !inner || typeof inner.uri !== 'string') return media
      if (depth >= 2) return media
      const rec: AppBskyEmbedRecord.View = { record: this.embedRecord(state, post, inner.uri, depth) }
      const out: $Typed<AppBskyEmbedRecordWithMedia.View> = { $type: 'app.bsky.embed.recordWithMedia#view', record: rec, media }
      return out
    }
    return this.mediaView(post.creator, e)
  }

  private mediaView(
    did: string,
    e: Json,
  ): $Typed<AppBskyEmbedImages.View> | $Typed<AppBskyEmbedVideo.View> | $Typed<AppBskyEmbedExternal.View> | undefined {
    const type = typeOf(e)
    if (type === 'app.bsky.embed.images' && Array.isArray(e.images)) {
      const images: AppBskyEmbedImages.ViewImage[] = []
      for (const img of e.images) {
        if (!isObj(img)) continue
        const cid = blobCidOf(img.image)
        if (!cid) continue
        const view: AppBskyEmbedImages.ViewImage = {
          thumb: this.imageUrl('feed_thumbnail', did, cid),
          fullsize: this.imageUrl('feed_fullsize', did, cid),
          alt: str(img.alt) ?? '',
        }
        const ar = aspectRatio(img.aspectRatio)
        if (ar) view.aspectRatio = ar
        images.push(view)
      }
      return { $type: 'app.bsky.embed.images#view', images }
    }
    if (type === 'app.bsky.embed.video') {
      const cid = blobCidOf(e.video)
      if (!cid) return undefined
      const view: $Typed<AppBskyEmbedVideo.View> = {
        $type: 'app.bsky.embed.video#view',
        cid,
        playlist: this.videoPlaylistUrl(did, cid),
      }
      const alt = str(e.alt)
      if (alt) view.alt = alt
      const ar = aspectRatio(e.aspectRatio)
      if (ar) view.aspectRatio = ar
      return view
    }
    if (type === 'app.bsky.embed.external' && isObj(e.external)) {
      const x = e.external
      const external: AppBskyEmbedExternal.ViewExternal = {
        uri: str(x.uri) ?? '',
        title: str(x.title) ?? '',
        description: str(x.description) ?? '',
      }
      const thumb = blobCidOf(x.thumb)
      if (thumb) external.thumb = this.imageUrl('feed_thumbnail', did, thumb)
      return { $type: 'app.bsky.embed.external#view', external }
    }
    return undefined
  }

  /** The `record` of an embed.record#view: the quoted post, feed, list or starter pack, or why not. */
  embedRecord(state: HydrationState, parent: PostInfo, uri: string, depth: number): AppBskyEmbedRecord.View['record'] {
    const collection = collectionFromUri(uri)
    const notFound: $Typed<AppBskyEmbedRecord.ViewNotFound> = { $type: 'app.bsky.embed.record#viewNotFound', uri, notFound: true }
    const authorDid = didFromUri(uri)
    if (!authorDid) return notFound
    if (collection === COLLECTIONS.post) {
      const quoted = state.posts.get(uri)
      if (!quoted) return notFound
      const gate = state.postgates.get(uri)
      const detachedList = gate && Array.isArray(gate.record.detachedEmbeddingUris) ? gate.record.detachedEmbeddingUris : []
      if (parent.violatesEmbeddingRules || detachedList.includes(parent.uri)) {
        return { $type: 'app.bsky.embed.record#viewDetached', uri, detached: true }
      }
      if (viewerBlocks(state, quoted.creator) || blockedPair(state, parent.creator, quoted.creator)) {
        return { $type: 'app.bsky.embed.record#viewBlocked', uri, blocked: true, author: this.blockedAuthor(state, quoted.creator) }
      }
      const author = this.profileBasic(state, quoted.creator)
      if (!author) return notFound
      const agg = state.recordAggs.get(uri)
      const view: $Typed<AppBskyEmbedRecord.ViewRecord> = {
        $type: 'app.bsky.embed.record#viewRecord',
        uri,
        cid: quoted.cid,
        author,
        value: quoted.record,
        labels: this.labelsOf(state, uri, { cid: quoted.cid, creator: quoted.creator, record: quoted.record, cts: quoted.indexedAt }),
        likeCount: Math.max(0, agg?.likes ?? 0),
        replyCount: Math.max(0, agg?.replies ?? 0),
        repostCount: Math.max(0, agg?.reposts ?? 0),
        quoteCount: Math.max(0, agg?.quotes ?? 0),
        indexedAt: quoted.indexedAt,
      }
      const nested = this.embed(state, quoted, depth + 1)
      if (nested) view.embeds = [nested]
      return view
    }
    if (collection === COLLECTIONS.generator) {
      const g = this.feedgen(state, uri)
      return g ? { $type: 'app.bsky.feed.defs#generatorView', ...g } : notFound
    }
    if (collection === COLLECTIONS.list) {
      const l = this.list(state, uri)
      return l ? { $type: 'app.bsky.graph.defs#listView', ...l } : notFound
    }
    if (collection === COLLECTIONS.starterpack) {
      const s = this.starterPackBasic(state, uri)
      return s ? { $type: 'app.bsky.graph.defs#starterPackViewBasic', ...s } : notFound
    }
    return notFound
  }

  // feeds and threads
  // =

  /** A feedViewPost: the post, why it is in the feed (repost / pin) and its reply context. */
  feedViewPost(state: HydrationState, item: FeedItem): AppBskyFeedDefs.FeedViewPost | undefined {
    const post = this.post(state, item.postUri)
    if (!post) return undefined
    const out: AppBskyFeedDefs.FeedViewPost = { post }
    if (item.repostUri) {
      const repost = state.reposts.get(item.repostUri)
      const by = repost ? this.profileBasic(state, repost.creator) : undefined
      if (!repost || !by) return undefined
      out.reason = { $type: 'app.bsky.feed.defs#reasonRepost', by, uri: repost.uri, cid: repost.cid, indexedAt: repost.indexedAt }
    } else if (item.pinned) {
      out.reason = { $type: 'app.bsky.feed.defs#reasonPin' }
    }
    const p = state.posts.get(item.postUri)!
    if (p.replyParent && p.replyRoot) {
      const reply: AppBskyFeedDefs.ReplyRef = {
        root: this.maybePost(state, p.replyRoot),
        parent: this.maybePost(state, p.replyParent),
      }
      const parent = state.posts.get(p.replyParent)
      const gpDid = parent?.replyParent ? didFromUri(parent.replyParent) : undefined
      if (gpDid) {
        const gp = this.profileBasic(state, gpDid)
        if (gp) reply.grandparentAuthor = gp
      }
      out.reply = reply
    }
    return out
  }

  // lists, feed generators, starter packs
  // =

  private listViewer(state: HydrationState, uri: string): AppBskyGraphDefs.ListViewerState | undefined {
    if (!state.viewer) return undefined
    const v = state.listViewers.get(uri) ?? {}
    const out: AppBskyGraphDefs.ListViewerState = { muted: !!v.muted }
    if (v.blocked) out.blocked = v.blocked
    return out
  }

  listBasic(state: HydrationState, uri: string): AppBskyGraphDefs.ListViewBasic | undefined {
    const l = state.lists.get(uri)
    if (!l) return undefined
    if (state.actors.get(l.creator)?.upstreamStatus) return undefined
    const out: AppBskyGraphDefs.ListViewBasic = {
      uri: l.uri,
      cid: l.cid,
      name: l.name,
      purpose: l.purpose,
      listItemCount: Math.max(0, state.listItemCounts.get(uri) ?? 0),
      labels: this.labelsOf(state, uri, { cid: l.cid, creator: l.creator, record: l.record, cts: l.indexedAt }),
      indexedAt: l.indexedAt,
    }
    if (l.avatarCid) out.avatar = this.imageUrl('avatar', l.creator, l.avatarCid)
    const viewer = this.listViewer(state, uri)
    if (viewer) out.viewer = viewer
    return out
  }

  list(state: HydrationState, uri: string): AppBskyGraphDefs.ListView | undefined {
    const l = state.lists.get(uri)
    const basic = this.listBasic(state, uri)
    const creator = l ? this.profile(state, l.creator) : undefined
    if (!l || !basic || !creator) return undefined
    const out: AppBskyGraphDefs.ListView = { ...untype(basic), creator, indexedAt: l.indexedAt }
    if (l.description) out.description = l.description
    if (Array.isArray(l.record.descriptionFacets)) out.descriptionFacets = l.record.descriptionFacets as never
    return out
  }

  feedgen(state: HydrationState, uri: string): AppBskyFeedDefs.GeneratorView | undefined {
    const g = state.feedgens.get(uri)
    const creator = g ? this.profile(state, g.creator) : undefined
    if (!g || !creator) return undefined
    const out: AppBskyFeedDefs.GeneratorView = {
      uri: g.uri,
      cid: g.cid,
      did: g.feedDid,
      creator,
      displayName: g.displayName,
      likeCount: Math.max(0, state.recordAggs.get(uri)?.likes ?? 0),
      labels: this.labelsOf(state, uri, { cid: g.cid, creator: g.creator, record: g.record, cts: g.indexedAt }),
      indexedAt: g.indexedAt,
    }
    if (g.description) out.description = g.description
    if (Array.isArray(g.record.descriptionFacets)) out.descriptionFacets = g.record.descriptionFacets as never
    if (g.avatarCid) out.avatar = this.imageUrl('avatar', g.creator, g.avatarCid)
    if (typeof g.record.acceptsInteractions === 'boolean') out.acceptsInteractions = g.record.acceptsInteractions
    if (typeof g.record.contentMode === 'string') out.contentMode = g.record.contentMode
    if (state.viewer) {
      const like = state.viewerLikes.get(uri)
      out.viewer = like ? { like } : {}
    }
    return out
  }

  starterPackBasic(state: HydrationState, uri: string): AppBskyGraphDefs.StarterPackViewBasic | undefined {
    const s = state.starterPacks.get(uri)
    const creator = s ? this.profileBasic(state, s.creator) : undefined
    if (!s || !creator) return undefined
    return {
      uri: s.uri,
      cid: s.cid,
      record: s.record,
      creator,
      listItemCount: Math.max(0, state.listItemCounts.get(s.listUri) ?? 0),
      joinedWeekCount: 0,
      joinedAllTimeCount: 0,
      labels: this.labelsOf(state, uri, { cid: s.cid, creator: s.creator, record: s.record, cts: s.indexedAt }),
      indexedAt: s.indexedAt,
    }
  }

  starterPack(
    state: HydrationState,
    uri: string,
    sample: { uri: string; subjectDid: string }[],
  ): AppBskyGraphDefs.StarterPackView | undefined {
    const s = state.starterPacks.get(uri)
    const basic = this.starterPackBasic(state, uri)
    if (!s || !basic) return undefined
    const { listItemCount: _count, ...rest } = basic
    const out: AppBskyGraphDefs.StarterPackView = { ...untype(rest) }
    const list = this.listBasic(state, s.listUri)
    if (list) out.list = list
    out.listItemsSample = this.listItems(state, sample)
    const feeds: AppBskyFeedDefs.GeneratorView[] = []
    const recFeeds = Array.isArray(s.record.feeds) ? s.record.feeds : []
    for (const f of recFeeds) {
      if (isObj(f) && typeof f.uri === 'string') {
        const g = this.feedgen(state, f.uri)
        if (g) feeds.push(g)
      }
    }
    out.feeds = feeds
    return out
  }

  listItems(state: HydrationState, items: { uri: string; subjectDid: string }[]): AppBskyGraphDefs.ListItemView[] {
    const out: AppBskyGraphDefs.ListItemView[] = []
    for (const item of items) {
      const subject = this.profile(state, item.subjectDid)
      if (subject) out.push({ uri: item.uri, subject })
    }
    return out
  }
}

export { actorHidden, blockedPair, viewerBlocks }
export type { ActorInfo }
