import { InvalidRequestError } from '@stratos/core/xrpc'
import { presentFeed } from '../../../feed-util.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

/** Posts by the members of a (curation) list, newest first. */
const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getListFeed', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const listUri = params.list as string
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const list = await ctx.db.selectFrom('list').select('uri').where('uri', '=', listUri).executeTakeFirst()
      if (!list) throw new InvalidRequestError('List not found', 'UnknownList')
      const rows = await ctx.db
        .selectFrom('feed_item')
        .select(['feed_item.uri', 'feed_item.postUri', 'feed_item.sortAt'])
        .where('feed_item.type', '=', 'post')
        .where('feed_item.originatorDid', 'in', (eb) => eb.selectFrom('list_item').select('list_item.subjectDid').where('list_item.listUri', '=', listUri))
        .where((eb) => beforeCursor(eb, cursor, 'feed_item.sortAt', 'feed_item.uri'))
        .orderBy('feed_item.sortAt', 'desc')
        .orderBy('feed_item.uri', 'desc')
        .limit(limit)
        .execute()
      const feed = await presentFeed(ctx, viewer, rows.map((r) => ({ postUri: r.postUri })), { applyMutes: true })
      return json({ feed, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
