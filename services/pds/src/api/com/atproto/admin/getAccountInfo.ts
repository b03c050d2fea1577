import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { accountView, adminAccount } from '../../../../account/admin-views.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.getAccountInfo', {
    auth: ctx.auth.admin,
    handler: async ({ params }) => {
      const account = await adminAccount(ctx, params.did as string)
      return { encoding: 'application/json', body: await accountView(ctx, account) }
    },
  })
}
