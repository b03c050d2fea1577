import type { XrpcServer } from '@stratos/core/xrpc'
import { generateKeypair, parseDidKey } from '@stratos/core/crypto'
import { ensureServiceHandleConstraints, normalizeAndValidateHandle } from '../../../../account/handle.js'
import { MAX_PASSWORD_LENGTH } from '../../../../account/password.js'
import { createGenesisOp, PlcClientError } from '../../../../account/plc.js'
import type { AppContext } from '../../../../context.js'
import { createAccountLimits } from '../../../../rate-limits.js'
import { InvalidRequestError, UpstreamFailureError } from '../../../../errors.js'
import { didDocForOp } from '../../../../account/views.js'

interface Input {
  email?: string
  handle: string
  did?: string
  inviteCode?: string
  password?: string
  recoveryKey?: string
  plcOp?: unknown
}

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.createAccount', {
    rateLimit: createAccountLimits,
    handler: async ({ input }) => {
      const body = input!.body as Input
      const { cfg, accounts } = ctx
      if (body.did || body.plcOp) {
        throw new InvalidRequestError('Creating an account for an existing DID (migration) is not supported yet')
      }
      if (!body.email) throw new InvalidRequestError('Email is required')
      if (!EMAIL_RE.test(body.email)) {
        throw new InvalidRequestError('This email address is not supported, please use a different email.')
      }
      if (!body.password) throw new InvalidRequestError('Password is required')
      if (body.password.length > MAX_PASSWORD_LENGTH) {
        throw new InvalidRequestError(`Password too long. Maximum length is ${MAX_PASSWORD_LENGTH} characters.`, 'InvalidPassword')
      }
      const handle = normalizeAndValidateHandle(body.handle, { devMode: cfg.service.devMode })
      ensureServiceHandleConstraints(handle, cfg.identity.serviceHandleDomains)
      if (await accounts.isHandleTaken(handle)) {
        throw new InvalidRequestError(`Handle already taken: ${handle}`, 'HandleNotAvailable')
      }
      if (await accounts.isEmailTaken(body.email)) {
        throw new InvalidRequestError(`Email already taken: ${body.email}`)
      }
      if (cfg.invites.required) {
        if (!body.inviteCode) throw new InvalidRequestError('No invite code provided', 'InvalidInviteCode')
        await accounts.ensureInviteAvailable(body.inviteCode)
      }
      const rotationKeys = [ctx.plcRotationKey.did()]
      if (cfg.identity.recoveryDidKey) rotationKeys.unshift(cfg.identity.recoveryDidKey)
      if (body.recoveryKey) {
        try {
          const parsed = parseDidKey(body.recoveryKey)
          if (parsed.curve !== 'k256' && parsed.curve !== 'p256') throw new Error('unsupported curve')
        } catch {
          throw new InvalidRequestError('recoveryKey must be a did:key of a k256 or p256 key')
        }
        // the user's own key sits above the PDS's: it can override what the PDS signs
        if (!rotationKeys.includes(body.recoveryKey)) rotationKeys.unshift(body.recoveryKey)
      }

      const signingKey = await generateKeypair('k256')
      const { did, op } = await createGenesisOp(
        { rotationKeys, signingKey: signingKey.did(), handle, pdsEndpoint: cfg.service.publicUrl },
        ctx.plcRotationKey,
      )

      const repo = ctx.actorStore.create(did)
      let commit
      try {
        commit = await repo.createEmptyRepo(signingKey)
        try {
          await ctx.plc.submit(did, op)
        } catch (err) {
          ctx.logger.error({ err, did }, 'PLC directory refused the genesis operation')
          const status = err instanceof PlcClientError ? ` (${err.status})` : ''
          throw new UpstreamFailureError(`Could not register the DID with the PLC directory${status}`)
        }
        await accounts.createAccount({
          did,
          handle,
          email: body.email,
          password: body.password,
          signingKey,
          repoCid: commit.cid.toString(),
          repoRev: commit.rev,
          inviteCode: cfg.invites.required ? body.inviteCode : undefined,
        })
      } catch (err) {
        await ctx.actorStore.destroy(did)
        throw err
      }

      // a new account announces itself: identity, account status, then its first commit
      ctx.sequencer.sequenceIdentity(did, handle)
      ctx.sequencer.sequenceAccount(did, true)
      ctx.sequencer.sequenceCommit({ did, commit, prevData: null, ops: [] })

      const session = await accounts.createSession(did, null)
      return {
        encoding: 'application/json',
        body: { handle, did, didDoc: didDocForOp(did, op), ...session },
      }
    },
  })
}
