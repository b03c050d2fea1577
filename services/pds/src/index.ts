export { PdsServer, type PdsServerOptions } from './server.js'
export { readConfigFromEnv, ConfigError, type PdsConfig } from './config.js'
export type { AppContext } from './context.js'
export { AuthScope } from './account/tokens.js'
