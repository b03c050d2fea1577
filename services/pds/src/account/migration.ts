import { AuthError, JtiReplayCache, verifyServiceJwt } from '@stratos/core/auth'
import type { SigningKeypair } from '@stratos/core/crypto'
import { parseAuthorization, type AuthRequest } from '@stratos/core/xrpc'
import type { AppContext } from '../context.js'
import { AuthRequiredError, InvalidRequestError, UpstreamFailureError } from '../errors.js'
import { lastPlcOperation, plcOpCid } from './lifecycle.js'
import { plcOpSignedByOneOf, type SignedPlcOperation } from './plc.js'

/**
 * Account portability: what this PDS checks when an account moves here from another PDS.
 *
 * - createAccount with an existing `did` must prove control of that DID. Either a service-auth JWT
 *   (iss = the DID, aud = this PDS's service DID, lxm = com.atproto.server.createAccount) signed with
 *   the DID's current #atproto key, as the reference PDS asks (the old PDS mints it with getServiceAuth,
 *   or the owner signs it with a key they put in their DID document themselves), or a signed PLC
 *   operation (`plcOp`) that this PDS submits itself: it must follow the DID's current operation, be
 *   signed by one of its rotation keys, and point the DID at this PDS with the key reserved here for
 *   it (reserveSigningKey). A DID document that already points here is NOT proof on its own: the PLC
 *   log is public, anyone could race its owner to createAccount once the operation is published.
 * - activateAccount requires the DID document to point here: this PDS's endpoint as atproto_pds, the
 *   account's key as #atproto, and (did:plc) this PDS's rotation key among the rotation keys.
 */

export const CREATE_ACCOUNT_LXM = 'com.atproto.server.createAccount'

/** Service-auth tokens presented to createAccount are single use. */
const replayCache = new JtiReplayCache()

/**
 * The DID a createAccount request's service-auth JWT speaks for, or null without a Bearer token.
 * Throws 401 (the token's error name) for a token that does not verify.
 */
export async function verifyCreateAccountAuth(ctx: AppContext, req: AuthRequest): Promise<string | null> {
  const token = parseAuthorization(req, 'Bearer')
  if (!token) return null
  try {
    const payload = await verifyServiceJwt(token, {
      audience: ctx.cfg.service.did,
      lxm: CREATE_ACCOUNT_LXM,
      getSigningKey: (iss, forceRefresh) => ctx.idResolver.getSigningKey(iss, forceRefresh),
      replayCache,
    })
    return payload.iss
  } catch (err) {
    if (err instanceof AuthError) throw new AuthRequiredError(err.message, err.error)
    throw err
  }
}

/**
 * Checks a `plcOp` brought to createAccount for `did` (see above) and returns it ready to submit.
 * Throws IncompatibleDidDoc when it would not make the DID work here, InvalidRequest otherwise.
 */
export async function checkMigrationPlcOp(
  ctx: AppContext,
  did: string,
  rawOp: unknown,
  opts: { handle: string; signingKey: SigningKeypair | null },
): Promise<SignedPlcOperation> {
  if (!did.startsWith('did:plc:')) throw new InvalidRequestError('plcOp is only for did:plc identities')
  const op = rawOp as SignedPlcOperation
  if (!op || typeof op !== 'object' || op.type !== 'plc_operation' || typeof op.sig !== 'string') {
    throw new InvalidRequestError('plcOp must be a signed plc_operation', 'IncompatibleDidDoc')
  }
  const incompatible = (msg: string) => new InvalidRequestError(msg, 'IncompatibleDidDoc')
  if (!Array.isArray(op.rotationKeys) || op.rotationKeys.length === 0 || !op.verificationMethods || !op.services) {
    throw incompatible('plcOp lacks rotationKeys, verificationMethods or services')
  }
  if (!opts.signingKey) {
    throw incompatible('No signing key is reserved here for this DID: call com.atproto.server.reserveSigningKey with the did first')
  }
  if (op.verificationMethods.atproto !== opts.signingKey.did()) {
    throw incompatible('plcOp verificationMethods.atproto must be the signing key reserved here for this DID')
  }
  const pds = op.services.atproto_pds
  if (!pds || pds.type !== 'AtprotoPersonalDataServer' || pds.endpoint !== ctx.cfg.service.publicUrl) {
    throw incompatible(`plcOp services.atproto_pds must be ${ctx.cfg.service.publicUrl}`)
  }
  if (!Array.isArray(op.alsoKnownAs) || !op.alsoKnownAs.includes(`at://${opts.handle}`)) {
    throw incompatible(`plcOp alsoKnownAs must include at://${opts.handle}`)
  }
  const last = await lastPlcOperation(ctx, did)
  if (op.prev !== plcOpCid(last)) {
    throw incompatible("plcOp must follow the DID's current operation (prev = its CID, from the PLC directory's /log/last)")
  }
  if (!plcOpSignedByOneOf(op, last.rotationKeys)) {
    throw incompatible("plcOp is not signed by any of the DID's current rotation keys")
  }
  return op
}

