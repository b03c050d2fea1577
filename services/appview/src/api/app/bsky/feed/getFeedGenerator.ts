import { InvalidRequestError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { json, viewerOf, type Register } from '../../../util.js'
import { feedgenEndpoint, fetchJson } from '../../../feedgen-util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getFeedGenerator', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const uri = params.feed as string
      const state = new HydrationState(viewerOf(auth))
      await ctx.hydrator.feedgens(state, [uri])
      const view = ctx.views.feedgen(state, uri)
      if (!view) throw new InvalidRequestError('could not find feed')
      const endpoint = await feedgenEndpoint(ctx, view.did)
      let isOnline = false
      let isValid = false
      if (endpoint) {
        try {
          const res = await fetchJson(ctx, `${endpoint.replace(/\/+$/, '')}/xrpc/app.bsky.feed.describeFeedGenerator`)
          isOnline = res.ok
          const feeds = res.ok ? (res.json() as { feeds?: { uri?: unknown }[] }).feeds : undefined
          isValid = Array.isArray(feeds) && feeds.some((f) => f?.uri === uri)
        } catch {
          isOnline = false
        }
      }
      return json({ view, isOnline, isValid })
    },
  })
}
export default register
