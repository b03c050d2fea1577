// Child process of bench/pds.ts: an in-memory did:plc directory (@did-plc/server, a dev dependency of bench/
// only) for both PDSes. argv: <port>. Prints {"ready":true} when listening.
import { Database, PlcServer } from '@did-plc/server'

const server = PlcServer.create({ db: Database.mock(), port: Number(process.argv[2]) })
await server.start()
process.stdout.write(JSON.stringify({ ready: true }) + '\n')
process.on('SIGTERM', () => process.exit(0))
