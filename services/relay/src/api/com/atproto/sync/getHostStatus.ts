import { InvalidRequestError } from '@stratos/core/xrpc'
import type { RelayContext } from '../../../../context.js'
import { publicHostView } from '../../../util.js'

/** com.atproto.sync.getHostStatus */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.atproto.sync.getHostStatus', {
    handler: ({ params }) => {
      const parsed = ctx.hostManager.parse(params.hostname as string)
      const host = ctx.hosts.get(parsed.hostname)
      if (!host) throw new InvalidRequestError(`unknown host: ${parsed.hostname}`, 'HostNotFound')
      return { encoding: 'application/json', body: publicHostView(ctx, host) }
    },
  })
}
