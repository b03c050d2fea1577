// Child process of bench/pds.ts: the reference PDS (@atproto/pds from the npm registry, a dev dependency of
// bench/ only), configured from the PDS_* environment the bench passes. Prints {"ready":true} when listening.
import { PDS, envToCfg, envToSecrets, readEnv } from '@atproto/pds'

const env = readEnv()
const pds = await PDS.create(envToCfg(env), envToSecrets(env))
await pds.start()
process.stdout.write(JSON.stringify({ ready: true }) + '\n')
const stop = async () => {
  await pds.destroy()
  process.exit(0)
}
process.on('SIGTERM', () => void stop())
process.on('SIGINT', () => void stop())
