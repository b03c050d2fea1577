import { searchTokens } from '../../../../indexer/search.js'
import { normalizeDate } from '../../../../indexer/records.js'
import { presentPosts } from '../../../feed-util.js'
import { beforeCursor, decodeCursor, json, nextCursor, resolveActor, viewerOf, type Register } from '../../../util.js'

/** Full-text search over post text, newest first (`sort=top` is answered the same way). */
const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.searchPosts', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const tokens = searchTokens(params.q as string)
      if (tokens.length === 0) return json({ posts: [] })
      let qb = ctx.db.selectFrom('post').select(['post.uri', 'post.sortAt']).where(ctx.indexer.search.postMatches(tokens))
      if (params.author) {
        const did = await resolveActor(ctx.db, params.author as string)
        if (!did) return json({ posts: [] })
        qb = qb.where('post.creator', '=', did)
      }
      const since = normalizeDate(params.since)
      if (since) qb = qb.where('post.sortAt', '>=', since)
      const until = normalizeDate(params.until)
      if (until) qb = qb.where('post.sortAt', '<', until)
      if (typeof params.lang === 'string' && /^[a-zA-Z0-9-]+$/.test(params.lang)) {
        qb = qb.where('post.langs', 'like', `%"${params.lang}%`)
      }
      const rows = await qb
        .where((eb) => beforeCursor(eb, cursor, 'post.sortAt', 'post.uri'))
        .orderBy('post.sortAt', 'desc')
        .orderBy('post.uri', 'desc')
        .limit(limit)
        .execute()
      const posts = await presentPosts(ctx, viewer, rows.map((r) => r.uri))
      return json({ posts, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
