import type { RelayContext } from '../../../../../context.js'
import { accountView } from '../../../../util.js'
import { adminAuth } from './auth.js'

/** com.stratos.relay.admin.takedownAccount: drop the account's events; consumers get #account takendown. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.takedownAccount', {
    auth: adminAuth(ctx),
    handler: async ({ input }) => {
      const account = await ctx.ingester.setTakedown((input!.body as { did: string }).did, true)
      return { encoding: 'application/json', body: accountView(ctx, account) }
    },
  })
}
