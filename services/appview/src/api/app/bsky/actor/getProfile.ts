import { InvalidRequestError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { json, resolveActor, viewerOf, type Register } from '../../../util.js'

/** Throws the error the reference AppView gives for an account that is not shown. */
export function assertActorShown(status: string | null | undefined): void {
  if (!status) return
  if (status === 'deactivated') throw new InvalidRequestError('Account is deactivated', 'AccountDeactivated')
  if (status === 'takendown' || status === 'suspended') throw new InvalidRequestError('Account has been suspended', 'AccountTakedown')
  throw new InvalidRequestError('Profile not found')
}

const register: Register = (server, ctx) => {
  server.method('app.bsky.actor.getProfile', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const did = await resolveActor(ctx.db, params.actor as string)
      if (!did) throw new InvalidRequestError('Profile not found')
      const state = new HydrationState(viewer)
      await ctx.hydrator.actors(state, [did])
      assertActorShown(state.actors.get(did)?.upstreamStatus)
      const view = ctx.views.profileDetailed(state, did)
      if (!view) throw new InvalidRequestError('Profile not found')
      return json(view)
    },
  })
}
export default register
