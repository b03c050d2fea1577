import { lexToJson } from '@stratos/core/data'
import type { ActorRepo } from '../actor-store/index.js'
import type { AppContext } from '../context.js'

/**
 * Read-after-write: an AppView answers with `Atproto-Repo-Rev`, the rev of the caller's repo it has
 * indexed. Records the caller wrote after that rev are not in its answer yet; for a few views the PDS
 * merges them in, so a user sees their own new post or profile edit at once:
 *   - getProfile / getProfiles: the caller's newer profile record (display name, description, images);
 *   - getAuthorFeed (the caller's own feed) and getTimeline: the caller's newer posts, first page only;
 *   - getPostThread: the caller's newer replies to posts in the thread.
 * Local posts get zero counts and no viewer state (the AppView has not seen them).
 */
export const READ_AFTER_WRITE_METHODS = new Set([
  'app.bsky.actor.getProfile',
  'app.bsky.actor.getProfiles',
  'app.bsky.feed.getAuthorFeed',
  'app.bsky.feed.getTimeline',
  'app.bsky.feed.getPostThread',
])

const MAX_LOCAL_RECORDS = 50

type Json = Record<string, any>

interface LocalRecord {
  uri: string
  cid: string
  rkey: string
  collection: string
  indexedAt: string
  value: Json
}

/** The caller's records in `collections` written after `rev`, oldest first. */
function recordsAfter(repo: ActorRepo, rev: string, collections: string[]): LocalRecord[] {
  const rows = repo.db
    .prepare(
      `SELECT uri, cid, rkey, collection, indexedAt FROM record
       WHERE repoRev > ? AND collection IN (${collections.map(() => '?').join(', ')}) AND takedownRef IS NULL
       ORDER BY repoRev ASC LIMIT ${MAX_LOCAL_RECORDS}`,
    )
    .all(rev, ...collections) as Omit<LocalRecord, 'value'>[]
  const out: LocalRecord[] = []
  for (const row of rows) {
    const rec = repo.getRecord(row.collection, row.rkey)
    if (rec) out.push({ ...row, value: lexToJson(rec.value as never) as Json })
  }
  return out
}

function blobUrl(ctx: AppContext, did: string, blob: unknown): string | undefined {
  const cid = (blob as { ref?: { $link?: string } } | undefined)?.ref?.$link
  if (!cid) return undefined
  return `${ctx.cfg.service.publicUrl}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(did)}&cid=${cid}`
}

/** A profile view with the fields of a newer local profile record. */
function patchProfile(ctx: AppContext, did: string, view: Json, profile: Json): Json {
  const out: Json = { ...view }
  for (const field of ['displayName', 'description'] as const) {
    if (typeof profile[field] === 'string') out[field] = profile[field]
    else delete out[field]
  }
  const avatar = blobUrl(ctx, did, profile.avatar)
  if (avatar) out.avatar = avatar
  else delete out.avatar
  if ('banner' in view || profile.banner) {
    const banner = blobUrl(ctx, did, profile.banner)
    if (banner) out.banner = banner
    else delete out.banner
  }
  return out
}

async function authorView(ctx: AppContext, did: string, repo: ActorRepo, known?: Json): Promise<Json> {
  const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
  const base: Json = known ? { ...known } : { did, handle: account?.handle ?? 'handle.invalid' }
  const profile = repo.getRecord('app.bsky.actor.profile', 'self')
  if (!profile) return base
  const out: Json = { did: base.did, handle: base.handle }
  const json = lexToJson(profile.value as never) as Json
  if (typeof json.displayName === 'string') out.displayName = json.displayName
  const avatar = blobUrl(ctx, did, json.avatar)
  if (avatar) out.avatar = avatar
  for (const key of ['associations', 'viewer', 'labels', 'createdAt', 'verification', 'status']) {
    if (base[key] !== undefined) out[key] = base[key]
  }
  return out
}

