import type { PlainMethodHandler, XrpcServer } from '@stratos/core/xrpc'
import { prepareCreateOrUpdate, prepareDelete, type PreparedWrite } from '../../../../actor-store/index.js'
import { ACCESS_STANDARD, assertRepoWrite, type AccessCredentials } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { repoWriteLimits, WRITE_POINTS } from '../../../../rate-limits.js'
import { InvalidRequestError } from '../../../../errors.js'
import { ownRepo, parseCid } from '../../../../repo/access.js'

const MAX_WRITES = 200
const NS = 'com.atproto.repo.applyWrites'

interface WriteInput {
  $type: string
  collection: string
  rkey?: string
  value?: unknown
}

interface Input {
  repo: string
  validate?: boolean
  writes: WriteInput[]
  swapCommit?: string
}

export default function (server: XrpcServer, ctx: AppContext) {
  // answered ahead of fastify where the server can (it uses nothing of the HTTP request but its input)
  const handler: PlainMethodHandler<AccessCredentials> = async ({ auth, input }) => {
    const body = input!.body as Input
    if (body.writes.length > MAX_WRITES) throw new InvalidRequestError(`Too many writes. Max: ${MAX_WRITES}`)
    for (const w of body.writes) {
      const action = w.$type === `${NS}#create` ? 'create' : w.$type === `${NS}#update` ? 'update' : w.$type === `${NS}#delete` ? 'delete' : null
      if (action) assertRepoWrite(auth.credentials, w.collection, action)
    }
    const { account } = await ownRepo(ctx, body.repo, auth.credentials)
    const swapCommit = parseCid(body.swapCommit, 'swapCommit')
    const writes: PreparedWrite[] = body.writes.map((w) => {
      switch (w.$type) {
        case `${NS}#create`:
        case `${NS}#update`: {
          const action = w.$type === `${NS}#create` ? 'create' : 'update'
          if (action === 'update' && !w.rkey) throw new InvalidRequestError('An update needs an rkey')
          return prepareCreateOrUpdate({
            action,
            did: account.did,
            collection: w.collection,
            rkey: w.rkey,
            record: w.value,
            validate: body.validate,
          })
        }
        case `${NS}#delete`:
          if (!w.rkey) throw new InvalidRequestError('A delete needs an rkey')
          return prepareDelete({ did: account.did, collection: w.collection, rkey: w.rkey })
        default:
          throw new InvalidRequestError(`Action not supported: ${w.$type}`)
      }
    })
    const { outcome } = await ctx.repoWriter.write(account.did, writes, swapCommit)
    const results = writes.map((w) =>
      w.action === 'delete'
        ? { $type: `${NS}#deleteResult` }
        : {
            $type: w.action === 'create' ? `${NS}#createResult` : `${NS}#updateResult`,
            uri: w.uri,
            cid: w.cid.toString(),
            validationStatus: w.validationStatus,
          },
    )
    return {
      encoding: 'application/json',
      plainJson: true,
      body: { commit: { cid: outcome.commit.cid.toString(), rev: outcome.commit.rev }, results },
    }
  }
  server.method(NS, {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true, checkDeactivated: true }),
    rateLimit: repoWriteLimits(({ input }) =>
      ((input?.body as Input | undefined)?.writes ?? []).reduce((sum, w) => {
        if (w.$type === `${NS}#create`) return sum + WRITE_POINTS.create
        if (w.$type === `${NS}#update`) return sum + WRITE_POINTS.update
        return sum + WRITE_POINTS.delete
      }, 0),
    ),
    handler,
    fastProcedure: handler,
    // the write budget is keyed by the account (auth) and charged by the input only
    fastProcedureLimits: true,
  })
}
