/**
 * Hydration: batched reads of everything views need about a set of posts, actors, lists, feed
 * generators... into one HydrationState. The views (../views) then build lexicon objects from the
 * state without any I/O.
 */
import type { Kysely } from 'kysely'
import type { DatabaseSchema } from '../indexer/schema.js'
import { COLLECTIONS, collectionFromUri, didFromUri } from '../indexer/records.js'
import { LABELER_COLLECTION, labelsFor, type AcceptedLabeler, type ViewLabel } from '../labels/labels.js'
import { currentLabelers } from '../labels/request.js'

type Db = Kysely<DatabaseSchema>
type Json = Record<string, unknown>

export interface ProfileInfo {
  uri: string
  cid: string
  record: Json
  displayName: string | null
  description: string | null
  avatarCid: string | null
  bannerCid: string | null
  pinnedPostUri: string | null
  pinnedPostCid: string | null
  createdAt: string | null
  indexedAt: string
}

export interface ActorInfo {
  did: string
  handle: string | null
  upstreamStatus: string | null
  indexedAt: string
  profile: ProfileInfo | null
}

export interface ProfileAgg {
  followers: number
  follows: number
  posts: number
  lists: number
  feedgens: number
  starterPacks: number
}

export interface ActorViewer {
  following?: string
  followedBy?: string
  blocking?: string
  blockedBy?: boolean
  blockingByList?: string
  blockedByList?: string
  muted?: boolean
  mutedByList?: string
}

export interface PostInfo {
  uri: string
  cid: string
  creator: string
  record: Json
  indexedAt: string
  sortAt: string
  replyRoot: string | null
  replyParent: string | null
  quoteUri: string | null
  violatesThreadGate: boolean
  violatesEmbeddingRules: boolean
}

export interface RecordAgg {
  likes: number
  reposts: number
  replies: number
  quotes: number
}

export interface GateInfo {
  uri: string
  cid: string
  record: Json
}

export interface ListInfo {
  uri: string
  cid: string
  creator: string
  record: Json
  name: string
  purpose: string
  description: string | null
  avatarCid: string | null
  indexedAt: string
}

export interface ListViewer {
  muted?: boolean
  blocked?: string
}

export interface FeedgenInfo {
  uri: string
  cid: string
  creator: string
  feedDid: string
  record: Json
  displayName: string
  description: string | null
  avatarCid: string | null
  indexedAt: string
}

export interface StarterPackInfo {
  uri: string
  cid: string
  creator: string
  record: Json
  listUri: string
  indexedAt: string
}

export interface RepostInfo {
  uri: string
  cid: string
  creator: string
  subject: string
  indexedAt: string
  sortAt: string
}

export class HydrationState {
  readonly actors = new Map<string, ActorInfo | null>()
  readonly profileAggs = new Map<string, ProfileAgg>()
  readonly actorViewers = new Map<string, ActorViewer>()
  readonly posts = new Map<string, PostInfo | null>()
  readonly recordAggs = new Map<string, RecordAgg>()
  /** subject URI → the viewer's like URI */
  readonly viewerLikes = new Map<string, string>()
  /** post URI → the viewer's repost URI */
  readonly viewerReposts = new Map<string, string>()
  /** post URI → its threadgate / postgate */
  readonly threadgates = new Map<string, GateInfo>()
  readonly postgates = new Map<string, GateInfo>()
  readonly lists = new Map<string, ListInfo | null>()
  readonly listItemCounts = new Map<string, number>()
  readonly listViewers = new Map<string, ListViewer>()
  readonly feedgens = new Map<string, FeedgenInfo | null>()
  readonly starterPacks = new Map<string, StarterPackInfo | null>()
  readonly reposts = new Map<string, RepostInfo | null>()
  /** directed block edges "a b" (a blocks b, directly or through a subscribed list) among hydrated actors */
  readonly blockEdges = new Set<string>()
  /** actors whose third-party block edges have been loaded */
  readonly blockChecked = new Set<string>()
  /** subject URI (DID or at-uri) → labels from the accepted labelers */
  readonly labels = new Map<string, ViewLabel[]>()
  /** actors that publish an app.bsky.labeler.service record */
  readonly labelerActors = new Set<string>()

