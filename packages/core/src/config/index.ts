/** What every service's config.ts shares: the error it throws, the log levels, its package version. */
import { readFileSync } from 'node:fs'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** A bad environment: the message names every offending variable. Start-up fails with it. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** The `version` of the package.json at `packageJsonUrl` (e.g. `new URL('../package.json', import.meta.url)`). */
export function readPackageVersion(packageJsonUrl: URL): string {
  try {
    const pkg = JSON.parse(readFileSync(packageJsonUrl, 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0'
  } catch {
    return '0.0.0'
  }
}
