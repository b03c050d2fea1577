import type { XrpcServer } from '@stratos/core/xrpc'
import { sendEmailToken } from '../../../../account/lifecycle.js'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.requestAccountDelete', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth }) => {
      const { did } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found')
      await sendEmailToken(ctx, account, 'delete_account')
    },
  })
}
