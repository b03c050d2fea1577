import type { XrpcServer } from '@stratos/core/xrpc'
import { deleteAccountData } from '../../../../account/lifecycle.js'
import type { AppContext } from '../../../../context.js'
import { AuthRequiredError, InvalidRequestError } from '../../../../errors.js'

/** Deletes the account for good, given its password and the token emailed by requestAccountDelete. */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.deleteAccount', {
    rateLimit: [{ points: 50, durationMs: 60 * 60 * 1000 }],
    handler: async ({ input }) => {
      const { did, password, token } = input!.body as { did: string; password: string; token: string }
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found')
      if (!(await ctx.settings.verifyAccountPassword(did, password))) {
        throw new AuthRequiredError('Invalid did or password')
      }
      await ctx.settings.consumeEmailToken(did, 'delete_account', token)
      await deleteAccountData(ctx, did)
      ctx.logger.info({ did }, 'account deleted at its owner\'s request')
    },
  })
}
