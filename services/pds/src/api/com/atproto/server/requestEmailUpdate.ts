import type { XrpcServer } from '@stratos/core/xrpc'
import { sendEmailToken } from '../../../../account/lifecycle.js'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/** A confirmed address must approve its own replacement: a token goes to it. */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.requestEmailUpdate', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth }) => {
      const account = await ctx.accounts.getAccount(auth.credentials.did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found')
      const tokenRequired = !!account.emailConfirmedAt
      if (tokenRequired) await sendEmailToken(ctx, account, 'update_email')
      return { encoding: 'application/json', body: { tokenRequired } }
    },
  })
}
