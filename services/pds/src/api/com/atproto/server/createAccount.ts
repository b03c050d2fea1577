import type { FastifyRequest } from 'fastify'
import type { XrpcServer } from '@stratos/core/xrpc'
import { generateKeypair, parseDidKey, type SigningKeypair } from '@stratos/core/crypto'
import { isValidDid } from '@stratos/core/syntax'
import { ensureServiceHandleConstraints, normalizeAndValidateHandle, serviceDomainOf } from '../../../../account/handle.js'
import { checkMigrationPlcOp, verifyCreateAccountAuth } from '../../../../account/migration.js'
import { MAX_PASSWORD_LENGTH } from '../../../../account/password.js'
import { createGenesisOp, PlcClientError, type SignedPlcOperation } from '../../../../account/plc.js'
import type { AppContext } from '../../../../context.js'
import { repoCommitFromData } from '../../../../actor-store/commit.js'
import { createAccountLimits } from '../../../../rate-limits.js'
import { AuthRequiredError, InvalidRequestError, UpstreamFailureError } from '../../../../errors.js'
import { didDocForOp, didDocForSession } from '../../../../account/views.js'

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
    handler: async ({ input, req }) => {
      const body = input!.body as Input
      if (body.did) return createMigratedAccount(ctx, body, req)
      if (body.plcOp) throw new InvalidRequestError('Unsupported input: "plcOp" (it is only accepted with an existing "did")')
      const { cfg, accounts } = ctx
      const handle = await validateCommonInputs(ctx, body)
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
          email: body.email!,
          password: body.password!,
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
      const storeDurable = repo.durable()
      ctx.sequencer.sequenceCommit({ did, commit: repoCommitFromData(commit), prevData: null, ops: [] }, storeDurable)
      await Promise.all([storeDurable, ctx.sequencer.durable()])

      const session = await accounts.createSession(did, null)
      return {
        encoding: 'application/json',
        body: { handle, did, didDoc: didDocForOp(did, op), ...session },
      }
    },
  })
}

/** Email, password, handle (normalized and returned), invite code: the checks every sign-up passes. */
async function validateCommonInputs(ctx: AppContext, body: Input, opts: { did?: string } = {}): Promise<string> {
  const { cfg, accounts } = ctx
  if (!body.email) throw new InvalidRequestError('Email is required')
  if (!EMAIL_RE.test(body.email)) {
    throw new InvalidRequestError('This email address is not supported, please use a different email.')
  }
  if (!body.password) throw new InvalidRequestError('Password is required')
  if (body.password.length > MAX_PASSWORD_LENGTH) {
    throw new InvalidRequestError(`Password too long. Maximum length is ${MAX_PASSWORD_LENGTH} characters.`, 'InvalidPassword')
  }
  const handle = normalizeAndValidateHandle(body.handle, { devMode: cfg.service.devMode })
  if (opts.did && !serviceDomainOf(handle, cfg.identity.serviceHandleDomains)) {
    // an account moving here may keep a handle on its own domain, if that domain says it is this DID
    const resolved = await ctx.idResolver.resolveHandle(handle).catch(() => undefined)
    if (resolved !== opts.did) {
      throw new InvalidRequestError(`External handle did not resolve to DID: ${handle}`, 'InvalidHandle')
    }
  } else {
    ensureServiceHandleConstraints(handle, cfg.identity.serviceHandleDomains)
  }
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
  return handle
}

/**
 * createAccount with an existing DID: an account moving here from another PDS. The caller proves control
 * of the DID with a service-auth JWT signed by its current #atproto key, or with a signed PLC operation
 * pointing the DID here, which this PDS submits (see account/migration.ts). The account starts
 * deactivated with an empty repo (importRepo fills it), no PLC genesis is made and nothing is announced
 * until activateAccount. Its repo key is the one reserved for the DID (reserveSigningKey), else a new one.
 */
async function createMigratedAccount(ctx: AppContext, body: Input, req: FastifyRequest) {
  const did = body.did!
  if (!isValidDid(did)) throw new InvalidRequestError('did is not a valid DID')
  const requester = await verifyCreateAccountAuth(ctx, req)
  if (requester !== null && requester !== did) {
    throw new AuthRequiredError(`Missing auth to create account with did: ${did}`)
  }
  if (requester === null && !body.plcOp) {
    throw new AuthRequiredError(
      `Missing auth to create account with did: ${did} (send a service-auth JWT from the account, or a signed plcOp)`,
    )
  }
  const handle = await validateCommonInputs(ctx, body, { did })
  if (await ctx.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })) {
    throw new InvalidRequestError(`An account with this DID already exists here: ${did}`, 'AlreadyExists')
  }
  const reserved = await ctx.settings.getReservedSigningKey(did)
  let plcOp: SignedPlcOperation | null = null
  if (body.plcOp) plcOp = await checkMigrationPlcOp(ctx, did, body.plcOp, { handle, signingKey: reserved })
  const signingKey = reserved ?? (await generateKeypair('k256'))

  if (migrationsInProgress.has(did)) throw new InvalidRequestError(`An account for ${did} is being created`, 'AlreadyExists')
  migrationsInProgress.add(did)
  try {
    // a store left behind by an attempt that stopped half way (the process ended; no account row)
    if (ctx.actorStore.exists(did)) await ctx.actorStore.destroy(did)
    return await createMigratedAccountLocked(ctx, body, { did, handle, plcOp, reserved, signingKey })
  } finally {
    migrationsInProgress.delete(did)
  }
}

/** DIDs whose createAccount is under way in this process. */
const migrationsInProgress = new Set<string>()

async function createMigratedAccountLocked(
  ctx: AppContext,
  body: Input,
  opts: { did: string; handle: string; plcOp: SignedPlcOperation | null; reserved: SigningKeypair | null; signingKey: SigningKeypair },
) {
  const { did, handle, plcOp, reserved, signingKey } = opts
  const repo = ctx.actorStore.create(did)
  try {
    const commit = await repo.createEmptyRepo(signingKey)
    if (plcOp) {
      try {
        await ctx.plc.submit(did, plcOp)
      } catch (err) {
        if (err instanceof PlcClientError && err.status >= 400 && err.status < 500) {
          throw new InvalidRequestError(err.message, 'IncompatibleDidDoc')
        }
        ctx.logger.error({ err, did }, 'PLC directory did not take the migration operation')
        throw new UpstreamFailureError('Could not submit the operation to the PLC directory')
      }
      await ctx.idResolver.invalidate(did)
    }
    await ctx.accounts.createAccount({
      did,
      handle,
      email: body.email!,
      password: body.password!,
      signingKey,
      repoCid: commit.cid.toString(),
      repoRev: commit.rev,
      inviteCode: ctx.cfg.invites.required ? body.inviteCode : undefined,
      deactivated: true,
    })
  } catch (err) {
    await ctx.actorStore.destroy(did)
    throw err
  }
  if (reserved) await ctx.settings.clearReservedSigningKey(reserved.did())
  ctx.repoWriter.forget(did)

  // the DID document comes back only once it points here (see didDocForSession)
  const didDoc = await didDocForSession(ctx, did)
  const session = await ctx.accounts.createSession(did, null)
  const out: Record<string, unknown> = { handle, did, ...session }
  if (didDoc) out.didDoc = didDoc
  return { encoding: 'application/json', body: out }
}
