import { InvalidRequestError } from '@stratos/core/xrpc'
import { viewerOf, type Register } from '../../../util.js'

export function listMute(mute: boolean): Register {
  return (server, ctx) => {
    server.method(mute ? 'app.bsky.graph.muteActorList' : 'app.bsky.graph.unmuteActorList', {
      auth: ctx.auth.required,
      handler: async ({ input, auth }) => {
        const viewer = viewerOf(auth)!
        const listUri = (input?.body as { list: string }).list
        if (!mute) {
          await ctx.db.deleteFrom('list_mute').where('mutedByDid', '=', viewer).where('listUri', '=', listUri).execute()
          return
        }
        const list = await ctx.db.selectFrom('list').select(['uri', 'purpose']).where('uri', '=', listUri).executeTakeFirst()
        if (!list) throw new InvalidRequestError('List not found')
        if (list.purpose !== 'app.bsky.graph.defs#modlist') throw new InvalidRequestError('Only moderation lists can be muted')
        await ctx.db
          .insertInto('list_mute')
          .values({ mutedByDid: viewer, listUri, createdAt: new Date().toISOString() })
          .onConflict((oc) => oc.columns(['mutedByDid', 'listUri']).doNothing())
          .execute()
      },
    })
  }
}

export default listMute(true)
