import { lexToJson } from '@stratos/core/data'
import type { XrpcServer } from '@stratos/core/xrpc'
import { AuthScope } from '../../../../account/tokens.js'
import { getPreferences, putPreferences, type Preference } from '../../../../actor-store/preferences.js'
import { ACCESS_STANDARD, assertRpc } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { PRIVILEGED_PREFERENCES } from './getPreferences.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('app.bsky.actor.putPreferences', {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true }),
    handler: async ({ auth, input }) => {
      const { did, scope } = auth.credentials
      // served here, but an AppView method: OAuth tokens need its rpc permission, as when proxied
      assertRpc(auth.credentials, `${ctx.cfg.bskyAppView?.did ?? ctx.cfg.service.did}#bsky_appview`, 'app.bsky.actor.putPreferences')
      // the body was validated against the lexicon (known preference types in full) by the server
      const raw = (input!.body as { preferences: unknown[] }).preferences
      const prefs = raw.map((p) => lexToJson(p as never) as Preference)
      for (const pref of prefs) {
        if (!pref || typeof pref !== 'object' || typeof pref.$type !== 'string') {
          throw new InvalidRequestError('Preference is missing a $type')
        }
        if (!pref.$type.startsWith('app.bsky.')) {
          throw new InvalidRequestError(`Some preferences are not in the app.bsky namespace: ${pref.$type}`)
        }
      }
      const repo = ctx.actorStore.get(did)
      if (!repo) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      let toStore = prefs
      if (scope === AuthScope.AppPass) {
        if (prefs.some((p) => PRIVILEGED_PREFERENCES.has(p.$type))) {
          throw new InvalidRequestError('Do not have authorization to set preferences.')
        }
        // what this session cannot see, it keeps as it was
        toStore = [...prefs, ...getPreferences(repo, 'app.bsky').filter((p) => PRIVILEGED_PREFERENCES.has(p.$type))]
      }
      putPreferences(repo, 'app.bsky', toStore)
    },
  })
}
