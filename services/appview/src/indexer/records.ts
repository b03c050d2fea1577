/**
 * Pure record → rows functions: what indexing one app.bsky record writes (its table row, its feed
 * item, the counters it moves, the notifications it sends, its search text). No I/O: the indexer
 * applies a plan on insert and reverses the same plan (computed from the stored record) on delete.
 */
import type {
  DidSubjectTable,
  FeedGeneratorTable,
  FeedItemTable,
  GateTable,
  ListBlockTable,
  ListItemTable,
  ListTable,
  NotificationTable,
  PostTable,
  ProfileTable,
  StarterPackTable,
  SubjectRecordTable,
} from './schema.js'

export const COLLECTIONS = {
  profile: 'app.bsky.actor.profile',
  post: 'app.bsky.feed.post',
  like: 'app.bsky.feed.like',
  repost: 'app.bsky.feed.repost',
  follow: 'app.bsky.graph.follow',
  block: 'app.bsky.graph.block',
  list: 'app.bsky.graph.list',
  listitem: 'app.bsky.graph.listitem',
  listblock: 'app.bsky.graph.listblock',
  generator: 'app.bsky.feed.generator',
  threadgate: 'app.bsky.feed.threadgate',
  postgate: 'app.bsky.feed.postgate',
  starterpack: 'app.bsky.graph.starterpack',
  /** kept in the record table only: the labelers to follow, and app.bsky.labeler.getServices */
  labeler: 'app.bsky.labeler.service',
} as const

export const INDEXED_COLLECTIONS: ReadonlySet<string> = new Set(Object.values(COLLECTIONS))

export interface RecordInput {
  uri: string
  did: string
  collection: string
  rkey: string
  cid: string
  /** the record in JSON form ($link, $bytes, JSON blob refs) */
  record: Record<string, unknown>
  indexedAt: string
}

export type AggTarget =
  | { table: 'record_agg'; key: string; column: 'likeCount' | 'repostCount' | 'replyCount' | 'quoteCount' }
  | {
      table: 'profile_agg'
      key: string
      column: 'followersCount' | 'followsCount' | 'postsCount' | 'listsCount' | 'feedgensCount' | 'starterPacksCount'
    }
  | { table: 'list_agg'; key: string; column: 'itemCount' }

export type TableRow =
  | { table: 'profile'; row: ProfileTable }
  | { table: 'post'; row: PostTable }
  | { table: 'like' | 'repost'; row: SubjectRecordTable }
  | { table: 'follow' | 'block'; row: DidSubjectTable }
  | { table: 'list'; row: ListTable }
  | { table: 'list_item'; row: ListItemTable }
  | { table: 'list_block'; row: ListBlockTable }
  | { table: 'feed_generator'; row: FeedGeneratorTable }
  | { table: 'threadgate' | 'postgate'; row: GateTable }
  | { table: 'starter_pack'; row: StarterPackTable }

export interface IndexPlan {
  main: TableRow
  feedItem?: FeedItemTable
  /** counters this record adds one to (and takes one from when deleted) */
  aggs: AggTarget[]
  notifications: NotificationTable[]
  /** post text for full-text search */
  postText?: string
}

// ---------------------------------------------------------------------------------------------
// small pure helpers

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

/** DID of an at:// URI (`at://did:plc:x/coll/rkey` → did:plc:x), or undefined. */
export function didFromUri(uri: string): string | undefined {
  if (!uri.startsWith('at://')) return undefined
  const rest = uri.slice(5)
  const slash = rest.indexOf('/')
  const authority = slash < 0 ? rest : rest.slice(0, slash)
  return authority.startsWith('did:') ? authority : undefined
}

/** Collection of an at:// URI, or undefined. */
export function collectionFromUri(uri: string): string | undefined {
  const parts = uri.slice(5).split('/')
  return uri.startsWith('at://') && parts.length >= 2 ? parts[1] : undefined
}

/** A strongRef `{uri, cid}` with a DID authority, or undefined. */
export function strongRef(v: unknown): { uri: string; cid: string } | undefined {
  if (!isObj(v)) return undefined
  const uri = str(v.uri)
  const cid = str(v.cid)
  if (!uri || !cid || !didFromUri(uri)) return undefined
  return { uri, cid }
}

/** The CID string of a blob reference in JSON form (or legacy `{cid, mimeType}`), or null. */
export function blobCidOf(v: unknown): string | null {
  if (!isObj(v)) return null
  if (v.$type === 'blob' && isObj(v.ref) && typeof v.ref.$link === 'string') return v.ref.$link
  if (typeof v.cid === 'string' && typeof v.mimeType === 'string') return v.cid
  return null
}

