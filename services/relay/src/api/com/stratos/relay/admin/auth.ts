import { MethodNotImplementedError, adminBasicAuth, type AuthVerifier } from '@stratos/core/xrpc'
import type { RelayContext } from '../../../../../context.js'

/** HTTP Basic `admin:<RELAY_ADMIN_PASSWORD>`; without a password the admin API is off (501). */
export function adminAuth(ctx: RelayContext): AuthVerifier {
  const password = ctx.config.adminPassword
  if (password) return adminBasicAuth(password)
  return async () => {
    throw new MethodNotImplementedError('the admin API is disabled: set RELAY_ADMIN_PASSWORD')
  }
}
