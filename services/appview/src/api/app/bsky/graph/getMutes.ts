import { HydrationState } from '../../../../hydration/hydrator.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getMutes', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const rows = await ctx.db
        .selectFrom('mute')
        .select(['subjectDid', 'createdAt'])
        .where('mutedByDid', '=', viewer)
        .where((eb) => beforeCursor(eb, cursor, 'createdAt', 'subjectDid'))
        .orderBy('createdAt', 'desc')
        .orderBy('subjectDid', 'desc')
        .limit(limit)
        .execute()
      const state = new HydrationState(viewer)
      await ctx.hydrator.actors(state, rows.map((r) => r.subjectDid))
      const mutes = rows.map((r) => ctx.views.profile(state, r.subjectDid)).filter((p) => p !== undefined)
      return json({ mutes, cursor: nextCursor(rows, limit, (r) => [r.createdAt, r.subjectDid]) })
    },
  })
}
export default register
