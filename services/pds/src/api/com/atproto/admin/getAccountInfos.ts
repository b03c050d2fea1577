import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { accountView } from '../../../../account/admin-views.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.getAccountInfos', {
    auth: ctx.auth.admin,
    handler: async ({ params }) => {
      const dids = params.dids as string[]
      const infos = []
      for (const did of new Set(dids)) {
        const account = await ctx.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })
        if (account) infos.push(await accountView(ctx, account))
      }
      return { encoding: 'application/json', body: { infos } }
    },
  })
}
