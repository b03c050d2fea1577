import { XRPCError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { threadView } from '../../../../views/thread.js'
import { json, viewerOf, type Register } from '../../../util.js'

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
      const anchor = await ctx.db.selectFrom('post').select(['uri', 'replyRoot', 'replyParent']).where('uri', '=', uri).executeTakeFirst()
      if (!anchor) throw notFound()
      const rootUri = anchor.replyRoot ?? anchor.uri
      // replies: level by level below the anchor, down to `depth` (post_reply_parent_idx), oldest first
      const children = new Map<string, string[]>()
      const below: string[] = []
      let level = [uri]
      for (let d = 0; d < depth && level.length > 0 && below.length < MAX_THREAD_POSTS; d++) {
        const rows = await ctx.db
          .selectFrom('post')
          .select(['uri', 'replyParent'])
          .where('replyParent', 'in', level)
          .orderBy('sortAt', 'asc')
          .limit(MAX_THREAD_POSTS - below.length)
          .execute()
        level = []
        for (const r of rows) {
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
        const row = await ctx.db.selectFrom('post').select('replyParent').where('uri', '=', parent).executeTakeFirst()
        parent = row?.replyParent ?? null
      }
      const state = new HydrationState(viewer)
      await ctx.hydrator.posts(state, [rootUri, uri, ...above, ...below])
      const thread = threadView(ctx.views, state, uri, children, { depth, parentHeight })
      if (!thread) throw notFound()
      const threadgate = ctx.views.threadgateView(state, rootUri)
      return json({ thread, threadgate })
    },
  })
}
export default register
