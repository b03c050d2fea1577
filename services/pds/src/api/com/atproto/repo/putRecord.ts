import type { PlainMethodHandler, XrpcServer } from '@stratos/core/xrpc'
import { prepareCreateOrUpdate } from '../../../../actor-store/index.js'
import { ACCESS_STANDARD, assertRepoWrite, type AccessCredentials } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { repoWriteLimits, WRITE_POINTS } from '../../../../rate-limits.js'
import { ownRepo, parseCid } from '../../../../repo/access.js'
import { recordWriteOutput } from '../../../../repo/writer.js'

interface Input {
  repo: string
  collection: string
  rkey: string
  validate?: boolean
  record: unknown
  swapRecord?: string | null
  swapCommit?: string
}

export default function (server: XrpcServer, ctx: AppContext) {
  // answered ahead of fastify where the server can (it uses nothing of the HTTP request but its input)
  const handler: PlainMethodHandler<AccessCredentials> = async ({ auth, input }) => {
    const body = input!.body as Input
    const { account, repo } = await ownRepo(ctx, body.repo, auth.credentials)
    const swapCommit = parseCid(body.swapCommit, 'swapCommit')
    // swapRecord: absent → no check; null → the record must not exist yet; a CID → it must be at that CID
    const swapCid = body.swapRecord === null ? null : parseCid(body.swapRecord, 'swapRecord')
    const current = repo.getRecordRow(body.collection, body.rkey)
    assertRepoWrite(auth.credentials, body.collection, current ? 'update' : 'create')
    const write = prepareCreateOrUpdate({
      action: current ? 'update' : 'create',
      did: account.did,
      collection: body.collection,
      rkey: body.rkey,
      record: body.record,
      validate: body.validate,
      swapCid,
    })
    if (current && current.cid === write.cid.toString() && swapCid === undefined && !swapCommit) {
      // same content: nothing to commit
      return {
        encoding: 'application/json',
        body: { uri: write.uri, cid: write.cid.toString(), validationStatus: write.validationStatus },
      }
    }
    const { outcome } = await ctx.repoWriter.write(account.did, [write], swapCommit)
    return recordWriteOutput(write, outcome)
  }
  server.method('com.atproto.repo.putRecord', {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true, checkDeactivated: true }),
    rateLimit: repoWriteLimits(() => WRITE_POINTS.update),
    handler,
    fastProcedure: handler,
    // the write budget is keyed by the account (auth) and charged by the input only
    fastProcedureLimits: true,
  })
}
