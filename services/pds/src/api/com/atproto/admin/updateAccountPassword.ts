import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { adminAccount } from '../../../../account/admin-views.js'
import { MAX_PASSWORD_LENGTH } from '../../../../account/password.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.updateAccountPassword', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { did, password } = input!.body as { did: string; password: string }
      if (!password || password.length > MAX_PASSWORD_LENGTH) {
        throw new InvalidRequestError(`Password must be 1 to ${MAX_PASSWORD_LENGTH} characters`, 'InvalidPassword')
      }
      const account = await adminAccount(ctx, did)
      await ctx.settings.updatePassword(account.did, password)
    },
  })
}
