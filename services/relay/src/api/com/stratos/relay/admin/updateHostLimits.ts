import type { HostLimits } from '../../../../../config.js'
import type { RelayContext } from '../../../../../context.js'
import { adminHostView } from '../../../../util.js'
import { adminAuth } from './auth.js'

/** com.stratos.relay.admin.updateHostLimits: per-host limits (null = unlimited) and the trusted flag. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.updateHostLimits', {
    auth: adminAuth(ctx),
    handler: async ({ input }) => {
      const body = input!.body as Partial<HostLimits> & { hostname: string; trusted?: boolean; reset?: boolean }
      const limits: Partial<HostLimits> = {}
      for (const k of ['perSecond', 'perHour', 'perDay', 'accounts'] as const) {
        if (k in body) limits[k] = body[k] ?? null
      }
      const host = await ctx.hostManager.updateLimits(body.hostname, limits, { trusted: body.trusted, reset: body.reset })
      return { encoding: 'application/json', body: adminHostView(ctx, host) }
    },
  })
}
