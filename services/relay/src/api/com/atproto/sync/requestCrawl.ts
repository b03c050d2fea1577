import { ForbiddenError, adminBasicAuth, parseAuthorization } from '@stratos/core/xrpc'
import type { RelayContext } from '../../../../context.js'

/**
 * com.atproto.sync.requestCrawl: a host asks to be followed. Open to anyone unless RELAY_CRAWL_PUBLIC is
 * false; with admin credentials the daily cap on new hosts does not apply.
 */
export default function (ctx: RelayContext): void {
  const admin = ctx.config.adminPassword ? adminBasicAuth(ctx.config.adminPassword) : undefined
  ctx.xrpc.method('com.atproto.sync.requestCrawl', {
    handler: async ({ input, req, nsid }) => {
      let isAdmin = false
      if (admin && parseAuthorization(req, 'Basic')) {
        await admin({ req, nsid }) // wrong credentials: 401
        isAdmin = true
      }
      if (!ctx.config.crawlPublic && !isAdmin) {
        throw new ForbiddenError('this relay does not take public crawl requests; ask its operator')
      }
      const { hostname } = input!.body as { hostname: string }
      await ctx.hostManager.requestCrawl(hostname, { admin: isAdmin })
    },
  })
}
