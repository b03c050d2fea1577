export { RelayServer } from './server.js'
export { RelayContext, type RelayContextOptions } from './context.js'
export {
  readConfig,
  ConfigError,
  packageVersion,
  DEFAULT_PORT,
  DEFAULT_HOST,
  DEFAULT_HOST_LIMITS,
  DEFAULT_TRUSTED_HOST_LIMITS,
  type RelayConfig,
  type HostLimits,
  type LogLevel,
} from './config.js'
export { parseHostname, endpointHostname, matchesDomain, InvalidHostnameError, type ParsedHost } from './hosts/hostname.js'
export { HostRateLimiter, effectiveLimits } from './hosts/limits.js'
export { HOST_STATUSES, type Host, type HostStatus } from './hosts/host-store.js'
export { accountStatus, type Account } from './accounts/account-store.js'
export { eventDid, type UpstreamEvent } from './ingest/ingester.js'
