import { XRPCError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { threadView } from '../../../../views/thread.js'
import { json, viewerOf, type Register } from '../../../util.js'

/** Upper bound of posts read for one thread. */
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
      const anchor = await ctx.db.selectFrom('post').select(['uri', 'replyRoot']).where('uri', '=', uri).executeTakeFirst()
      if (!anchor) throw notFound()
      const rootUri = anchor.replyRoot ?? anchor.uri
      const rows = await ctx.db
        .selectFrom('post')
        .select(['uri', 'replyParent'])
        .where('replyRoot', '=', rootUri)
        .orderBy('sortAt', 'asc')
        .limit(MAX_THREAD_POSTS)
        .execute()
      const children = new Map<string, string[]>()
      for (const r of rows) {
        if (!r.replyParent) continue
        const list = children.get(r.replyParent) ?? []
        list.push(r.uri)
        children.set(r.replyParent, list)
      }
      const state = new HydrationState(viewer)
      await ctx.hydrator.posts(state, [rootUri, uri, ...rows.map((r) => r.uri)])
      // parents outside the root's thread (a broken chain) are loaded one by one
      let cursor = state.posts.get(uri)
      for (let i = 0; cursor?.replyParent && i < parentHeight; i++) {
        if (!state.posts.has(cursor.replyParent)) await ctx.hydrator.posts(state, [cursor.replyParent])
        cursor = state.posts.get(cursor.replyParent) ?? undefined
      }
      const thread = threadView(ctx.views, state, uri, children, { depth, parentHeight })
      if (!thread) throw notFound()
      const threadgate = ctx.views.threadgateView(state, rootUri)
      return json({ thread, threadgate })
    },
  })
}
export default register
