import type { RelayContext } from '../../../../../context.js'
import { adminHostView } from '../../../../util.js'
import { adminAuth } from './auth.js'

/** com.stratos.relay.admin.unbanHost: lift a ban and follow the host again. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.unbanHost', {
    auth: adminAuth(ctx),
    handler: async ({ input }) => {
      const host = await ctx.hostManager.unbanHost((input!.body as { hostname: string }).hostname)
      return { encoding: 'application/json', body: adminHostView(ctx, host) }
    },
  })
}
