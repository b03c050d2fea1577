import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/**
 * Reserves a repo signing key for an account about to move here: the account puts the returned did:key
 * in its DID document before createAccount. The same DID gets the same key back until it is used.
 */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.reserveSigningKey', {
    rateLimit: [{ points: 100, durationMs: 60 * 60 * 1000 }],
    handler: async ({ input }) => {
      const did = (input?.body as { did?: string } | undefined)?.did ?? null
      if (did !== null && !/^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/.test(did)) {
        throw new InvalidRequestError('did is not a valid DID')
      }
      const key = await ctx.settings.reserveSigningKey(did)
      return { encoding: 'application/json', body: { signingKey: key.did() } }
    },
  })
}