function postView(post: LocalRecord, author: Json): Json {
  return {
    uri: post.uri,
    cid: post.cid,
    author,
    record: post.value,
    replyCount: 0,
    repostCount: 0,
    likeCount: 0,
    quoteCount: 0,
    indexedAt: post.indexedAt,
    labels: [],
  }
}

const sortKey = (item: Json): string => String(item?.post?.indexedAt ?? '')

/** Inserts local posts (given oldest first) into a feed (newest first), each before the first item not newer than it. */
function mergeIntoFeed(feed: Json[], posts: Json[]): Json[] {
  const out = [...feed]
  for (const item of posts) {
    const key = sortKey(item)
    const at = out.findIndex((f) => sortKey(f) <= key)
    if (at < 0) out.push(item)
    else out.splice(at, 0, item)
  }
  return out
}

/** Finds the caller's author view in an upstream feed, if any of their posts is there. */
function findAuthor(feed: Json[], did: string): Json | undefined {
  for (const item of feed) if (item?.post?.author?.did === did) return item.post.author
  return undefined
}

export async function applyReadAfterWrite(
  ctx: AppContext,
  did: string,
  nsid: string,
  rev: string | undefined,
  params: URLSearchParams,
  body: Json,
): Promise<{ body: Json } | null> {
  // later pages hold older items: nothing of ours belongs there
  if (!rev || !body || typeof body !== 'object' || params.has('cursor')) return null
  const repo = ctx.actorStore.get(did)
  if (!repo) return null
  const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
  const isSelf = (actor: unknown) => typeof actor === 'string' && (actor === did || (!!account?.handle && actor.toLowerCase() === account.handle))

  switch (nsid) {
    case 'app.bsky.actor.getProfile': {
      if (!isSelf(body.did)) return null
      const profile = recordsAfter(repo, rev, ['app.bsky.actor.profile']).find((r) => r.rkey === 'self')
      return profile ? { body: patchProfile(ctx, did, body, profile.value) } : null
    }
    case 'app.bsky.actor.getProfiles': {
      if (!Array.isArray(body.profiles)) return null
      const profile = recordsAfter(repo, rev, ['app.bsky.actor.profile']).find((r) => r.rkey === 'self')
      if (!profile) return null
      return { body: { ...body, profiles: body.profiles.map((p: Json) => (p?.did === did ? patchProfile(ctx, did, p, profile.value) : p)) } }
    }
    case 'app.bsky.feed.getAuthorFeed':
    case 'app.bsky.feed.getTimeline': {
      if (!Array.isArray(body.feed)) return null
      if (nsid === 'app.bsky.feed.getAuthorFeed' && !isSelf(params.get('actor'))) return null
      const posts = recordsAfter(repo, rev, ['app.bsky.feed.post'])
      if (posts.length === 0) return null
      const author = await authorView(ctx, did, repo, findAuthor(body.feed, did))
      const items = posts.map((p) => ({ post: postView(p, author) }))
      return { body: { ...body, feed: mergeIntoFeed(body.feed, items) } }
    }
    case 'app.bsky.feed.getPostThread': {
      const thread = body.thread
      if (!thread || thread.$type !== 'app.bsky.feed.defs#threadViewPost') return null
      const posts = recordsAfter(repo, rev, ['app.bsky.feed.post']).filter((p) => p.value.reply?.parent?.uri)
      if (posts.length === 0) return null
      const author = await authorView(ctx, did, repo)
      let added = 0
      const attach = (node: Json): Json => {
        if (!node || node.$type !== 'app.bsky.feed.defs#threadViewPost') return node
        const replies = Array.isArray(node.replies) ? node.replies.map(attach) : []
        for (const p of posts) {
          if (p.value.reply.parent.uri !== node.post?.uri) continue
          if (replies.some((r: Json) => r?.post?.uri === p.uri)) continue
          replies.push({ $type: 'app.bsky.feed.defs#threadViewPost', post: postView(p, author), replies: [] })
          added++
        }
        return { ...node, replies }
      }
      const merged = attach(thread)
      return added > 0 ? { body: { ...body, thread: merged } } : null
    }
  }
  return null
}
