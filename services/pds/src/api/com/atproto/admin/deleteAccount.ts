import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { adminAccount } from '../../../../account/admin-views.js'
import { deleteAccountData } from '../../../../account/lifecycle.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.deleteAccount', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { did } = input!.body as { did: string }
      const account = await adminAccount(ctx, did)
      await deleteAccountData(ctx, account.did)
      ctx.logger.info({ did: account.did }, 'account deleted by an administrator')
    },
  })
}
