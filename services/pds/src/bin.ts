#!/usr/bin/env node
import { ConfigError, readConfigFromEnv } from './config.js'
import { PdsServer } from './server.js'

async function main() {
  // whatever the PDS writes (databases, blobs, keys) is readable by its own user only
  process.umask(0o077)
  let config
  try {
    config = readConfigFromEnv(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
  const pds = await PdsServer.create(config)
  await pds.start()
  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    pds.ctx.logger.info({ signal }, 'PDS shutting down')
    try {
      await pds.close()
      process.exit(0)
    } catch (err) {
      pds.ctx.logger.error({ err }, 'error during shutdown')
      process.exit(1)
    }
  }
  process.on('SIGINT', () => void stop('SIGINT'))
  process.on('SIGTERM', () => void stop('SIGTERM'))
}

main().catch((err) => {
  process.stderr.write(`PDS failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
