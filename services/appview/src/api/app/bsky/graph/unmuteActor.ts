import { InvalidRequestError } from '@stratos/core/xrpc'
import { resolveActor, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.unmuteActor', {
    auth: ctx.auth.required,
    handler: async ({ input, auth }) => {
      const viewer = viewerOf(auth)!
      const actor = (input?.body as { actor: string }).actor
      const did = await resolveActor(ctx.db, actor)
      if (!did) throw new InvalidRequestError('Actor not found')
      await ctx.db.deleteFrom('mute').where('mutedByDid', '=', viewer).where('subjectDid', '=', did).execute()
    },
  })
}
export default register
