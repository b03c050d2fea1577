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
import { isKeptResult, listSql, type ListSql, type PreparedText } from './sql.js'

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
  /** which relationship kinds the viewer has at all (see Hydrator.viewerKinds), once read */
  viewerKinds: number[] | undefined
  /** subject URI (DID or at-uri) → labels from the accepted labelers */
  readonly labels = new Map<string, ViewLabel[]>()
  /** actors that publish an app.bsky.labeler.service record */
  readonly labelerActors = new Set<string>()
  /** actors whose counts (profileAggs) and labeler service were loaded (detailed profiles need them) */
  readonly countsLoaded = new Set<string>()

  /**
   * `labelers`: the labelers whose labels the views carry (default: those of the request being served,
   * see labels/request.ts; none outside a request).
   */
  constructor(
    readonly viewer: string | null,
    readonly labelers: AcceptedLabeler[] = currentLabelers() ?? [],
  ) {}
}

/** The viewer's relationship kinds, in the order of the hydration statement's parts (see viewerKinds there). */
const VIEWER_KINDS = ['following', 'followedBy', 'blocking', 'blockedBy', 'blockingByList', 'blockedByList', 'muted', 'mutedByList'] as const

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

interface ActorRow {
  did: string
  handle: string | null
  upstreamStatus: string | null
  indexedAt: string
  profileUri: string | null
  profileCid: string | null
  displayName: string | null
  description: string | null
  avatarCid: string | null
  bannerCid: string | null
  pinnedPostUri: string | null
  pinnedPostCid: string | null
  createdAt: string | null
  profileIndexedAt: string | null
  json: string | null
}

interface ActorCountsRow {
  did: string
  followersCount: number | null
  followsCount: number | null
  postsCount: number | null
  listsCount: number | null
  feedgensCount: number | null
  starterPacksCount: number | null
  labeler: number | null
}

/**
 * A post's current version (CID, indexedAt) and gate checks, as a caller that read the post's row already
 * (a thread's replies) hands them to Hydrator.posts: then only its counts are read.
 */
export interface PostHead {
  uri: string
  cid: string
  indexedAt: string
  violatesThreadGate: number | boolean
  violatesEmbeddingRules: number | boolean
}

/** What changes about a post without a new record version: its gate checks and counts. */
interface PostHeadRow extends PostHead {
  likeCount: number | null
  repostCount: number | null
  replyCount: number | null
  quoteCount: number | null
}

interface AggRow {
  uri: string
  likeCount: number | null
  repostCount: number | null
  replyCount: number | null
  quoteCount: number | null
}

interface PostRow extends PostHeadRow {
  creator: string
  sortAt: string
  replyRoot: string | null
  replyParent: string | null
  quoteUri: string | null
  json: string
}

/**
 * A post's fields that are fixed by its record version (URI and CID: the record's content) and the time it
 * was indexed (sortAt derives from the record's createdAt and indexedAt), with the record parsed.
 */
interface PostVersion {
  cid: string
  indexedAt: string
  creator: string
  sortAt: string
  replyRoot: string | null
  replyParent: string | null
  quoteUri: string | null
  record: Json
}

/** Posts whose record versions are kept parsed (about 2 KB each), the oldest entries leaving first. */
export const POST_CACHE_SIZE = 20_000

/**
 * Parsed post records by URI, shared by every request. An entry is used only when the post's current
 * row (read on every hydration) has the same CID and indexedAt: a record version's content never
 * changes, and a post deleted and written again gets a new indexedAt, so no invalidation is needed.
 * Views must treat the records as read-only (they are shared between requests).
 */
class PostVersionCache {
  private readonly entries = new Map<string, PostVersion>()
  /** lookups that found the version, and that did not (for benches) */
  hits = 0
  misses = 0
  constructor(private readonly size: number) {}

  get(uri: string, cid: string, indexedAt: string): PostVersion | undefined {
    const v = this.entries.get(uri)
    return v && v.cid === cid && v.indexedAt === indexedAt ? v : undefined
  }

