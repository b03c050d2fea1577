import { lexToJson } from '@stratos/core/data'
import type { XrpcServer } from '@stratos/core/xrpc'
import { lastPlcOperation, nextPlcOperation } from '../../../../account/lifecycle.js'
import type { UnsignedPlcOperation } from '../../../../account/plc.js'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

interface Input {
  token?: string
  rotationKeys?: string[]
  alsoKnownAs?: string[]
  verificationMethods?: Record<string, string>
  services?: Record<string, { type: string; endpoint: string }>
}

/**
 * Signs, with this PDS's rotation key, the PLC operation that follows the DID's current one with the
 * given fields replaced (e.g. to move the account to another PDS). Needs the emailed token. The op is
 * returned, not submitted.
 */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.identity.signPlcOperation', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth, input }) => {
      const { did } = auth.credentials
      if (!did.startsWith('did:plc:')) throw new InvalidRequestError('Only did:plc identities have PLC operations')
      const body = lexToJson((input?.body ?? {}) as never) as Input
      if (!body.token) throw new InvalidRequestError('email confirmation token required to sign PLC operations')
      await ctx.settings.assertValidEmailToken(did, 'plc_operation', body.token)
      const changes: Partial<UnsignedPlcOperation> = {}
      if (body.rotationKeys) changes.rotationKeys = body.rotationKeys
      if (body.alsoKnownAs) changes.alsoKnownAs = body.alsoKnownAs
      if (body.verificationMethods) changes.verificationMethods = body.verificationMethods
      if (body.services) changes.services = body.services
      const last = await lastPlcOperation(ctx, did)
      const operation = await nextPlcOperation(ctx, last, changes)
      await ctx.settings.consumeEmailToken(did, 'plc_operation', body.token)
      return { encoding: 'application/json', body: { operation } }
    },
  })
}
