import { InvalidRequestError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { beforeCursor, decodeCursor, json, nextCursor, resolveActor, viewerOf, type Register } from '../../../util.js'

const PURPOSES: Record<string, string> = {
  modlist: 'app.bsky.graph.defs#modlist',
  curatelist: 'app.bsky.graph.defs#curatelist',
  referencelist: 'app.bsky.graph.defs#referencelist',
}

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getLists', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const did = await resolveActor(ctx.db, params.actor as string)
      if (!did) throw new InvalidRequestError('Profile not found')
      let qb = ctx.db.selectFrom('list').select(['uri', 'sortAt']).where('creator', '=', did)
      const purposes = ((params.purposes as string[] | undefined) ?? []).map((p) => PURPOSES[p] ?? p)
      if (purposes.length > 0) qb = qb.where('purpose', 'in', purposes)
      const rows = await qb
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      const state = new HydrationState(viewer)
      await ctx.hydrator.lists(state, rows.map((r) => r.uri))
      const lists = rows.map((r) => ctx.views.list(state, r.uri)).filter((l) => l !== undefined)
      return json({ lists, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
