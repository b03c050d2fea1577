import { InvalidRequestError } from '@stratos/core/xrpc'
import { resolveActor, viewerOf, type Register } from '../../../util.js'

/** Mutes are private to the viewer and kept by the AppView (not in any repo). */
const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.muteActor', {
    auth: ctx.auth.required,
    handler: async ({ input, auth }) => {
      const viewer = viewerOf(auth)!
      const actor = (input?.body as { actor: string }).actor
      const did = await resolveActor(ctx.db, actor)
      if (!did) throw new InvalidRequestError('Actor not found')
      if (did === viewer) throw new InvalidRequestError('Cannot mute oneself')
      await ctx.db
        .insertInto('mute')
        .values({ mutedByDid: viewer, subjectDid: did, createdAt: new Date().toISOString() })
        .onConflict((oc) => oc.columns(['mutedByDid', 'subjectDid']).doNothing())
        .execute()
    },
  })
}
export default register
