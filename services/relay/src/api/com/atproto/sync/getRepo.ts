import type { RelayContext } from '../../../../context.js'
import { hostBaseUrl } from '../../../../hosts/hostname.js'
import { IdentityLookupError } from '../../../../ingest/identities.js'
import { InvalidRequestError, UpstreamFailureError } from '@stratos/core/xrpc'
import { servableAccount } from '../../../util.js'

/** com.atproto.sync.getRepo: the relay keeps no repos; it redirects (302) to the account's PDS. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.atproto.sync.getRepo', {
    handler: async ({ params, reply }) => {
      const did = params.did as string
      const a = servableAccount(ctx, did)
      let base: string | undefined
      const host = a.hostId !== null ? ctx.hosts.getById(a.hostId) : undefined
      if (host) {
        base = hostBaseUrl(host.hostname, host.ssl)
      } else {
        try {
          base = (await ctx.identities.resolve(did)).pdsEndpoint
        } catch (err) {
          if (err instanceof IdentityLookupError) throw new UpstreamFailureError(err.message)
          throw err
        }
      }
      if (!base) throw new InvalidRequestError(`No PDS known for ${did}`, 'RepoNotFound')
      const url = new URL('/xrpc/com.atproto.sync.getRepo', base)
      url.searchParams.set('did', did)
      if (typeof params.since === 'string') url.searchParams.set('since', params.since)
      reply.redirect(url.toString(), 302)
    },
  })
}
