import { presentPosts } from '../../../feed-util.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getQuotes', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const uri = params.uri as string
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      let qb = ctx.db.selectFrom('post').select(['uri', 'sortAt']).where('quoteUri', '=', uri).where('violatesEmbeddingRules', '=', 0)
      if (params.cid) qb = qb.where('quoteCid', '=', params.cid as string)
      const rows = await qb
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const posts = await presentPosts(ctx, viewer, rows.map((r) => r.uri))
      // quotes the quoted post's author detached are not listed
      const shown = posts.filter((p) => {
        const e = p.embed as { record?: { $type?: string; record?: { $type?: string } } } | undefined
        const rec = e?.record?.$type === 'app.bsky.embed.record#viewDetached' ? e.record : e?.record?.record
        return rec?.$type !== 'app.bsky.embed.record#viewDetached'
      })
      return json({ uri, cid: params.cid, posts: shown, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
