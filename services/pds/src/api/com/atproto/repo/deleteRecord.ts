import type { PlainMethodHandler, XrpcServer } from '@stratos/core/xrpc'
import { prepareDelete } from '../../../../actor-store/index.js'
import { ACCESS_STANDARD, assertRepoWrite, type AccessCredentials } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { repoWriteLimits, WRITE_POINTS } from '../../../../rate-limits.js'
import { InvalidRequestError } from '../../../../errors.js'
import { ownRepo, parseCid } from '../../../../repo/access.js'

interface Input {
  repo: string
  collection: string
  rkey: string
  swapRecord?: string
  swapCommit?: string
}

export default function (server: XrpcServer, ctx: AppContext) {
  // answered ahead of fastify where the server can (it uses nothing of the HTTP request but its input)
  const handler: PlainMethodHandler<AccessCredentials> = async ({ auth, input }) => {
    const body = input!.body as Input
    assertRepoWrite(auth.credentials, body.collection, 'delete')
    const { account, repo } = await ownRepo(ctx, body.repo, auth.credentials)
    const swapCommit = parseCid(body.swapCommit, 'swapCommit')
    const swapCid = parseCid(body.swapRecord, 'swapRecord')
    const write = prepareDelete({ did: account.did, collection: body.collection, rkey: body.rkey, swapCid })
    if (!repo.getRecordRow(body.collection, body.rkey)) {
      // deleting what is not there is a no-op, unless the caller expected something to be there
      if (swapCid) throw new InvalidRequestError('Record was at null', 'InvalidSwap')
      return { encoding: 'application/json', body: {} }
    }
    const { outcome } = await ctx.repoWriter.write(account.did, [write], swapCommit)
    return {
      encoding: 'application/json',
      plainJson: true,
      body: { commit: { cid: outcome.commit.cid.toString(), rev: outcome.commit.rev } },
    }
  }
  server.method('com.atproto.repo.deleteRecord', {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true, checkDeactivated: true }),
    rateLimit: repoWriteLimits(() => WRITE_POINTS.delete),
    handler,
    fastProcedure: handler,
    // the write budget is keyed by the account (auth) and charged by the input only
    fastProcedureLimits: true,
  })
}
