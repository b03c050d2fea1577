import { lexToJson } from '@stratos/core/data'
import type { XrpcServer } from '@stratos/core/xrpc'
import { submitPlcOperation } from '../../../../account/lifecycle.js'
import type { SignedPlcOperation } from '../../../../account/plc.js'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/**
 * Submits a signed PLC operation for the account's DID, after checking it keeps the account working
 * here: this PDS's rotation key, its endpoint as atproto_pds, the account's signing key and handle. The
 * PLC directory checks the signature and `prev`. Emits #identity.
 */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.identity.submitPlcOperation', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth, input }) => {
      const { did } = auth.credentials
      if (!did.startsWith('did:plc:')) throw new InvalidRequestError('Only did:plc identities have PLC operations')
      const op = lexToJson((input!.body as { operation: unknown }).operation as never) as SignedPlcOperation
      if (!op || typeof op !== 'object' || op.type !== 'plc_operation') {
        throw new InvalidRequestError('operation must be a signed plc_operation')
      }
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found')
      if (!Array.isArray(op.rotationKeys) || !op.rotationKeys.includes(ctx.plcRotationKey.did())) {
        throw new InvalidRequestError("Rotation keys do not include server's rotation key")
      }
      const pds = op.services?.atproto_pds
      if (!pds) throw new InvalidRequestError('Missing atproto_pds service')
      if (pds.type !== 'AtprotoPersonalDataServer') throw new InvalidRequestError('Incorrect type on atproto_pds service')
      if (pds.endpoint !== ctx.cfg.service.publicUrl) throw new InvalidRequestError('Incorrect endpoint on atproto_pds service')
      const signingKey = await ctx.repoWriter.signingKey(did)
      if (op.verificationMethods?.atproto !== signingKey.did()) throw new InvalidRequestError('Incorrect signing key')
      if (account.handle && !op.alsoKnownAs?.includes(`at://${account.handle}`)) {
        throw new InvalidRequestError('Incorrect handle in alsoKnownAs')
      }
      await submitPlcOperation(ctx, did, op)
      ctx.sequencer.sequenceIdentity(did, account.handle ?? undefined)
      await ctx.sequencer.durable()
    },
  })
}