/** A record datetime as canonical ISO (ms, Z), or undefined when it does not parse. */
export function normalizeDate(v: unknown): string | undefined {
  if (typeof v !== 'string' || v.length > 64) return undefined
  const t = Date.parse(v)
  if (!Number.isFinite(t)) return undefined
  const iso = new Date(t).toISOString()
  // years outside 0000..9999 do not round-trip as lexicon datetimes
  return /^\d{4}-/.test(iso) ? iso : undefined
}

/** min(createdAt, indexedAt): a record cannot sort above the moment it was seen. */
export function sortAtOf(createdAt: string | undefined, indexedAt: string): string {
  return createdAt !== undefined && createdAt < indexedAt ? createdAt : indexedAt
}

export interface PostEmbedInfo {
  embedType: string | null
  quote: { uri: string; cid: string } | null
  hasMedia: boolean
  hasVideo: boolean
}

const EMBED_TYPES: Record<string, string> = {
  'app.bsky.embed.images': 'images',
  'app.bsky.embed.video': 'video',
  'app.bsky.embed.external': 'external',
  'app.bsky.embed.record': 'record',
  'app.bsky.embed.recordWithMedia': 'recordWithMedia',
}

/** What a post's embed is: its kind, the record it quotes, whether it carries images or video. */
export function postEmbedInfo(embed: unknown): PostEmbedInfo {
  const info: PostEmbedInfo = { embedType: null, quote: null, hasMedia: false, hasVideo: false }
  if (!isObj(embed)) return info
  const type = str(embed.$type)?.replace(/#main$/, '')
  info.embedType = (type && EMBED_TYPES[type]) ?? null
  const media = (m: unknown) => {
    const mt = isObj(m) ? str(m.$type)?.replace(/#main$/, '') : undefined
    if (mt === 'app.bsky.embed.images') info.hasMedia = true
    if (mt === 'app.bsky.embed.video') {
      info.hasMedia = true
      info.hasVideo = true
    }
  }
  if (info.embedType === 'record') info.quote = strongRef(embed.record) ?? null
  else if (info.embedType === 'recordWithMedia') {
    info.quote = isObj(embed.record) ? (strongRef(embed.record.record) ?? null) : null
    media(embed.media)
  } else media(embed)
  return info
}

/** DIDs mentioned in a post's facets. */
export function mentionedDids(record: Record<string, unknown>): string[] {
  const out = new Set<string>()
  const facets = Array.isArray(record.facets) ? record.facets : []
  for (const facet of facets) {
    if (!isObj(facet) || !Array.isArray(facet.features)) continue
    for (const f of facet.features) {
      if (isObj(f) && f.$type === 'app.bsky.richtext.facet#mention' && typeof f.did === 'string' && f.did.startsWith('did:')) {
        out.add(f.did)
      }
    }
  }
  return [...out]
}

// ---------------------------------------------------------------------------------------------
// per collection

function notification(
  input: RecordInput,
  recipient: string,
  reason: string,
  reasonSubject: string | null,
  sortAt: string,
): NotificationTable {
  return {
    did: recipient,
    author: input.did,
    recordUri: input.uri,
    recordCid: input.cid,
    reason,
    reasonSubject,
    sortAt,
    indexedAt: input.indexedAt,
  }
}

function planProfile(input: RecordInput): IndexPlan | null {
  if (input.rkey !== 'self') return null
  const r = input.record
  const pinned = strongRef(r.pinnedPost)
  const joined = strongRef(r.joinedViaStarterPack)
  const row: ProfileTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    displayName: str(r.displayName) ?? null,
    description: str(r.description) ?? null,
    avatarCid: blobCidOf(r.avatar),
    bannerCid: blobCidOf(r.banner),
    pinnedPostUri: pinned?.uri ?? null,
    pinnedPostCid: pinned?.cid ?? null,
    joinedViaStarterPackUri: joined?.uri ?? null,
    createdAt: normalizeDate(r.createdAt) ?? null,
    indexedAt: input.indexedAt,
  }
  return { main: { table: 'profile', row }, aggs: [], notifications: [] }
}

function planPost(input: RecordInput): IndexPlan | null {
  const r = input.record
  const text = str(r.text)
  if (text === undefined) return null
  const createdAt = normalizeDate(r.createdAt)
  const sortAt = sortAtOf(createdAt, input.indexedAt)
  const reply = isObj(r.reply) ? r.reply : undefined
  const root = reply ? strongRef(reply.root) : undefined
  const parent = reply ? strongRef(reply.parent) : undefined
  if (reply && (!root || !parent)) return null
  const embed = postEmbedInfo(r.embed)
  const langs = Array.isArray(r.langs) ? r.langs.filter((l): l is string => typeof l === 'string') : []
  const row: PostTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    text,
    replyRoot: root?.uri ?? null,
    replyRootCid: root?.cid ?? null,
    replyParent: parent?.uri ?? null,
    replyParentCid: parent?.cid ?? null,
    quoteUri: embed.quote?.uri ?? null,
    quoteCid: embed.quote?.cid ?? null,
    embedType: embed.embedType,
    hasMedia: embed.hasMedia ? 1 : 0,
    hasVideo: embed.hasVideo ? 1 : 0,
    langs: langs.length > 0 ? JSON.stringify(langs) : null,
    violatesThreadGate: 0,
    violatesEmbeddingRules: 0,
    createdAt: createdAt ?? input.indexedAt,
    indexedAt: input.indexedAt,
    sortAt,
  }
  const aggs: AggTarget[] = [{ table: 'profile_agg', key: input.did, column: 'postsCount' }]
  if (parent) aggs.push({ table: 'record_agg', key: parent.uri, column: 'replyCount' })
  const quotesPost = embed.quote && collectionFromUri(embed.quote.uri) === COLLECTIONS.post
  if (embed.quote && quotesPost) aggs.push({ table: 'record_agg', key: embed.quote.uri, column: 'quoteCount' })

  // one notification per recipient, in the reference order: mentions, quote, reply (parent, root)
  const notified = new Set<string>([input.did])
  const notifications: NotificationTable[] = []
  const notify = (recipient: string | undefined, reason: string, subject: string | null) => {
    if (!recipient || notified.has(recipient)) return
    notified.add(recipient)
    notifications.push(notification(input, recipient, reason, subject, sortAt))
  }
  for (const did of mentionedDids(r)) notify(did, 'mention', null)
  if (embed.quote && quotesPost) notify(didFromUri(embed.quote.uri), 'quote', embed.quote.uri)
  if (parent) notify(didFromUri(parent.uri), 'reply', parent.uri)
  if (root) notify(didFromUri(root.uri), 'reply', parent?.uri ?? root.uri)

  return {
    main: { table: 'post', row },
    feedItem: { uri: input.uri, cid: input.cid, type: 'post', postUri: input.uri, originatorDid: input.did, sortAt },
    aggs,
    notifications,
    postText: text,
  }
}

