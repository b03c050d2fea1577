/**
 * The AppView's tables (kysely types). Timestamps are ISO 8601 strings in UTC with milliseconds
 * ("2024-01-01T00:00:00.000Z"), so they sort as text on both dialects; booleans are 0/1 integers.
 */
export interface ActorTable {
  did: string
  /** verified handle; null = not (yet) verified (shown as handle.invalid) */
  handle: string | null
  indexedAt: string
  /** hosting status from #account: null = active; deactivated | takendown | suspended | deleted | ... */
  upstreamStatus: string | null
}

/** Every indexed record in JSON form: the source of record views and of resync diffs. */
export interface RecordTable {
  uri: string
  cid: string
  did: string
  collection: string
  rkey: string
  json: string
  indexedAt: string
}

export interface ProfileTable {
  uri: string
  cid: string
  creator: string
  displayName: string | null
  description: string | null
  avatarCid: string | null
  bannerCid: string | null
  pinnedPostUri: string | null
  pinnedPostCid: string | null
  joinedViaStarterPackUri: string | null
  createdAt: string | null
  indexedAt: string
}

export interface PostTable {
  uri: string
  cid: string
  creator: string
  text: string
  replyRoot: string | null
  replyRootCid: string | null
  replyParent: string | null
  replyParentCid: string | null
  /** the quoted record (embed.record or embed.recordWithMedia.record) */
  quoteUri: string | null
  quoteCid: string | null
  /** images | video | external | record | recordWithMedia */
  embedType: string | null
  hasMedia: number
  hasVideo: number
  langs: string | null
  /** reply breaks the root's threadgate (decided when the reply is indexed) */
  violatesThreadGate: number
  /** quote breaks the quoted post's postgate (decided when the quote is indexed) */
  violatesEmbeddingRules: number
  createdAt: string
  indexedAt: string
  /** min(createdAt, indexedAt): what feeds sort by */
  sortAt: string
}

/** Posts and reposts, as they appear in author feeds and timelines. */
export interface FeedItemTable {
  /** the post's or the repost's URI */
  uri: string
  cid: string
  type: 'post' | 'repost'
  postUri: string
  /** who put it in the feed: the post's author, or the reposter */
  originatorDid: string
  sortAt: string
}

export interface SubjectRecordTable {
  uri: string
  cid: string
  creator: string
  subject: string
  subjectCid: string
  createdAt: string
  indexedAt: string
  sortAt: string
}

export interface DidSubjectTable {
  uri: string
  cid: string
  creator: string
  subjectDid: string
  createdAt: string
  indexedAt: string
  sortAt: string
}

export interface ListTable {
  uri: string
  cid: string
  creator: string
  name: string
  purpose: string
  description: string | null
  avatarCid: string | null
  createdAt: string
  indexedAt: string
  sortAt: string
}

export interface ListItemTable {
  uri: string
  cid: string
  creator: string
  listUri: string
  subjectDid: string
  createdAt: string
  indexedAt: string
  sortAt: string
}

export interface ListBlockTable {
  uri: string
  cid: string
  creator: string
  subjectUri: string
  createdAt: string
  indexedAt: string
  sortAt: string
}

export interface FeedGeneratorTable {
  uri: string
  cid: string
  creator: string
  feedDid: string
  displayName: string
  description: string | null
  avatarCid: string | null
  createdAt: string
  indexedAt: string
  sortAt: string
}

export interface GateTable {
  uri: string
  cid: string
  creator: string
  postUri: string
  createdAt: string
  indexedAt: string
}

export interface StarterPackTable {
  uri: string
  cid: string
  creator: string
  name: string
  listUri: string
  createdAt: string
  indexedAt: string
  sortAt: string
}

/** Per-record counters, kept up incrementally (posts, feed generators, lists...). */
export interface RecordAggTable {
  uri: string
  likeCount: number
  repostCount: number
  replyCount: number
  quoteCount: number
}

