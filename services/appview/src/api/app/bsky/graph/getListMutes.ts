import { HydrationState } from '../../../../hydration/hydrator.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getListMutes', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const rows = await ctx.db
        .selectFrom('list_mute')
        .select(['listUri', 'createdAt'])
        .where('mutedByDid', '=', viewer)
        .where((eb) => beforeCursor(eb, cursor, 'createdAt', 'listUri'))
        .orderBy('createdAt', 'desc')
        .orderBy('listUri', 'desc')
        .limit(limit)
        .execute()
      const state = new HydrationState(viewer)
      await ctx.hydrator.lists(state, rows.map((r) => r.listUri))
      const lists = rows.map((r) => ctx.views.list(state, r.listUri)).filter((l) => l !== undefined)
      return json({ lists, cursor: nextCursor(rows, limit, (r) => [r.createdAt, r.listUri]) })
    },
  })
}
export default register
