import type { RelayContext } from '../../../../context.js'
import { pageCursor, publicHostView } from '../../../util.js'

/** com.atproto.sync.listHosts: hosts the relay follows (banned ones are not listed), oldest first. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.atproto.sync.listHosts', {
    handler: ({ params }) => {
      const limit = (params.limit as number | undefined) ?? 200
      const raw = pageCursor(params.cursor)
      const after = /^[0-9]+$/.test(raw) ? Number(raw) : 0
      const page = ctx.hosts.list(after, limit)
      const hosts = page.filter((h) => h.status !== 'banned').map((h) => publicHostView(ctx, h))
      const body: Record<string, unknown> = { hosts }
      if (page.length === limit) body.cursor = String(page[page.length - 1]!.id)
      return { encoding: 'application/json', body }
    },
  })
}
