/**
 * Child process of import.test.ts: a PDS (so its RSS is measured alone) and an attacker with an account
 * sending 8 importRepo bodies of 100 MiB at once, streamed (the attacker holds none of them in memory).
 * Prints one JSON line: statuses, RSS before and peak during the attack.
 */
import { AtpAgent } from '@atproto/api'
import { encodeCarHeader } from '@stratos/core/repo'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { randomBytes } from 'node:crypto'
import { startNetwork } from '../_network.js'

const net = await startNetwork()
const agent = new AtpAgent({ service: net.url })
await agent.createAccount({ handle: 'importer.test', email: 'importer@example.com', password: 'importer-password' })
const token = agent.session!.accessJwt

const SIZE = 99 * 1024 * 1024 // just under PDS_MAX_REPO_IMPORT_SIZE: read whole, to disk
function body(): ReadableStream<Uint8Array> {
  const root = CID.createV1(0x71, createDigest(0x12, randomBytes(32)))
  let sent = 0
  const chunk = randomBytes(256 * 1024)
  let first = true
  return new ReadableStream({
    pull(controller) {
      if (first) {
        first = false
        const header = encodeCarHeader(root)
        sent += header.length
        controller.enqueue(header)
        return
      }
      if (sent >= SIZE) return controller.close()
      sent += chunk.length
      controller.enqueue(chunk)
    },
  })
}

globalThis.gc?.()
await new Promise((r) => setTimeout(r, 200))
const before = process.memoryUsage().rss
let peak = before
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10)
const statuses = await Promise.all(
  Array.from({ length: 8 }, () =>
    fetch(`${net.url}/xrpc/com.atproto.repo.importRepo`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.ipld.car' },
      body: body(),
      duplex: 'half',
    } as RequestInit)
      .then(async (r) => ({ status: r.status, body: await r.text() }))
      .catch((err: Error) => ({ status: 0, body: err.message })),
  ),
)
clearInterval(sampler)
peak = Math.max(peak, process.memoryUsage().rss)
process.stdout.write(JSON.stringify({ statuses, before, peak }) + '\n')
await net.close()
process.exit(0)
