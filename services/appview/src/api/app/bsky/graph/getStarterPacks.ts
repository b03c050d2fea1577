import { HydrationState } from '../../../../hydration/hydrator.js'
import { json, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getStarterPacks', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const uris = params.uris as string[]
      const state = new HydrationState(viewerOf(auth))
      await ctx.hydrator.starterPacks(state, uris)
      const starterPacks = uris.map((u) => ctx.views.starterPackBasic(state, u)).filter((v) => v !== undefined)
      return json({ starterPacks })
    },
  })
}
export default register
