import type { PlainMethodHandler, XrpcServer } from '@stratos/core/xrpc'
import { prepareCreateOrUpdate, prepareDelete, type PreparedWrite } from '../../../../actor-store/index.js'
import { ACCESS_STANDARD, assertRepoWrite, type AccessCredentials } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { repoWriteLimits, WRITE_POINTS } from '../../../../rate-limits.js'
import { ownRepo, parseCid } from '../../../../repo/access.js'
import { recordWriteOutput } from '../../../../repo/writer.js'

interface Input {
  repo: string
  collection: string
  rkey?: string
  validate?: boolean
  record: unknown
  swapCommit?: string
}

export default function (server: XrpcServer, ctx: AppContext) {
  // answered ahead of fastify where the server can (it uses nothing of the HTTP request but its input)
  const handler: PlainMethodHandler<AccessCredentials> = async ({ auth, input }) => {
    const body = input!.body as Input
    assertRepoWrite(auth.credentials, body.collection, 'create')
    const { account, repo } = await ownRepo(ctx, body.repo, auth.credentials)
    const swapCommit = parseCid(body.swapCommit, 'swapCommit')
    const write = prepareCreateOrUpdate({
      action: 'create',
      did: account.did,
      collection: body.collection,
      rkey: body.rkey,
      record: body.record,
      validate: body.validate,
    })
    // a second like / repost / follow / block of the same subject replaces the earlier one
    const writes: PreparedWrite[] = []
    if (body.validate !== false) {
      for (const uri of repo.backlinkConflicts(write.collection, write.backlinks)) {
        const [, collection, rkey] = uri.slice('at://'.length).split('/')
        writes.push(prepareDelete({ did: account.did, collection: collection!, rkey: rkey! }))
      }
    }
    writes.push(write)
    const { outcome } = await ctx.repoWriter.write(account.did, writes, swapCommit)
    return recordWriteOutput(write, outcome)
  }
  server.method('com.atproto.repo.createRecord', {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true, checkDeactivated: true }),
    rateLimit: repoWriteLimits(() => WRITE_POINTS.create),
    handler,
    fastProcedure: handler,
    // the write budget is keyed by the account (auth) and charged by the input only
    fastProcedureLimits: true,
  })
}
