import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.describeServer', {
    handler: () => {
      const { cfg } = ctx
      const links: Record<string, string> = {}
      if (cfg.service.privacyPolicyUrl) links.privacyPolicy = cfg.service.privacyPolicyUrl
      if (cfg.service.termsOfServiceUrl) links.termsOfService = cfg.service.termsOfServiceUrl
      const body: Record<string, unknown> = {
        did: cfg.service.did,
        availableUserDomains: cfg.identity.serviceHandleDomains,
        inviteCodeRequired: cfg.invites.required,
        phoneVerificationRequired: false,
        links,
      }
      if (cfg.service.contactEmailAddress) body.contact = { email: cfg.service.contactEmailAddress }
      return { encoding: 'application/json', body }
    },
  })
}
