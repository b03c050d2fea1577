import { HydrationState } from '../../../../hydration/hydrator.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

/** Moderation lists the viewer blocks (subscribes to as blocks). */
const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getListBlocks', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const rows = await ctx.db
        .selectFrom('list_block')
        .select(['uri', 'subjectUri', 'sortAt'])
        .where('creator', '=', viewer)
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const state = new HydrationState(viewer)
      await ctx.hydrator.lists(state, rows.map((r) => r.subjectUri))
      const lists = rows.map((r) => ctx.views.list(state, r.subjectUri)).filter((l) => l !== undefined)
      return json({ lists, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
