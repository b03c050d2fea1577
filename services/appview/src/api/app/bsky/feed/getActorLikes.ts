import { InvalidRequestError } from '@stratos/core/xrpc'
import { presentFeed } from '../../../feed-util.js'
import { beforeCursor, decodeCursor, json, nextCursor, resolveActor, viewerOf, type Register } from '../../../util.js'

/** The viewer's own likes (the reference AppView shows an account's likes to that account only). */
const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getActorLikes', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const did = await resolveActor(ctx.db, params.actor as string)
      if (!did) throw new InvalidRequestError('Profile not found')
      if (did !== viewer) throw new InvalidRequestError('Profile not found')
      const rows = await ctx.db
        .selectFrom('like')
        .select(['uri', 'subject', 'sortAt'])
        .where('creator', '=', did)
        .where('subject', 'like', 'at://%/app.bsky.feed.post/%')
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const feed = await presentFeed(ctx, viewer, rows.map((r) => ({ postUri: r.subject })))
      return json({ feed, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
