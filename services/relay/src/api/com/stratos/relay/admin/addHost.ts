import type { RelayContext } from '../../../../../context.js'
import { adminHostView } from '../../../../util.js'
import { adminAuth } from './auth.js'

/** com.stratos.relay.admin.addHost: follow a host (no liveness probe, no daily cap). */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.addHost', {
    auth: adminAuth(ctx),
    handler: async ({ input }) => {
      const { hostname, trusted } = input!.body as { hostname: string; trusted?: boolean }
      const host = await ctx.hostManager.addHost(hostname, { trusted })
      return { encoding: 'application/json', body: adminHostView(ctx, host) }
    },
  })
}