function planSubjectRecord(input: RecordInput, table: 'like' | 'repost'): IndexPlan | null {
  const subject = strongRef(input.record.subject)
  if (!subject) return null
  const createdAt = normalizeDate(input.record.createdAt)
  const sortAt = sortAtOf(createdAt, input.indexedAt)
  const row: SubjectRecordTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    subject: subject.uri,
    subjectCid: subject.cid,
    createdAt: createdAt ?? input.indexedAt,
    indexedAt: input.indexedAt,
    sortAt,
  }
  const plan: IndexPlan = {
    main: { table, row },
    aggs: [{ table: 'record_agg', key: subject.uri, column: table === 'like' ? 'likeCount' : 'repostCount' }],
    notifications: [],
  }
  const subjectCollection = collectionFromUri(subject.uri)
  if (table === 'repost') {
    // only posts can be reposted into feeds
    if (subjectCollection !== COLLECTIONS.post) return null
    plan.feedItem = { uri: input.uri, cid: input.cid, type: 'repost', postUri: subject.uri, originatorDid: input.did, sortAt }
  }
  const recipient = didFromUri(subject.uri)
  const notifiable = subjectCollection === COLLECTIONS.post || subjectCollection === COLLECTIONS.generator
  if (recipient && recipient !== input.did && notifiable) {
    plan.notifications.push(notification(input, recipient, table, subject.uri, sortAt))
  }
  return plan
}

function planDidSubject(input: RecordInput, table: 'follow' | 'block'): IndexPlan | null {
  const subjectDid = str(input.record.subject)
  if (!subjectDid || !subjectDid.startsWith('did:')) return null
  const createdAt = normalizeDate(input.record.createdAt)
  const sortAt = sortAtOf(createdAt, input.indexedAt)
  const row: DidSubjectTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    subjectDid,
    createdAt: createdAt ?? input.indexedAt,
    indexedAt: input.indexedAt,
    sortAt,
  }
  if (table === 'block') return { main: { table, row }, aggs: [], notifications: [] }
  return {
    main: { table, row },
    aggs: [
      { table: 'profile_agg', key: input.did, column: 'followsCount' },
      { table: 'profile_agg', key: subjectDid, column: 'followersCount' },
    ],
    notifications: subjectDid === input.did ? [] : [notification(input, subjectDid, 'follow', null, sortAt)],
  }
}

function planList(input: RecordInput): IndexPlan | null {
  const r = input.record
  const name = str(r.name)
  const purpose = str(r.purpose)
  if (name === undefined || purpose === undefined) return null
  const createdAt = normalizeDate(r.createdAt)
  const row: ListTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    name,
    purpose,
    description: str(r.description) ?? null,
    avatarCid: blobCidOf(r.avatar),
    createdAt: createdAt ?? input.indexedAt,
    indexedAt: input.indexedAt,
    sortAt: sortAtOf(createdAt, input.indexedAt),
  }
  return { main: { table: 'list', row }, aggs: [{ table: 'profile_agg', key: input.did, column: 'listsCount' }], notifications: [] }
}

