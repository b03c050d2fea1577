import { InvalidRequestError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { beforeCursor, decodeCursor, json, nextCursor, resolveActor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getActorStarterPacks', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const did = await resolveActor(ctx.db, params.actor as string)
      if (!did) throw new InvalidRequestError('Profile not found')
      const rows = await ctx.db
        .selectFrom('starter_pack')
        .select(['uri', 'sortAt'])
        .where('creator', '=', did)
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const state = new HydrationState(viewerOf(auth))
      await ctx.hydrator.starterPacks(state, rows.map((r) => r.uri))
      const starterPacks = rows.map((r) => ctx.views.starterPackBasic(state, r.uri)).filter((v) => v !== undefined)
      return json({ starterPacks, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