export interface ProfileAggTable {
  did: string
  followersCount: number
  followsCount: number
  postsCount: number
  listsCount: number
  feedgensCount: number
  starterPacksCount: number
}

export interface ListAggTable {
  uri: string
  itemCount: number
}

export interface NotificationTable {
  /** recipient */
  did: string
  author: string
  recordUri: string
  recordCid: string
  /** like | repost | follow | mention | reply | quote | starterpack-joined | like-via-repost ... */
  reason: string
  reasonSubject: string | null
  sortAt: string
  indexedAt: string
}

/** Viewer-private state kept by the AppView. */
export interface ActorStateTable {
  did: string
  lastSeenNotifs: string | null
}

export interface MuteTable {
  mutedByDid: string
  subjectDid: string
  createdAt: string
}

export interface ListMuteTable {
  mutedByDid: string
  listUri: string
  createdAt: string
}

/** Ingest: last verified state of each repo. */
export interface RepoStateTable {
  did: string
  rev: string
  /** MST root CID of the last verified commit */
  data: string
  commitCid: string
  /** synchronized | desynchronized */
  syncStatus: string
  updatedAt: string
}

/** Ingest: last processed seq per upstream stream. */
export interface IngestCursorTable {
  source: string
  seq: number
  updatedAt: string
}

/** DID documents (identity cache shared by every AppView process on the database). */
export interface DidCacheTable {
  did: string
  doc: string
  updatedAt: number
}

/** The current label per (src, uri, val) from a followed labeler (negations delete; expiry checked on read). */
export interface LabelTable {
  src: string
  uri: string
  cid: string | null
  val: string
  cts: string
  exp: string | null
  /** base64 of the signature (kept to re-serve or re-check; views leave it out) */
  sig: string | null
}

/** Where each followed labeler's subscribeLabels stream was left. */
export interface LabelerCursorTable {
  did: string
  seq: number
  updatedAt: string
}

/** Network backfill: one row per upstream (relay or PDS) whose repos are enumerated with listRepos. */
export interface BackfillSourceTable {
  source: string
  /** listRepos cursor of the next page; null before the first page */
  cursor: string | null
  /** 1 once every page was listed */
  listed: number
  startedAt: string
  finishedAt: string | null
}

/** Network backfill: one row per repo to index (pending → done | failed). */
export interface BackfillRepoTable {
  did: string
  source: string
  /** rev listRepos gave (a repo already indexed at this rev or later is skipped) */
  rev: string | null
  status: string
  attempts: number
  error: string | null
  updatedAt: string
}

export interface DatabaseSchema {
  actor: ActorTable
  record: RecordTable
  profile: ProfileTable
  post: PostTable
  feed_item: FeedItemTable
  /** each account's newest feed item time (kept by triggers on feed_item; the timeline's first step) */
  author_latest: { did: string; sortAt: string }
  like: SubjectRecordTable
  repost: SubjectRecordTable
  follow: DidSubjectTable
  block: DidSubjectTable
  list: ListTable
  list_item: ListItemTable
  list_block: ListBlockTable
  feed_generator: FeedGeneratorTable
  threadgate: GateTable
  postgate: GateTable
  starter_pack: StarterPackTable
  record_agg: RecordAggTable
  profile_agg: ProfileAggTable
  list_agg: ListAggTable
  notification: NotificationTable
  actor_state: ActorStateTable
  mute: MuteTable
  list_mute: ListMuteTable
  repo_state: RepoStateTable
  ingest_cursor: IngestCursorTable
  backfill_source: BackfillSourceTable
  backfill_repo: BackfillRepoTable
  did_cache: DidCacheTable
  label: LabelTable
  labeler_cursor: LabelerCursorTable
  // full-text search (dialect-specific shape, written with raw SQL; see search.ts)
  post_fts: { uri: string; text: string }
  actor_fts: { did: string; handle: string; displayName: string }
  /** SQLite: the FTS5 rowid of each search entry (search.ts) */
  actor_fts_rowid: { did: string; id: number }
  post_fts_rowid: { uri: string; id: number }
}
