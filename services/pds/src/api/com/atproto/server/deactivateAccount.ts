import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.deactivateAccount', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth, input }) => {
      const { did } = auth.credentials
      const deleteAfter = (input?.body as { deleteAfter?: string } | undefined)?.deleteAfter ?? null
      if (deleteAfter !== null && Number.isNaN(Date.parse(deleteAfter))) {
        throw new InvalidRequestError('deleteAfter must be a datetime')
      }
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account || account.deactivatedAt) return
      await ctx.accounts.setDeactivated(did, true, deleteAfter)
      ctx.sequencer.sequenceAccount(did, false, 'deactivated')
      await ctx.sequencer.durable()
    },
  })
}
