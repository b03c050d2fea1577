import type { RelayContext } from '../../../../../context.js'
import { adminHostView, pageCursor } from '../../../../util.js'
import { adminAuth } from './auth.js'

export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.listHosts', {
    auth: adminAuth(ctx),
    handler: ({ params }) => {
      const limit = (params.limit as number | undefined) ?? 200
      const raw = pageCursor(params.cursor)
      const page = ctx.hosts.list(/^[0-9]+$/.test(raw) ? Number(raw) : 0, limit)
      const status = params.status as string | undefined
      const hosts = page
        .map((h) => adminHostView(ctx, h))
        .filter((v) => status === undefined || v.status === status)
      const body: Record<string, unknown> = { hosts }
      if (page.length === limit) body.cursor = String(page[page.length - 1]!.id)
      return { encoding: 'application/json', body }
    },
  })
}
