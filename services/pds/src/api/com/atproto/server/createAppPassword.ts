import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.createAppPassword', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth, input }) => {
      const { name, privileged } = input!.body as { name: string; privileged?: boolean }
      const trimmed = name.trim()
      if (trimmed.length === 0 || trimmed.length > 100) {
        throw new InvalidRequestError('App password name must be 1 to 100 characters')
      }
      const created = await ctx.accounts.createAppPassword(auth.credentials.did, trimmed, privileged ?? false)
      return { encoding: 'application/json', body: created }
    },
  })
}
