import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'
import { feedItemOf, presentFeed } from '../../../feed-util.js'

/** The Following timeline: posts and reposts of the accounts the viewer follows, and the viewer's own. */
const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getTimeline', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const rows = await ctx.db
        .selectFrom('feed_item')
        .select(['feed_item.uri', 'feed_item.type', 'feed_item.postUri', 'feed_item.originatorDid', 'feed_item.sortAt'])
        .where((eb) =>
          eb.or([
            eb('feed_item.originatorDid', '=', viewer),
            eb('feed_item.originatorDid', 'in', eb.selectFrom('follow').select('follow.subjectDid').where('follow.creator', '=', viewer)),
          ]),
        )
        .where((eb) => beforeCursor(eb, cursor, 'feed_item.sortAt', 'feed_item.uri'))
        .orderBy('feed_item.sortAt', 'desc')
        .orderBy('feed_item.uri', 'desc')
        .limit(limit)
        .execute()
      const feed = await presentFeed(ctx, viewer, rows.map(feedItemOf), { applyMutes: true, followedRepliesOnly: true })
      return json({ feed, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