  /** get(), counted */
  lookup(uri: string, cid: string, indexedAt: string): PostVersion | undefined {
    const v = this.get(uri, cid, indexedAt)
    if (v) this.hits++
    else this.misses++
    return v
  }

  set(uri: string, v: PostVersion): void {
    this.entries.delete(uri)
    this.entries.set(uri, v)
    if (this.entries.size > this.size) this.entries.delete(this.entries.keys().next().value!)
  }
}

/**
 * Parsed profiles and gate records by the row they come from: a row kept by a read worker's statement cache
 * (see ./sql.ts) is the same object for every request until its data changes, so its record is parsed
 * once. Only rows of such kept results are remembered (`shared`): rows read afresh are new objects every
 * time, and a WeakMap entry per fresh row only made work for the garbage collector (ephemerons). The parsed
 * values are shared: read-only.
 */
const parsedProfiles = new WeakMap<ActorRow, ProfileInfo>()
const parsedGates = new WeakMap<object, GateInfo>()

function profileOf(r: ActorRow, shared: boolean): ProfileInfo {
  let p = shared ? parsedProfiles.get(r) : undefined
  if (!p) {
    p = {
      uri: r.profileUri!,
      cid: r.profileCid!,
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
    if (shared) parsedProfiles.set(r, p)
  }
  return p
}

function gateOf(g: { uri: string; cid: string; json: string }, shared: boolean): GateInfo {
  let info = shared ? parsedGates.get(g) : undefined
  if (!info) {
    info = { uri: g.uri, cid: g.cid, record: parseJson(g.json) }
    if (shared) parsedGates.set(g, info)
  }
  return info
}

/**
 * The hot hydration queries (see ./sql.ts), compiled once per dialect. All are keyed (see PreparedText in
 * ./sql.ts): each reads only rows that carry a DID its parameters name.
 */
const KEYED = { keyed: true }

export function hydrationQueries(q: ListSql) {
  return {
    // one row per actor: the account and its profile record
    actors: q.prepare(`
      SELECT a.did AS did, a.handle AS handle, a."upstreamStatus" AS "upstreamStatus", a."indexedAt" AS "indexedAt",
        p.uri AS "profileUri", p.cid AS "profileCid", p."displayName" AS "displayName", p.description AS description,
        p."avatarCid" AS "avatarCid", p."bannerCid" AS "bannerCid", p."pinnedPostUri" AS "pinnedPostUri",
        p."pinnedPostCid" AS "pinnedPostCid", p."createdAt" AS "createdAt", p."indexedAt" AS "profileIndexedAt", r.json AS json
      FROM ?J j JOIN actor a ON a.did = j.value
      LEFT JOIN profile p ON p.creator = a.did
      LEFT JOIN record r ON r.uri = p.uri`, KEYED),
    // detailed profiles only: an actor's counts, and whether it publishes a labeler service (its record's URI, one key)
    actorCounts: q.prepare(`
      SELECT a.did AS did, g."followersCount" AS "followersCount", g."followsCount" AS "followsCount", g."postsCount" AS "postsCount",
        g."listsCount" AS "listsCount", g."feedgensCount" AS "feedgensCount", g."starterPacksCount" AS "starterPacksCount",
        (SELECT 1 FROM record l WHERE l.uri = 'at://' || a.did || '/' || ? || '/self') AS labeler
      FROM actor a LEFT JOIN profile_agg g ON g.did = a.did
      WHERE a.did IN ?L`, KEYED),
    // which of the eight relationship kinds the viewer has at all (one index seek each), in VIEWER_KINDS order
    viewerKinds: q.prepare(`
      SELECT EXISTS (SELECT 1 FROM follow WHERE creator = ?) AS following,
        EXISTS (SELECT 1 FROM follow WHERE "subjectDid" = ?) AS "followedBy",
        EXISTS (SELECT 1 FROM block WHERE creator = ?) AS blocking,
        EXISTS (SELECT 1 FROM block WHERE "subjectDid" = ?) AS "blockedBy",
        EXISTS (SELECT 1 FROM list_block WHERE creator = ?) AS "blockingByList",
        EXISTS (SELECT 1 FROM list_item WHERE "subjectDid" = ?) AS "blockedByList",
        EXISTS (SELECT 1 FROM mute WHERE "mutedByDid" = ?) AS muted,
        EXISTS (SELECT 1 FROM list_mute WHERE "mutedByDid" = ?) AS "mutedByList"`, KEYED),
    // the viewer's relationships toward a list of actors, one row per (kind, actor); each kind's part runs only
    // when its flag (from viewerKinds) is 1: a viewer without blocks, lists or mutes costs no seek for them
    actorViewers: q.prepare(`
      SELECT 'following' AS k, f.uri AS v, f."subjectDid" AS did FROM ?J j JOIN follow f ON f.creator = ? AND f."subjectDid" = j.value WHERE ? = 1
      UNION ALL SELECT 'followedBy', f.uri, f.creator FROM ?J j JOIN follow f ON f."subjectDid" = ? AND f.creator = j.value WHERE ? = 1
      UNION ALL SELECT 'blocking', b.uri, b."subjectDid" FROM ?J j JOIN block b ON b.creator = ? AND b."subjectDid" = j.value WHERE ? = 1
      UNION ALL SELECT 'blockedBy', b.uri, b.creator FROM ?J j JOIN block b ON b."subjectDid" = ? AND b.creator = j.value WHERE ? = 1
      UNION ALL SELECT 'blockingByList', lb."subjectUri", li."subjectDid" FROM list_block lb JOIN list_item li ON li."listUri" = lb."subjectUri"
        WHERE lb.creator = ? AND li."subjectDid" IN ?L AND ? = 1
      UNION ALL SELECT 'blockedByList', lb."subjectUri", lb.creator FROM list_block lb JOIN list_item li ON li."listUri" = lb."subjectUri"
        WHERE li."subjectDid" = ? AND lb.creator IN ?L AND ? = 1
      UNION ALL SELECT 'muted', NULL, m."subjectDid" FROM ?J j JOIN mute m ON m."mutedByDid" = ? AND m."subjectDid" = j.value WHERE ? = 1
      UNION ALL SELECT 'mutedByList', lm."listUri", li."subjectDid" FROM list_mute lm JOIN list_item li ON li."listUri" = lm."listUri"
        WHERE lm."mutedByDid" = ? AND li."subjectDid" IN ?L AND ? = 1`, KEYED),
    // block edges (direct and by list) from the first list of actors toward the second (each creator's blocks
    // are read and matched against the second list, not one index seek per pair)
    blocksFrom: q.prepare(`
      SELECT b.creator AS creator, b."subjectDid" AS "subjectDid" FROM ?J j JOIN block b ON b.creator = j.value WHERE ${q.dialect === 'sqlite' ? '+' : ''}b."subjectDid" IN ?L
      UNION ALL SELECT lb.creator, li."subjectDid" FROM ?J j JOIN list_block lb ON lb.creator = j.value JOIN list_item li ON li."listUri" = lb."subjectUri"
        WHERE li."subjectDid" IN ?L`, KEYED),
    // a post's current version (CID, indexedAt), gate checks and counts: enough when its record is cached
    postHeads: q.prepare(`
      SELECT p.uri AS uri, p.cid AS cid, p."indexedAt" AS "indexedAt",
        p."violatesThreadGate" AS "violatesThreadGate", p."violatesEmbeddingRules" AS "violatesEmbeddingRules",
        g."likeCount" AS "likeCount", g."repostCount" AS "repostCount", g."replyCount" AS "replyCount", g."quoteCount" AS "quoteCount"
      FROM ?J j JOIN post p ON p.uri = j.value
      LEFT JOIN record_agg g ON g.uri = p.uri`, KEYED),
    // counts of posts whose head the caller read (PostHead)
    aggs: q.prepare(`
      SELECT g.uri AS uri, g."likeCount" AS "likeCount", g."repostCount" AS "repostCount", g."replyCount" AS "replyCount", g."quoteCount" AS "quoteCount"
      FROM ?J j JOIN record_agg g ON g.uri = j.value`, KEYED),
    posts: q.prepare(`
      SELECT p.uri AS uri, p.cid AS cid, p.creator AS creator, p."indexedAt" AS "indexedAt", p."sortAt" AS "sortAt",
        p."replyRoot" AS "replyRoot", p."replyParent" AS "replyParent", p."quoteUri" AS "quoteUri",
        p."violatesThreadGate" AS "violatesThreadGate", p."violatesEmbeddingRules" AS "violatesEmbeddingRules", r.json AS json,
        g."likeCount" AS "likeCount", g."repostCount" AS "repostCount", g."replyCount" AS "replyCount", g."quoteCount" AS "quoteCount"
      FROM ?J j JOIN post p ON p.uri = j.value
      JOIN record r ON r.uri = p.uri
      LEFT JOIN record_agg g ON g.uri = p.uri`, KEYED),
    // threadgates of the roots, postgates of the posts
    gates: q.prepare(`
      SELECT 'threadgate' AS k, t.uri AS uri, t.cid AS cid, t."postUri" AS "postUri", r.json AS json
        FROM ?J j JOIN threadgate t ON t."postUri" = j.value JOIN record r ON r.uri = t.uri
      UNION ALL SELECT 'postgate', g.uri, g.cid, g."postUri", r.json
        FROM ?J j JOIN postgate g ON g."postUri" = j.value JOIN record r ON r.uri = g.uri`, KEYED),
    viewerInteractions: q.prepare(`
      SELECT 'like' AS k, l.uri AS uri, l.subject AS subject FROM ?J j JOIN "like" l ON l.creator = ? AND l.subject = j.value
      UNION ALL SELECT 'repost', r.uri, r.subject FROM ?J j JOIN repost r ON r.creator = ? AND r.subject = j.value`, KEYED),
    reposts: q.prepare(`
      SELECT r.uri AS uri, r.cid AS cid, r.creator AS creator, r.subject AS subject, r."indexedAt" AS "indexedAt", r."sortAt" AS "sortAt"
      FROM ?J j JOIN repost r ON r.uri = j.value`, KEYED),
  } satisfies Record<string, PreparedText>
}

export class Hydrator {
  private readonly q: ListSql
  private readonly sql: ReturnType<typeof hydrationQueries>
  private readonly postVersions = new PostVersionCache(POST_CACHE_SIZE)

  constructor(
    private readonly db: Db,
    private readonly opts: HydratorOptions = {},
  ) {
    this.q = listSql(db)
    this.sql = hydrationQueries(this.q)
  }

  /** How often a post's parsed record version was found kept (hits) or read and parsed (misses). */
  postVersionStats(): { hits: number; misses: number } {
    return { hits: this.postVersions.hits, misses: this.postVersions.misses }
  }

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

  /**
   * Actor rows, profiles and the viewer's relationships for `dids`; with `counts` (default) also their
   * counts and labeler services, which only detailed profiles show.
   */
  async actors(state: HydrationState, dids: Iterable<string>, opts: { viewer?: boolean; counts?: boolean } = {}): Promise<void> {
    const unique = [...new Set(dids)]
    const todo = unique.filter((d) => !state.actors.has(d))
    if (todo.length > 0) {
      const rows = await this.q.rows<ActorRow>(this.sql.actors, [{ list: todo }])
      const shared = isKeptResult(rows)
      for (const r of rows) {
        state.actors.set(r.did, {
          did: r.did,
          handle: r.handle,
          upstreamStatus: r.upstreamStatus,
          indexedAt: r.indexedAt,
          profile: r.profileUri && r.profileCid ? profileOf(r, shared) : null,
        })
      }
      for (const did of todo) if (!state.actors.has(did)) state.actors.set(did, null)
      const found = rows.map((r) => r.did)
      if (found.length > 0) {
        const profileUris = found.map((d) => `at://${d}/${COLLECTIONS.profile}/self`)
        const takedowns = await this.loadLabels(state, [...found, ...profileUris])
        for (const [did, val] of takedowns) {
          const a = state.actors.get(did)
          if (a && !a.upstreamStatus) a.upstreamStatus = val === '!suspend' ? 'suspended' : 'takendown'
        }
      }
    }
    if (opts.counts !== false) {
      const need = unique.filter((d) => state.actors.get(d) && !state.countsLoaded.has(d))
      if (need.length > 0) {
        const rows = await this.q.rows<ActorCountsRow>(this.sql.actorCounts, [LABELER_COLLECTION, { list: need }])
        for (const r of rows) {
          state.profileAggs.set(r.did, {
            followers: Number(r.followersCount ?? 0),
            follows: Number(r.followsCount ?? 0),
            posts: Number(r.postsCount ?? 0),
            lists: Number(r.listsCount ?? 0),
            feedgens: Number(r.feedgensCount ?? 0),
            starterPacks: Number(r.starterPacksCount ?? 0),
          })
          if (r.labeler !== null) state.labelerActors.add(r.did)
        }
        for (const d of need) state.countsLoaded.add(d)
      }
    }
    if (opts.viewer !== false) await this.actorViewers(state, todo)
  }

  /** The viewer's follows, blocks (direct and by list) and mutes toward `dids`. */
  async actorViewers(state: HydrationState, dids: string[]): Promise<void> {
    const viewer = state.viewer
    if (!viewer) return
    const todo = [...new Set(dids)].filter((d) => !state.actorViewers.has(d))
    if (todo.length === 0) return
    const list = { list: todo }
    const kinds = await this.viewerKinds(state, viewer)
    const rows = await this.q.rows<{ k: string; v: string | null; did: string }>(
      this.sql.actorViewers,
      // (the parts that join the list as a table take it first, the others after the viewer)
      [list, viewer, kinds[0]!, list, viewer, kinds[1]!, list, viewer, kinds[2]!, list, viewer, kinds[3]!, viewer, list, kinds[4]!, viewer, list, kinds[5]!, list, viewer, kinds[6]!, viewer, list, kinds[7]!],
    )
    const vs = new Map<string, ActorViewer>(todo.map((d) => [d, {}]))
    const listUris = new Set<string>()
    for (const r of rows) {
      const v = vs.get(r.did)
      if (!v) continue
      switch (r.k) {
        case 'following':
          v.following = r.v!
          break
        case 'followedBy':
          v.followedBy = r.v!
          break
        case 'blocking':
          v.blocking = r.v!
          break
        case 'blockedBy':
          v.blockedBy = true
          break
        case 'blockingByList':
          v.blockingByList = r.v!
          listUris.add(r.v!)
          break
        case 'blockedByList':
          v.blockedByList = r.v!
          break
        case 'muted':
          v.muted = true
          break
        case 'mutedByList':
          v.mutedByList = r.v!
          listUris.add(r.v!)
          break
      }
    }
    for (const [did, v] of vs) state.actorViewers.set(did, v)
    if (listUris.size > 0) await this.lists(state, listUris, { creators: false })
  }

  /** Which relationship kinds the viewer has at all (1 or 0 each, in the order of actorViewers' parts), read once per state. */
  private async viewerKinds(state: HydrationState, viewer: string): Promise<number[]> {
    if (!state.viewerKinds) {
      const [r] = await this.q.rows<Record<string, unknown>>(this.sql.viewerKinds, Array.from({ length: 8 }, () => viewer))
      state.viewerKinds = VIEWER_KINDS.map((k) => (r && r[k] && r[k] !== '0' ? 1 : 0))
    }
    return state.viewerKinds
  }

  /** Block edges among `dids` (third-party blocks: a reply's author vs its parent's author...). */
  async blocksAmong(state: HydrationState, dids: Iterable<string>): Promise<void> {
    const all = [...new Set([...dids, ...state.blockChecked])]
    const fresh = all.filter((d) => !state.blockChecked.has(d))
    if (fresh.length === 0 || all.length < 2) {
      for (const d of fresh) state.blockChecked.add(d)
      return
    }
    const edges = async (from: string[], to: string[]) => {
      const fromList = { list: from }
      const toList = { list: to }
      const rows = await this.q.rows<{ creator: string; subjectDid: string }>(this.sql.blocksFrom, [fromList, toList, fromList, toList])
      for (const r of rows) state.blockEdges.add(`${r.creator} ${r.subjectDid}`)
    }
    // edges from the new actors toward all, and from the ones checked before toward the new ones
    await edges(fresh, all)
    const older = all.filter((d) => state.blockChecked.has(d))
    if (older.length > 0) await edges(older, fresh)
    for (const d of fresh) state.blockChecked.add(d)
  }

  // posts
  // =

  /**
   * Posts with their authors, counts, the viewer's likes and reposts, gates, and the records they
   * embed (two levels of quotes). `replyContext` also loads each post's reply root and parent. `actors`: more
   * actors to hydrate (basic profiles, no counts) in the same statements as the authors (a feed's reposters);
   * block edges are loaded among the authors only. `heads`: the current heads of some of the posts, read by
   * the caller in this snapshot (their rows are not read again; only their counts).
   */
  async posts(
    state: HydrationState,
    uris: Iterable<string>,
    opts: { replyContext?: boolean; embedDepth?: number; actors?: Iterable<string>; heads?: ReadonlyMap<string, PostHead> } = {},
  ): Promise<void> {
    const embedDepth = opts.embedDepth ?? 2
    let level = [...new Set(uris)]
    const authors = new Set<string>()
    for (let depth = 0; level.length > 0 && depth <= embedDepth; depth++) {
      const loaded = await this.loadPosts(state, level, opts.heads)
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
        const replyPosts = await this.loadPosts(state, [...ctx], opts.heads)
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
    // (post views show basic profiles: no counts)
    await this.actors(state, opts.actors ? [...authors, ...opts.actors] : authors, { counts: false })
    // third-party blocks among the authors: replies and quotes across a block are not shown
    await this.blocksAmong(state, authors)
  }

  /** Each post's current version, counts and gate checks (known heads: their counts), in no particular order. */
  private async postHeads(todo: string[], known: ReadonlyMap<string, PostHead> | undefined): Promise<PostHeadRow[]> {
    const given = known ? todo.filter((u) => known.has(u)) : []
    if (given.length === 0) return this.q.rows<PostHeadRow>(this.sql.postHeads, [{ list: todo }])
    const rest = todo.filter((u) => !known!.has(u))
    const heads = rest.length > 0 ? await this.q.rows<PostHeadRow>(this.sql.postHeads, [{ list: rest }]) : []
    const aggs = new Map<string, AggRow>()
    for (const a of await this.q.rows<AggRow>(this.sql.aggs, [{ list: given }])) aggs.set(a.uri, a)
    for (const u of given) {
      const h = known!.get(u)!
      const a = aggs.get(u)
      heads.push({
        uri: h.uri,
        cid: h.cid,
        indexedAt: h.indexedAt,
        violatesThreadGate: h.violatesThreadGate,
        violatesEmbeddingRules: h.violatesEmbeddingRules,
        likeCount: a?.likeCount ?? null,
        repostCount: a?.repostCount ?? null,
        replyCount: a?.replyCount ?? null,
        quoteCount: a?.quoteCount ?? null,
      })
    }
    return heads
  }

  private async loadPosts(state: HydrationState, uris: string[], known?: ReadonlyMap<string, PostHead>): Promise<PostInfo[]> {
    const todo = [...new Set(uris)].filter((u) => !state.posts.has(u))
    if (todo.length === 0) return []
    // each post's current version, counts and gate checks; the whole row and record only for versions not cached
    const heads = await this.postHeads(todo, known)
    const misses = heads.filter((h) => !this.postVersions.lookup(h.uri, h.cid, h.indexedAt)).map((h) => h.uri)
    const fetched = new Map<string, PostRow>()
    if (misses.length > 0) {
      for (const r of await this.q.rows<PostRow>(this.sql.posts, [{ list: misses }])) {
        fetched.set(r.uri, r)
        this.postVersions.set(r.uri, {
          cid: r.cid,
          indexedAt: r.indexedAt,
          creator: r.creator,
          sortAt: r.sortAt,
          replyRoot: r.replyRoot,
          replyParent: r.replyParent,
          quoteUri: r.quoteUri,
          record: parseJson(r.json),
        })
      }
    }
    const rows: PostHeadRow[] = []
    let out: PostInfo[] = []
    for (const head of heads) {
      // a post written again between the two reads: its second read is the one shown
      const r = fetched.get(head.uri) ?? head
      const v = this.postVersions.get(r.uri, r.cid, r.indexedAt)
      if (!v) continue // deleted between the two reads
      rows.push(r)
      const info: PostInfo = {
        uri: r.uri,
        cid: r.cid,
        creator: v.creator,
        record: v.record,
        indexedAt: r.indexedAt,
        sortAt: v.sortAt,
        replyRoot: v.replyRoot,
        replyParent: v.replyParent,
        quoteUri: v.quoteUri,
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
    for (const u of todo) if (!state.posts.has(u)) state.posts.set(u, null)
    const found = rows.map((r) => r.uri)
    if (found.length === 0) return out
    // gates live at the post's rkey; the root's threadgate matters for every reply
    const roots = [...new Set([...found, ...out.map((p) => p.replyRoot).filter((u): u is string => !!u)])]
    const takenDown = await this.loadLabels(state, found)
    if (takenDown.size > 0) {
      for (const uri of takenDown.keys()) state.posts.set(uri, null)
      out = out.filter((p) => !takenDown.has(p.uri))
    }
    const gates = await this.q.rows<{ k: string; uri: string; cid: string; postUri: string; json: string }>(this.sql.gates, [{ list: roots }, { list: found }])
    const shared = isKeptResult(gates)
    for (const g of gates) (g.k === 'threadgate' ? state.threadgates : state.postgates).set(g.postUri, gateOf(g, shared))
    if (state.viewer) await this.viewerInteractions(state, found)
    return out
  }

  /** The viewer's likes and reposts of `uris` (posts or feed generators). */
  async viewerInteractions(state: HydrationState, uris: string[]): Promise<void> {
    const viewer = state.viewer
    if (!viewer || uris.length === 0) return
    const list = { list: [...new Set(uris)] }
    const rows = await this.q.rows<{ k: string; uri: string; subject: string }>(this.sql.viewerInteractions, [list, viewer, list, viewer])
    for (const r of rows) (r.k === 'like' ? state.viewerLikes : state.viewerReposts).set(r.subject, r.uri)
  }

  /** Repost records (for feed reasons). */
  async reposts(state: HydrationState, uris: Iterable<string>): Promise<void> {
    const todo = [...new Set(uris)].filter((u) => !state.reposts.has(u))
    if (todo.length === 0) return
    const rows = await this.q.rows<RepostInfo>(this.sql.reposts, [{ list: todo }])
    for (const r of rows) state.reposts.set(r.uri, r)
    for (const u of todo) if (!state.reposts.has(u)) state.reposts.set(u, null)
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
