import { InvalidRequestError } from '@stratos/core/xrpc'
import { normalizeDate } from '../../../../indexer/records.js'
import { viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.notification.updateSeen', {
    auth: ctx.auth.required,
    handler: async ({ input, auth }) => {
      const viewer = viewerOf(auth)!
      const seenAt = normalizeDate((input?.body as { seenAt?: unknown }).seenAt)
      if (!seenAt) throw new InvalidRequestError('seenAt must be a datetime')
      await ctx.db
        .insertInto('actor_state')
        .values({ did: viewer, lastSeenNotifs: seenAt })
        .onConflict((oc) => oc.column('did').doUpdateSet({ lastSeenNotifs: seenAt }))
        .execute()
    },
  })
}
export default register
