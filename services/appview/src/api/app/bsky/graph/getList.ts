import { InvalidRequestError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { viewerBlocks } from '../../../../views/rules.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getList', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const uri = params.list as string
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const state = new HydrationState(viewer)
      await ctx.hydrator.lists(state, [uri])
      const list = ctx.views.list(state, uri)
      if (!list) throw new InvalidRequestError('List not found')
      const rows = await ctx.db
        .selectFrom('list_item')
        .select(['uri', 'subjectDid', 'sortAt'])
        .where('listUri', '=', uri)
        .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
        .orderBy('sortAt', 'desc')
        .orderBy('uri', 'desc')
        .limit(limit)
        .execute()
      await ctx.hydrator.actors(state, rows.map((r) => r.subjectDid))
      const items = ctx.views.listItems(
        state,
        rows.filter((r) => !viewerBlocks(state, r.subjectDid)),
      )
      return json({ list, items, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
