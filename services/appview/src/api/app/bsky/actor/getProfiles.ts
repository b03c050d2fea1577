import { HydrationState } from '../../../../hydration/hydrator.js'
import { json, resolveActors, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.actor.getProfiles', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const dids = await resolveActors(ctx.db, params.actors as string[])
      const state = new HydrationState(viewer)
      await ctx.hydrator.actors(state, dids)
      const profiles = dids.map((d) => ctx.views.profileDetailed(state, d)).filter((p) => p !== undefined)
      return json({ profiles })
    },
  })
}
export default register
