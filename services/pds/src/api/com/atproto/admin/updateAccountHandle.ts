import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { adminAccount } from '../../../../account/admin-views.js'
import { changeHandle } from '../../../../account/lifecycle.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.updateAccountHandle', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { did, handle } = input!.body as { did: string; handle: string }
      const account = await adminAccount(ctx, did)
      await changeHandle(ctx, account.did, handle, { admin: true })
    },
  })
}
