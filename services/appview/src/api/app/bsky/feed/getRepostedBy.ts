import { presentProfiles } from '../../../feed-util.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getRepostedBy', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const uri = params.uri as string
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      let qb = ctx.db.selectFrom('repost').select(['uri', 'creator', 'sortAt']).where('subject', '=', uri)
      if (params.cid) qb = qb.where('subjectCid', '=', params.cid as string)
      const rows = await qb
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const { state, dids } = await presentProfiles(ctx, viewer, rows.map((r) => r.creator))
      const repostedBy = dids.map((d) => ctx.views.profile(state, d)).filter((p) => p !== undefined)
      return json({ uri, cid: params.cid, repostedBy, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
