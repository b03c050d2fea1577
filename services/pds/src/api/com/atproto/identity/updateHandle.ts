import type { XrpcServer } from '@stratos/core/xrpc'
import { changeHandle } from '../../../../account/lifecycle.js'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.identity.updateHandle', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    rateLimit: [
      { points: 10, durationMs: 5 * 60 * 1000, calcKey: (c) => (c.auth?.credentials as { did?: string } | null)?.did ?? null },
      { points: 50, durationMs: 24 * 60 * 60 * 1000, calcKey: (c) => (c.auth?.credentials as { did?: string } | null)?.did ?? null },
    ],
    handler: async ({ auth, input }) => {
      const { handle } = input!.body as { handle: string }
      await changeHandle(ctx, auth.credentials.did, handle)
    },
  })
}
