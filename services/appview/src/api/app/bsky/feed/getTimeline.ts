import { decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'
import { feedItemOf, presentFeed } from '../../../feed-util.js'
import { timelineSkeleton } from '../../../timeline.js'

/** The Following timeline: posts and reposts of the accounts the viewer follows, and the viewer's own (plans: ../../../timeline.ts). */
const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getTimeline', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const rows = await timelineSkeleton(ctx.db, viewer, limit, cursor)
      const feed = await presentFeed(ctx, viewer, rows.map(feedItemOf), { applyMutes: true, followedRepliesOnly: true })
      return json({ feed, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
