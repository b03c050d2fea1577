import { XRPCError } from '@stratos/core/xrpc'
import { HydrationState, type PostHead } from '../../../../hydration/hydrator.js'
import { threadView } from '../../../../views/thread.js'
import { fixedRows } from '../../../../hydration/sql.js'
import { json, viewerOf, type Register } from '../../../util.js'

/** A post's head (hydration's PostHead): read with the rows the thread reads anyway, so that hydration reads only their counts. */
const HEAD = 'p.cid AS cid, p."indexedAt" AS "indexedAt", p."violatesThreadGate" AS "violatesThreadGate", p."violatesEmbeddingRules" AS "violatesEmbeddingRules"'

/**
 * One level of replies (of the posts listed), oldest first, with their heads. The list drives the join (one
 * post_reply_parent_cover_idx seek per listed post, the heads read from the index: migration 008):
 * `"replyParent" IN ?L` first built a temporary index of the list.
 */
export const REPLIES_SQL = `SELECT p.uri AS uri, p."replyParent" AS "replyParent", ${HEAD} FROM ?J j JOIN post p ON p."replyParent" = j.value ORDER BY p."sortAt" ASC LIMIT ?`

/** The thread's statements read posts by URI and by parent URI: keyed (see PreparedText in hydration/sql.ts). */
const KEYED = { keyed: true }

/** Upper bound of replies read for one thread view. */
const MAX_THREAD_POSTS = 5000

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getPostThread', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const uri = params.uri as string
      const depth = params.depth as number
      const parentHeight = params.parentHeight as number
      const notFound = () => new XRPCError(400, 'NotFound', `Post not found: ${uri}`)
      const [anchor] = await fixedRows<PostHead & { replyRoot: string | null; replyParent: string | null }>(
        ctx.db,
        `SELECT p.uri AS uri, p."replyRoot" AS "replyRoot", p."replyParent" AS "replyParent", ${HEAD} FROM post p WHERE p.uri = ?`,
        [uri],
        KEYED,
      )
      if (!anchor) throw notFound()
      const heads = new Map<string, PostHead>([[anchor.uri, anchor]])
      const rootUri = anchor.replyRoot ?? anchor.uri
      // replies: level by level below the anchor, down to `depth` (post_reply_parent_cover_idx), oldest first
      const children = new Map<string, string[]>()
      const below: string[] = []
      let level = [uri]
      for (let d = 0; d < depth && level.length > 0 && below.length < MAX_THREAD_POSTS; d++) {
        const rows = await fixedRows<PostHead & { replyParent: string }>(ctx.db, REPLIES_SQL, [{ list: level }, MAX_THREAD_POSTS - below.length], KEYED)
        level = []
        for (const r of rows) {
          heads.set(r.uri, r)
          const list = children.get(r.replyParent!) ?? []
          list.push(r.uri)
          children.set(r.replyParent!, list)
          below.push(r.uri)
          level.push(r.uri)
        }
      }
      // parents: up to `parentHeight`, one level at a time
      const above: string[] = []
      let parent = anchor.replyParent
      for (let i = 0; parent && i < parentHeight; i++) {
        above.push(parent)
        const [row] = await fixedRows<{ replyParent: string | null }>(ctx.db, 'SELECT "replyParent" AS "replyParent" FROM post WHERE uri = ?', [parent], KEYED)
        parent = row?.replyParent ?? null
      }
      const state = new HydrationState(viewer)
      await ctx.hydrator.posts(state, [rootUri, uri, ...above, ...below], { heads })
      const thread = threadView(ctx.views, state, uri, children, { depth, parentHeight })
      if (!thread) throw notFound()
      const threadgate = ctx.views.threadgateView(state, rootUri)
      return json({ thread, threadgate })
    },
  })
}
export default register
