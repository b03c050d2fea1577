import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.confirmEmail', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth, input }) => {
      const { did } = auth.credentials
      const { email, token } = input!.body as { email: string; token: string }
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found', 'AccountNotFound')
      if (!account.email || account.email.toLowerCase() !== email.trim().toLowerCase()) {
        throw new InvalidRequestError('Invalid email', 'InvalidEmail')
      }
      await ctx.settings.consumeEmailToken(did, 'confirm_email', token)
      await ctx.settings.confirmEmail(did)
    },
  })
}