export interface DidDocCheck {
  ok: boolean
  /** why not, when not ok */
  message?: string
}

/**
 * Whether the account's DID document points at this PDS: atproto_pds = this PDS's public URL, #atproto
 * = the account's signing key, and for did:plc this PDS's rotation key among the rotation keys (so it
 * can keep the handle up to date). Read fresh from the PLC directory / the did:web host.
 */
export async function checkDidDocForService(ctx: AppContext, did: string, signingKey: string): Promise<DidDocCheck> {
  let pdsEndpoint: string | undefined
  let docKey: string | undefined
  let rotationKeys: string[] | undefined
  try {
    if (did.startsWith('did:plc:')) {
      const last = await lastPlcOperation(ctx, did)
      pdsEndpoint = last.services?.atproto_pds?.endpoint
      docKey = last.verificationMethods?.atproto
      rotationKeys = last.rotationKeys
    } else {
      const data = await ctx.idResolver.resolveAtprotoData(did, { forceRefresh: true })
      pdsEndpoint = data.pdsEndpoint
      docKey = data.signingKey
    }
  } catch (err) {
    if (err instanceof UpstreamFailureError) throw err
    return { ok: false, message: `Could not resolve the DID document: ${(err as Error).message}` }
  }
  if (rotationKeys !== undefined && !rotationKeys.includes(ctx.plcRotationKey.did())) {
    return { ok: false, message: 'Server rotation key not included in PLC DID data' }
  }
  if (!pdsEndpoint || pdsEndpoint.replace(/\/+$/, '') !== ctx.cfg.service.publicUrl) {
    return { ok: false, message: 'DID document atproto_pds service endpoint does not match PDS public url' }
  }
  if (docKey !== signingKey) {
    return { ok: false, message: 'DID document verification method does not match expected signing key' }
  }
  return { ok: true }
}

/**
 * Keys an imported repo's commit may be signed with: the DID document's current #atproto key, every
 * #atproto key in the DID's PLC history (nullified operations left out; the repo was signed on the old
 * PDS, and the DID may already point here), and the key this PDS holds for the account (re-importing
 * an export of this PDS). Newest first, without duplicates.
 */
export async function importSigningKeyCandidates(ctx: AppContext, did: string, accountKey: string): Promise<string[]> {
  const keys: string[] = []
  const add = (k: string | undefined) => {
    if (k && k.startsWith('did:key:') && !keys.includes(k)) keys.push(k)
  }
  try {
    add((await ctx.idResolver.resolveAtprotoData(did, { forceRefresh: true })).signingKey)
  } catch (err) {
    ctx.logger.warn({ err, did }, 'could not resolve the DID for an import')
  }
  if (did.startsWith('did:plc:')) {
    try {
      const log = (await ctx.plc.getLog(did)) ?? []
      for (const op of [...log].reverse()) {
        if (op.type === 'plc_operation') add((op as SignedPlcOperation).verificationMethods?.atproto)
        else if (op.type === 'create') add((op as { signingKey?: string }).signingKey)
      }
    } catch (err) {
      ctx.logger.warn({ err, did }, 'could not read the PLC log for an import')
    }
  }
  add(accountKey)
  return keys
}