function planListItem(input: RecordInput): IndexPlan | null {
  const listUri = str(input.record.list)
  const subjectDid = str(input.record.subject)
  if (!listUri || !subjectDid?.startsWith('did:')) return null
  // only the list's owner can add to it
  if (didFromUri(listUri) !== input.did) return null
  const createdAt = normalizeDate(input.record.createdAt)
  const row: ListItemTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    listUri,
    subjectDid,
    createdAt: createdAt ?? input.indexedAt,
    indexedAt: input.indexedAt,
    sortAt: sortAtOf(createdAt, input.indexedAt),
  }
  return { main: { table: 'list_item', row }, aggs: [{ table: 'list_agg', key: listUri, column: 'itemCount' }], notifications: [] }
}

function planListBlock(input: RecordInput): IndexPlan | null {
  const subjectUri = str(input.record.subject)
  if (!subjectUri || !didFromUri(subjectUri)) return null
  const createdAt = normalizeDate(input.record.createdAt)
  const row: ListBlockTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    subjectUri,
    createdAt: createdAt ?? input.indexedAt,
    indexedAt: input.indexedAt,
    sortAt: sortAtOf(createdAt, input.indexedAt),
  }
  return { main: { table: 'list_block', row }, aggs: [], notifications: [] }
}

function planGenerator(input: RecordInput): IndexPlan | null {
  const r = input.record
  const feedDid = str(r.did)
  const displayName = str(r.displayName)
  if (!feedDid?.startsWith('did:') || displayName === undefined) return null
  const createdAt = normalizeDate(r.createdAt)
  const row: FeedGeneratorTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    feedDid,
    displayName,
    description: str(r.description) ?? null,
    avatarCid: blobCidOf(r.avatar),
    createdAt: createdAt ?? input.indexedAt,
    indexedAt: input.indexedAt,
    sortAt: sortAtOf(createdAt, input.indexedAt),
  }
  return {
    main: { table: 'feed_generator', row },
    aggs: [{ table: 'profile_agg', key: input.did, column: 'feedgensCount' }],
    notifications: [],
  }
}

function planGate(input: RecordInput, table: 'threadgate' | 'postgate'): IndexPlan | null {
  const postUri = str(input.record.post)
  // a gate lives at the same rkey as its post, in the post author's repo
  if (!postUri || postUri !== `at://${input.did}/${COLLECTIONS.post}/${input.rkey}`) return null
  const row: GateTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    postUri,
    createdAt: normalizeDate(input.record.createdAt) ?? input.indexedAt,
    indexedAt: input.indexedAt,
  }
  return { main: { table, row }, aggs: [], notifications: [] }
}

function planStarterPack(input: RecordInput): IndexPlan | null {
  const name = str(input.record.name)
  const listUri = str(input.record.list)
  if (name === undefined || !listUri) return null
  const createdAt = normalizeDate(input.record.createdAt)
  const row: StarterPackTable = {
    uri: input.uri,
    cid: input.cid,
    creator: input.did,
    name,
    listUri,
    createdAt: createdAt ?? input.indexedAt,
    indexedAt: input.indexedAt,
    sortAt: sortAtOf(createdAt, input.indexedAt),
  }
  return {
    main: { table: 'starter_pack', row },
    aggs: [{ table: 'profile_agg', key: input.did, column: 'starterPacksCount' }],
    notifications: [],
  }
}

/**
 * What indexing `input` writes, or null when the collection is not indexed or the record is unusable
 * (it is then only kept in the generic record table).
 */
export function planRecord(input: RecordInput): IndexPlan | null {
  switch (input.collection) {
    case COLLECTIONS.profile:
      return planProfile(input)
    case COLLECTIONS.post:
      return planPost(input)
    case COLLECTIONS.like:
      return planSubjectRecord(input, 'like')
    case COLLECTIONS.repost:
      return planSubjectRecord(input, 'repost')
    case COLLECTIONS.follow:
      return planDidSubject(input, 'follow')
    case COLLECTIONS.block:
      return planDidSubject(input, 'block')
    case COLLECTIONS.list:
      return planList(input)
    case COLLECTIONS.listitem:
      return planListItem(input)
    case COLLECTIONS.listblock:
      return planListBlock(input)
    case COLLECTIONS.generator:
      return planGenerator(input)
    case COLLECTIONS.threadgate:
      return planGate(input, 'threadgate')
    case COLLECTIONS.postgate:
      return planGate(input, 'postgate')
    case COLLECTIONS.starterpack:
      return planStarterPack(input)
    default:
      return null
  }
}
