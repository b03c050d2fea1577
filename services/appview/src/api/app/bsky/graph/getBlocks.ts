import { HydrationState } from '../../../../hydration/hydrator.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getBlocks', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const rows = await ctx.db
        .selectFrom('block')
        .select(['uri', 'subjectDid', 'sortAt'])
        .where('creator', '=', viewer)
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const state = new HydrationState(viewer)
      await ctx.hydrator.actors(state, rows.map((r) => r.subjectDid))
      const blocks = rows.map((r) => ctx.views.profile(state, r.subjectDid)).filter((p) => p !== undefined)
      return json({ blocks, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
