import { InvalidRequestError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { beforeCursor, decodeCursor, json, nextCursor, resolveActor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getActorFeeds', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const did = await resolveActor(ctx.db, params.actor as string)
      if (!did) throw new InvalidRequestError('Profile not found')
      const rows = await ctx.db
        .selectFrom('feed_generator')
        .select(['uri', 'sortAt'])
        .where('creator', '=', did)
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const state = new HydrationState(viewerOf(auth))
      await ctx.hydrator.feedgens(state, rows.map((r) => r.uri))
      const feeds = rows.map((r) => ctx.views.feedgen(state, r.uri)).filter((v) => v !== undefined)
      return json({ feeds, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
