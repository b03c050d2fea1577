import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.listAppPasswords', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth }) => {
      const passwords = await ctx.accounts.listAppPasswords(auth.credentials.did)
      return { encoding: 'application/json', body: { passwords } }
    },
  })
}
