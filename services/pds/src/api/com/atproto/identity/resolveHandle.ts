import type { XrpcServer } from '@stratos/core/xrpc'
import { normalizeHandle } from '../../../../account/handle.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.identity.resolveHandle', {
    handler: async ({ params }) => {
      const handle = normalizeHandle(String(params.handle))
      const local = await ctx.accounts.getAccount(handle, { includeDeactivated: true })
      let did = local?.did
      if (!did) {
        // not hosted here: resolve it like anyone else would (DNS TXT, then HTTPS well-known)
        did = await ctx.idResolver.resolveHandle(handle).catch(() => undefined)
      }
      if (!did) throw new InvalidRequestError('Unable to resolve handle', 'HandleNotFound')
      return { encoding: 'application/json', body: { did } }
    },
  })
}
