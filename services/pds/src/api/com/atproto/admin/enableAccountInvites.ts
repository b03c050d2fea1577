import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { adminAccount } from '../../../../account/admin-views.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.enableAccountInvites', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { account: did } = input!.body as { account: string; note?: string }
      const account = await adminAccount(ctx, did)
      await ctx.settings.setInvitesDisabled(account.did, false)
    },
  })
}
