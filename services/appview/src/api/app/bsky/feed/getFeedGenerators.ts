import { HydrationState } from '../../../../hydration/hydrator.js'
import { json, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getFeedGenerators', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const uris = params.feeds as string[]
      const state = new HydrationState(viewerOf(auth))
      await ctx.hydrator.feedgens(state, uris)
      const feeds = uris.map((u) => ctx.views.feedgen(state, u)).filter((v) => v !== undefined)
      return json({ feeds })
    },
  })
}
export default register
