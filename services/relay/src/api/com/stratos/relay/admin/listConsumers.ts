import type { RelayContext } from '../../../../../context.js'
import { adminAuth } from './auth.js'

export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.listConsumers', {
    auth: adminAuth(ctx),
    handler: () => {
      const consumers = ctx.outbox.server.consumers().map((c) => {
        const v: Record<string, unknown> = {
          id: c.id,
          connectedAt: c.connectedAt,
          phase: c.phase,
          sent: c.sent,
          queued: c.queued,
          bufferedBytes: c.bufferedBytes,
          lastSeq: c.lastSeq,
        }
        if (c.remoteAddress) v.remoteAddress = c.remoteAddress
        if (c.cursor !== undefined) v.cursor = c.cursor
        return v
      })
      return { encoding: 'application/json', body: { consumers } }
    },
  })
}
