import { presentProfiles } from '../../../feed-util.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getLikes', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const uri = params.uri as string
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      let qb = ctx.db
        .selectFrom('like')
        .select(['uri', 'creator', 'createdAt', 'indexedAt', 'sortAt'])
        .where('subject', '=', uri)
      if (params.cid) qb = qb.where('subjectCid', '=', params.cid as string)
      const rows = await qb
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const { state, dids } = await presentProfiles(ctx, viewer, rows.map((r) => r.creator))
      const visible = new Set(dids)
      const likes = []
      for (const r of rows) {
        if (!visible.has(r.creator)) continue
        const actor = ctx.views.profile(state, r.creator)
        if (actor) likes.push({ indexedAt: r.indexedAt, createdAt: r.createdAt, actor })
      }
      return json({ uri, cid: params.cid, likes, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
