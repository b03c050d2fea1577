import type { RelayContext } from '../../../../../context.js'
import { accountView } from '../../../../util.js'
import { adminAuth } from './auth.js'

/** com.stratos.relay.admin.restoreAccount: reverse a takedown; consumers get #account with the upstream status. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.restoreAccount', {
    auth: adminAuth(ctx),
    handler: async ({ input }) => {
      const account = await ctx.ingester.setTakedown((input!.body as { did: string }).did, false)
      return { encoding: 'application/json', body: accountView(ctx, account) }
    },
  })
}
