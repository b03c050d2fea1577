import type { RelayContext } from '../../../../../context.js'
import { adminHostView } from '../../../../util.js'
import { adminAuth } from './auth.js'

/** com.stratos.relay.admin.banHost: disconnect a host and refuse it from now on. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.banHost', {
    auth: adminAuth(ctx),
    handler: async ({ input }) => {
      const host = await ctx.hostManager.banHost((input!.body as { hostname: string }).hostname)
      return { encoding: 'application/json', body: adminHostView(ctx, host) }
    },
  })
}