  /**
   * `labelers`: the labelers whose labels the views carry (default: those of the request being served,
   * see labels/request.ts; none outside a request).
   */
  constructor(
    readonly viewer: string | null,
    readonly labelers: AcceptedLabeler[] = currentLabelers() ?? [],
  ) {}
}

/** Labels that take content down when the AppView's own moderation service sets them. */
export const TAKEDOWN_LABELS: ReadonlySet<string> = new Set(['!takedown', '!suspend'])

const CHUNK = 500

function chunks<T>(items: T[]): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK))
  return out
}

function parseJson(s: string): Json {
  try {
    const v = JSON.parse(s) as unknown
    return typeof v === 'object' && v !== null ? (v as Json) : {}
  } catch {
    return {}
  }
}

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** URIs of records a post embeds (embed.record / embed.recordWithMedia.record). */
export function embeddedUri(record: Json): string | undefined {
  const embed = record.embed
  if (!isObj(embed)) return undefined
  const type = typeof embed.$type === 'string' ? embed.$type.replace(/#main$/, '') : ''
  if (type === 'app.bsky.embed.record' && isObj(embed.record) && typeof embed.record.uri === 'string') return embed.record.uri
  if (type === 'app.bsky.embed.recordWithMedia' && isObj(embed.record) && isObj(embed.record.record) && typeof embed.record.record.uri === 'string') {
    return embed.record.record.uri
  }
  return undefined
}

export interface HydratorOptions {
  /** the AppView's own moderation service: its labels always apply, and !takedown / !suspend remove content */
  modServiceDid?: string
}

export class Hydrator {
  constructor(
    private readonly db: Db,
    private readonly opts: HydratorOptions = {},
  ) {}

  // labels
  // =

  /** Labels and the viewer's likes of labeler service records (app.bsky.labeler.getServices). */
  async labelerRecords(state: HydrationState, uris: string[]): Promise<void> {
    if (uris.length === 0) return
    await this.loadLabels(state, uris)
    await this.viewerInteractions(state, uris)
  }

  /**
   * Labels on records shown by URI alone (notifications): loaded into the state; returns the URIs the
   * moderation service took down.
   */
  async recordLabels(state: HydrationState, uris: string[]): Promise<Set<string>> {
    return new Set((await this.loadLabels(state, [...new Set(uris)])).keys())
  }

  /**
   * Loads the labels on `uris` from the request's labelers (and the moderation service) into the state.
   * Returns the URIs the moderation service took down.
   */
  private async loadLabels(state: HydrationState, uris: string[]): Promise<Map<string, string>> {
    const takedowns = new Map<string, string>()
    const mod = this.opts.modServiceDid
    const srcs = state.labelers.map((l) => l.did)
    if (mod && !srcs.includes(mod)) srcs.push(mod)
    const found = await labelsFor(this.db, uris, srcs)
    for (const [uri, labels] of found) {
      state.labels.set(uri, labels)
      const down = labels.find((l) => l.src === mod && TAKEDOWN_LABELS.has(l.val))
      if (down) takedowns.set(uri, down.val)
    }
    return takedowns
  }

  // actors
  // =

  /** Actor rows, profiles, counts and the viewer's relationships for `dids`. */
  async actors(state: HydrationState, dids: Iterable<string>, opts: { viewer?: boolean } = {}): Promise<void> {
    const todo = [...new Set(dids)].filter((d) => !state.actors.has(d))
    for (const batch of chunks(todo)) {
      const rows = await this.db
        .selectFrom('actor')
        .leftJoin('profile', 'profile.creator', 'actor.did')
        .leftJoin('record', 'record.uri', 'profile.uri')
        .leftJoin('profile_agg', 'profile_agg.did', 'actor.did')
        .select([
          'actor.did',
          'actor.handle',
          'actor.upstreamStatus',
          'actor.indexedAt',
          'profile.uri as profileUri',
          'profile.cid as profileCid',
          'profile.displayName',
          'profile.description',
          'profile.avatarCid',
          'profile.bannerCid',
          'profile.pinnedPostUri',
          'profile.pinnedPostCid',
          'profile.createdAt',
          'profile.indexedAt as profileIndexedAt',
          'record.json',
          'profile_agg.followersCount',
          'profile_agg.followsCount',
          'profile_agg.postsCount',
          'profile_agg.listsCount',
          'profile_agg.feedgensCount',
          'profile_agg.starterPacksCount',
        ])
        .where('actor.did', 'in', batch)
        .execute()
      for (const r of rows) {
        state.actors.set(r.did, {
          did: r.did,
          handle: r.handle,
          upstreamStatus: r.upstreamStatus,
          indexedAt: r.indexedAt,
          profile:
            r.profileUri && r.profileCid
              ? {
                  uri: r.profileUri,
                  cid: r.profileCid,
                  record: parseJson(r.json ?? '{}'),
                  displayName: r.displayName,
                  description: r.description,
                  avatarCid: r.avatarCid,
                  bannerCid: r.bannerCid,
                  pinnedPostUri: r.pinnedPostUri,
                  pinnedPostCid: r.pinnedPostCid,
                  createdAt: r.createdAt,
                  indexedAt: r.profileIndexedAt ?? r.indexedAt,
                }
              : null,
        })
        state.profileAggs.set(r.did, {
          followers: Number(r.followersCount ?? 0),
          follows: Number(r.followsCount ?? 0),
          posts: Number(r.postsCount ?? 0),
          lists: Number(r.listsCount ?? 0),
          feedgens: Number(r.feedgensCount ?? 0),
          starterPacks: Number(r.starterPacksCount ?? 0),
        })
      }
      for (const did of batch) if (!state.actors.has(did)) state.actors.set(did, null)
      const found = rows.map((r) => r.did)
      if (found.length === 0) continue
      const profileUris = found.map((d) => `at://${d}/${COLLECTIONS.profile}/self`)
      const takedowns = await this.loadLabels(state, [...found, ...profileUris])
      for (const [did, val] of takedowns) {
        const a = state.actors.get(did)
        if (a && !a.upstreamStatus) a.upstreamStatus = val === '!suspend' ? 'suspended' : 'takendown'
      }
      const labelers = await this.db
        .selectFrom('record')
        .select('did')
        .where('collection', '=', LABELER_COLLECTION)
        .where('rkey', '=', 'self')
        .where('did', 'in', found)
        .execute()
      for (const l of labelers) state.labelerActors.add(l.did)
    }
    if (opts.viewer !== false) await this.actorViewers(state, todo)
  }

  /** The viewer's follows, blocks (direct and by list) and mutes toward `dids`. */
  async actorViewers(state: HydrationState, dids: string[]): Promise<void> {
    const viewer = state.viewer
    if (!viewer) return
    const todo = [...new Set(dids)].filter((d) => !state.actorViewers.has(d))
    const listUris = new Set<string>()
    for (const batch of chunks(todo)) {
      const vs = new Map<string, ActorViewer>(batch.map((d) => [d, {}]))
      const [following, followedBy, blocking, blockedBy, blockingByList, blockedByList, muted, mutedByList] = await Promise.all([
        this.db.selectFrom('follow').select(['uri', 'subjectDid as did']).where('creator', '=', viewer).where('subjectDid', 'in', batch).execute(),
        this.db.selectFrom('follow').select(['uri', 'creator as did']).where('subjectDid', '=', viewer).where('creator', 'in', batch).execute(),
        this.db.selectFrom('block').select(['uri', 'subjectDid as did']).where('creator', '=', viewer).where('subjectDid', 'in', batch).execute(),
        this.db.selectFrom('block').select(['uri', 'creator as did']).where('subjectDid', '=', viewer).where('creator', 'in', batch).execute(),
        this.db
          .selectFrom('list_block')
          .innerJoin('list_item', 'list_item.listUri', 'list_block.subjectUri')
          .select(['list_block.subjectUri as listUri', 'list_item.subjectDid as did'])
          .where('list_block.creator', '=', viewer)
          .where('list_item.subjectDid', 'in', batch)
          .execute(),
        this.db
          .selectFrom('list_block')
          .innerJoin('list_item', 'list_item.listUri', 'list_block.subjectUri')
          .select(['list_block.subjectUri as listUri', 'list_block.creator as did'])
          .where('list_item.subjectDid', '=', viewer)
          .where('list_block.creator', 'in', batch)
          .execute(),
        this.db.selectFrom('mute').select(['subjectDid as did']).where('mutedByDid', '=', viewer).where('subjectDid', 'in', batch).execute(),
        this.db
          .selectFrom('list_mute')
          .innerJoin('list_item', 'list_item.listUri', 'list_mute.listUri')
          .select(['list_mute.listUri as listUri', 'list_item.subjectDid as did'])
          .where('list_mute.mutedByDid', '=', viewer)
          .where('list_item.subjectDid', 'in', batch)
          .execute(),
      ])
      for (const r of following) vs.get(r.did)!.following = r.uri
      for (const r of followedBy) vs.get(r.did)!.followedBy = r.uri
      for (const r of blocking) vs.get(r.did)!.blocking = r.uri
      for (const r of blockedBy) vs.get(r.did)!.blockedBy = true
      for (const r of blockingByList) {
        vs.get(r.did)!.blockingByList = r.listUri
        listUris.add(r.listUri)
      }
      for (const r of blockedByList) vs.get(r.did)!.blockedByList = r.listUri
      for (const r of muted) vs.get(r.did)!.muted = true
      for (const r of mutedByList) {
        vs.get(r.did)!.mutedByList = r.listUri
        listUris.add(r.listUri)
      }
      for (const [did, v] of vs) state.actorViewers.set(did, v)
    }
    if (listUris.size > 0) await this.lists(state, listUris, { creators: false })
  }

  /** Block edges among `dids` (third-party blocks: a reply's author vs its parent's author...). */
  async blocksAmong(state: HydrationState, dids: Iterable<string>): Promise<void> {
    const all = [...new Set([...dids, ...state.blockChecked])]
    const fresh = all.filter((d) => !state.blockChecked.has(d))
    if (fresh.length === 0 || all.length < 2) {
      for (const d of fresh) state.blockChecked.add(d)
      return
    }
    for (const batch of chunks(fresh)) {
      for (const others of chunks(all)) {
        const [direct1, direct2, byList1, byList2] = await Promise.all([
          this.db.selectFrom('block').select(['creator', 'subjectDid']).where('creator', 'in', batch).where('subjectDid', 'in', others).execute(),
          this.db.selectFrom('block').select(['creator', 'subjectDid']).where('creator', 'in', others).where('subjectDid', 'in', batch).execute(),
          this.db
            .selectFrom('list_block')
            .innerJoin('list_item', 'list_item.listUri', 'list_block.subjectUri')
            .select(['list_block.creator as creator', 'list_item.subjectDid as subjectDid'])
            .where('list_block.creator', 'in', batch)
            .where('list_item.subjectDid', 'in', others)
            .execute(),
          this.db
            .selectFrom('list_block')
            .innerJoin('list_item', 'list_item.listUri', 'list_block.subjectUri')
            .select(['list_block.creator as creator', 'list_item.subjectDid as subjectDid'])
            .where('list_block.creator', 'in', others)
            .where('list_item.subjectDid', 'in', batch)
            .execute(),
        ])
        for (const r of [...direct1, ...direct2, ...byList1, ...byList2]) state.blockEdges.add(`${r.creator} ${r.subjectDid}`)
      }
    }
    for (const d of fresh) state.blockChecked.add(d)
  }

  // posts
  // =

  /**
   * Posts with their authors, counts, the viewer's likes and reposts, gates, and the records they
   * embed (two levels of quotes). `replyContext` also loads each post's reply root and parent.
   */
  async posts(state: HydrationState, uris: Iterable<string>, opts: { replyContext?: boolean; embedDepth?: number } = {}): Promise<void> {
    const embedDepth = opts.embedDepth ?? 2
    let level = [...new Set(uris)]
    const authors = new Set<string>()
    for (let depth = 0; level.length > 0 && depth <= embedDepth; depth++) {
      const loaded = await this.loadPosts(state, level)
      const next = new Set<string>()
      const others = { lists: new Set<string>(), feedgens: new Set<string>(), packs: new Set<string>() }
      for (const p of loaded) {
        authors.add(p.creator)
        const embedded = embeddedUri(p.record)
        if (!embedded || depth === embedDepth) continue
        const coll = collectionFromUri(embedded)
        if (coll === COLLECTIONS.post) next.add(embedded)
        else if (coll === COLLECTIONS.list) others.lists.add(embedded)
        else if (coll === COLLECTIONS.generator) others.feedgens.add(embedded)
        else if (coll === COLLECTIONS.starterpack) others.packs.add(embedded)
      }
      if (opts.replyContext && depth === 0) {
        const ctx = new Set<string>()
        for (const p of loaded) {
          if (p.replyRoot) ctx.add(p.replyRoot)
          if (p.replyParent) ctx.add(p.replyParent)
        }
        const replyPosts = await this.loadPosts(state, [...ctx])
        for (const p of replyPosts) {
          authors.add(p.creator)
          // grandparent author
          if (p.replyParent) {
            const gp = didFromUri(p.replyParent)
            if (gp) authors.add(gp)
          }
          const embedded = embeddedUri(p.record)
          if (embedded && collectionFromUri(embedded) === COLLECTIONS.post) next.add(embedded)
        }
      }
      if (others.lists.size) await this.lists(state, others.lists)
      if (others.feedgens.size) await this.feedgens(state, others.feedgens)
      if (others.packs.size) await this.starterPacks(state, others.packs)
      level = [...next].filter((u) => !state.posts.has(u))
    }
    await this.actors(state, authors)
    // third-party blocks among the authors: replies and quotes across a block are not shown
    await this.blocksAmong(state, authors)
  }

  private async loadPosts(state: HydrationState, uris: string[]): Promise<PostInfo[]> {
    const todo = [...new Set(uris)].filter((u) => !state.posts.has(u))
    const out: PostInfo[] = []
    for (const batch of chunks(todo)) {
      const rows = await this.db
        .selectFrom('post')
        .innerJoin('record', 'record.uri', 'post.uri')
        .leftJoin('record_agg', 'record_agg.uri', 'post.uri')
        .select([
          'post.uri',
          'post.cid',
          'post.creator',
          'post.indexedAt',
          'post.sortAt',
          'post.replyRoot',
          'post.replyParent',
          'post.quoteUri',
          'post.violatesThreadGate',
          'post.violatesEmbeddingRules',
          'record.json',
          'record_agg.likeCount',
          'record_agg.repostCount',
          'record_agg.replyCount',
          'record_agg.quoteCount',
        ])
        .where('post.uri', 'in', batch)
        .execute()
      for (const r of rows) {
        const info: PostInfo = {
          uri: r.uri,
          cid: r.cid,
          creator: r.creator,
          record: parseJson(r.json),
          indexedAt: r.indexedAt,
          sortAt: r.sortAt,
          replyRoot: r.replyRoot,
          replyParent: r.replyParent,
          quoteUri: r.quoteUri,
          violatesThreadGate: Number(r.violatesThreadGate) === 1,
          violatesEmbeddingRules: Number(r.violatesEmbeddingRules) === 1,
        }
        state.posts.set(r.uri, info)
        state.recordAggs.set(r.uri, {
          likes: Number(r.likeCount ?? 0),
          reposts: Number(r.repostCount ?? 0),
          replies: Number(r.replyCount ?? 0),
          quotes: Number(r.quoteCount ?? 0),
        })
        out.push(info)
      }
      for (const u of batch) if (!state.posts.has(u)) state.posts.set(u, null)
      const found = rows.map((r) => r.uri)
      if (found.length === 0) continue
      for (const uri of (await this.loadLabels(state, found)).keys()) {
        state.posts.set(uri, null)
        const i = out.findIndex((p) => p.uri === uri)
        if (i >= 0) out.splice(i, 1)
      }
      // gates live at the post's rkey; the root's threadgate matters for every reply
      const roots = [...new Set([...found, ...rows.map((r) => r.replyRoot).filter((u): u is string => !!u)])]
      const [tgs, pgs] = await Promise.all([
        this.db
          .selectFrom('threadgate')
          .innerJoin('record', 'record.uri', 'threadgate.uri')
          .select(['threadgate.uri', 'threadgate.cid', 'threadgate.postUri', 'record.json'])
          .where('threadgate.postUri', 'in', roots)
          .execute(),
        this.db
          .selectFrom('postgate')
          .innerJoin('record', 'record.uri', 'postgate.uri')
          .select(['postgate.uri', 'postgate.cid', 'postgate.postUri', 'record.json'])
          .where('postgate.postUri', 'in', found)
          .execute(),
      ])
      for (const g of tgs) state.threadgates.set(g.postUri, { uri: g.uri, cid: g.cid, record: parseJson(g.json) })
      for (const g of pgs) state.postgates.set(g.postUri, { uri: g.uri, cid: g.cid, record: parseJson(g.json) })
      if (state.viewer) await this.viewerInteractions(state, found)
    }
    return out
  }

  /** The viewer's likes and reposts of `uris` (posts or feed generators). */
  async viewerInteractions(state: HydrationState, uris: string[]): Promise<void> {
    const viewer = state.viewer
    if (!viewer || uris.length === 0) return
    const [likes, reposts] = await Promise.all([
      this.db.selectFrom('like').select(['uri', 'subject']).where('creator', '=', viewer).where('subject', 'in', uris).execute(),
      this.db.selectFrom('repost').select(['uri', 'subject']).where('creator', '=', viewer).where('subject', 'in', uris).execute(),
    ])
    for (const l of likes) state.viewerLikes.set(l.subject, l.uri)
    for (const r of reposts) state.viewerReposts.set(r.subject, r.uri)
  }

  /** Repost records (for feed reasons). */
  async reposts(state: HydrationState, uris: Iterable<string>): Promise<void> {
    const todo = [...new Set(uris)].filter((u) => !state.reposts.has(u))
    for (const batch of chunks(todo)) {
      const rows = await this.db.selectFrom('repost').select(['uri', 'cid', 'creator', 'subject', 'indexedAt', 'sortAt']).where('uri', 'in', batch).execute()
      for (const r of rows) state.reposts.set(r.uri, r)
      for (const u of batch) if (!state.reposts.has(u)) state.reposts.set(u, null)
    }
  }

  // lists, feed generators, starter packs
  // =

  async lists(state: HydrationState, uris: Iterable<string>, opts: { creators?: boolean } = {}): Promise<void> {
    const todo = [...new Set(uris)].filter((u) => !state.lists.has(u))
    const creators = new Set<string>()
    for (const batch of chunks(todo)) {
      const rows = await this.db
        .selectFrom('list')
        .innerJoin('record', 'record.uri', 'list.uri')
        .leftJoin('list_agg', 'list_agg.uri', 'list.uri')
        .select(['list.uri', 'list.cid', 'list.creator', 'list.name', 'list.purpose', 'list.description', 'list.avatarCid', 'list.indexedAt', 'record.json', 'list_agg.itemCount'])
        .where('list.uri', 'in', batch)
        .execute()
      for (const r of rows) {
        state.lists.set(r.uri, {
          uri: r.uri,
          cid: r.cid,
          creator: r.creator,
          record: parseJson(r.json),
          name: r.name,
          purpose: r.purpose,
          description: r.description,
          avatarCid: r.avatarCid,
          indexedAt: r.indexedAt,
        })
        state.listItemCounts.set(r.uri, Number(r.itemCount ?? 0))
        creators.add(r.creator)
      }
      for (const u of batch) if (!state.lists.has(u)) state.lists.set(u, null)
      if (rows.length > 0) for (const uri of (await this.loadLabels(state, rows.map((r) => r.uri))).keys()) state.lists.set(uri, null)
      if (state.viewer && rows.length > 0) {
        const found = rows.map((r) => r.uri)
        const [mutes, blocks] = await Promise.all([
          this.db.selectFrom('list_mute').select('listUri').where('mutedByDid', '=', state.viewer).where('listUri', 'in', found).execute(),
          this.db.selectFrom('list_block').select(['uri', 'subjectUri']).where('creator', '=', state.viewer).where('subjectUri', 'in', found).execute(),
        ])
        for (const u of found) state.listViewers.set(u, {})
        for (const m of mutes) state.listViewers.get(m.listUri)!.muted = true
        for (const b of blocks) state.listViewers.get(b.subjectUri)!.blocked = b.uri
      }
    }
    if (opts.creators !== false) await this.actors(state, creators)
  }

  async feedgens(state: HydrationState, uris: Iterable<string>): Promise<void> {
    const todo = [...new Set(uris)].filter((u) => !state.feedgens.has(u))
    const creators = new Set<string>()
    for (const batch of chunks(todo)) {
      const rows = await this.db
        .selectFrom('feed_generator')
        .innerJoin('record', 'record.uri', 'feed_generator.uri')
        .leftJoin('record_agg', 'record_agg.uri', 'feed_generator.uri')
        .select([
          'feed_generator.uri',
          'feed_generator.cid',
          'feed_generator.creator',
          'feed_generator.feedDid',
          'feed_generator.displayName',
          'feed_generator.description',
          'feed_generator.avatarCid',
          'feed_generator.indexedAt',
          'record.json',
          'record_agg.likeCount',
        ])
        .where('feed_generator.uri', 'in', batch)
        .execute()
      for (const r of rows) {
        state.feedgens.set(r.uri, {
          uri: r.uri,
          cid: r.cid,
          creator: r.creator,
          feedDid: r.feedDid,
          record: parseJson(r.json),
          displayName: r.displayName,
          description: r.description,
          avatarCid: r.avatarCid,
          indexedAt: r.indexedAt,
        })
        state.recordAggs.set(r.uri, { likes: Number(r.likeCount ?? 0), reposts: 0, replies: 0, quotes: 0 })
        creators.add(r.creator)
      }
      for (const u of batch) if (!state.feedgens.has(u)) state.feedgens.set(u, null)
      if (rows.length > 0) for (const uri of (await this.loadLabels(state, rows.map((r) => r.uri))).keys()) state.feedgens.set(uri, null)
      await this.viewerInteractions(state, rows.map((r) => r.uri))
    }
    await this.actors(state, creators)
  }

  async starterPacks(state: HydrationState, uris: Iterable<string>): Promise<void> {
    const todo = [...new Set(uris)].filter((u) => !state.starterPacks.has(u))
    const creators = new Set<string>()
    const lists = new Set<string>()
    for (const batch of chunks(todo)) {
      const rows = await this.db
        .selectFrom('starter_pack')
        .innerJoin('record', 'record.uri', 'starter_pack.uri')
        .select(['starter_pack.uri', 'starter_pack.cid', 'starter_pack.creator', 'starter_pack.listUri', 'starter_pack.indexedAt', 'record.json'])
        .where('starter_pack.uri', 'in', batch)
        .execute()
      for (const r of rows) {
        state.starterPacks.set(r.uri, { uri: r.uri, cid: r.cid, creator: r.creator, listUri: r.listUri, indexedAt: r.indexedAt, record: parseJson(r.json) })
        creators.add(r.creator)
        lists.add(r.listUri)
      }
      for (const u of batch) if (!state.starterPacks.has(u)) state.starterPacks.set(u, null)
      if (rows.length > 0) for (const uri of (await this.loadLabels(state, rows.map((r) => r.uri))).keys()) state.starterPacks.set(uri, null)
    }
    await this.lists(state, lists, { creators: false })
    await this.actors(state, creators)
  }
}
