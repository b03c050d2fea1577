import type { XrpcServer } from '@stratos/core/xrpc'
import { AuthScope } from '../../../../account/tokens.js'
import { getPreferences } from '../../../../actor-store/preferences.js'
import { ACCESS_STANDARD, assertRpc } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/** Preferences an ordinary app-password session neither sees nor sets. */
export const PRIVILEGED_PREFERENCES = new Set(['app.bsky.actor.defs#personalDetailsPref'])

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('app.bsky.actor.getPreferences', {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true }),
    handler: async ({ auth }) => {
      const { did, scope } = auth.credentials
      // served here, but an AppView method: OAuth tokens need its rpc permission, as when proxied
      assertRpc(auth.credentials, `${ctx.cfg.bskyAppView?.did ?? ctx.cfg.service.did}#bsky_appview`, 'app.bsky.actor.getPreferences')
      const repo = ctx.actorStore.get(did)
      if (!repo) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      let preferences = getPreferences(repo, 'app.bsky')
      if (scope === AuthScope.AppPass) preferences = preferences.filter((p) => !PRIVILEGED_PREFERENCES.has(p.$type))
      return { encoding: 'application/json', body: { preferences } }
    },
  })
}
