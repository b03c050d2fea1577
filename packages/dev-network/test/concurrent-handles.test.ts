/**
 * Accounts created concurrently on the dev network must all show their real handle in the AppView
 * (getProfile through the PDS proxy) once indexed, never stay `handle.invalid`. Under load a handle
 * check can fail transiently (the DID directory, DNS or the PDS's well-known slow or unreachable); the
 * AppView's handle resolution goes here through a proxy that fails the first lookup of every other
 * handle, as a busy PDS would, and the AppView must check those handles again.
 */
import http from 'node:http'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AtpAgent } from '@atproto/api'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePortBase, startDevNetwork, type DevNetwork } from '@stratos/dev-network'

const N = 20

describe('accounts created concurrently', () => {
  let dir: string
  let network: DevNetwork
  let proxy: http.Server
  const lookups = new Map<string, number>()

  beforeAll(async () => {
    // the AppView's well-known lookups: the first one of every other handle fails (503), later ones reach the PDS
    proxy = http.createServer((req, res) => {
      const host = (req.headers.host ?? '').toLowerCase()
      const n = (lookups.get(host) ?? 0) + 1
      lookups.set(host, n)
      const i = Number(/^ch(\d+)-/.exec(host)?.[1] ?? 0)
      if (n === 1 && i % 2 === 1) {
        res.writeHead(503).end('busy')
        return
      }
      const upstream = http.get(`${network.urls.pds}/.well-known/atproto-did`, { headers: { host } }, (r) => {
        res.writeHead(r.statusCode ?? 502, { 'content-type': 'text/plain' })
        r.pipe(res)
      })
      upstream.on('error', () => res.writeHead(502).end())
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-concurrent-handles-'))
    network = await startDevNetwork({
      dataDir: dir,
      portBase: await freePortBase(),
      logLevel: 'silent',
      env: { appview: { APPVIEW_HANDLE_RESOLVER_URL: proxyUrl } },
    })
  }, 60_000)

  afterAll(async () => {
    await network?.close()
    await new Promise((resolve) => proxy?.close(resolve))
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  it('all show their real handle once indexed', async () => {
    const tag = randomBytes(2).toString('hex')
    const users: { did: string; handle: string; agent: AtpAgent }[] = []
    for (let start = 0; start < N; start += 10) users.push(...await Promise.all(
      Array.from({ length: 10 }, async (_, k) => { const i = start + k
        const agent = new AtpAgent({ service: network.urls.pds })
        const handle = `ch${i}-${tag}.test`
        await agent.createAccount({ handle, email: `ch${i}-${tag}@example.com`, password: `pw-${i}` })
        return { did: agent.session!.did, handle, agent }
      }),
    ))
    // each writes a profile and a post right away, as a new user of an app does
    await Promise.all(
      users.map((u) =>
        u.agent.com.atproto.repo.applyWrites({
          repo: u.did,
          writes: [
            { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.actor.profile', rkey: 'self', value: { $type: 'app.bsky.actor.profile', displayName: u.handle } },
            { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: { $type: 'app.bsky.feed.post', text: 'hello', createdAt: new Date().toISOString() } },
          ],
        }),
      ),
    )
    const viewer = users[0]!.agent
    const seen = new Map<string, string>()
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      for (const u of users) {
        if (seen.has(u.did)) continue
        try {
          const res = await viewer.app.bsky.actor.getProfile({ actor: u.did })
          if (res.data.handle === u.handle) seen.set(u.did, res.data.handle)
        } catch {
          // not indexed yet
        }
      }
      if (seen.size === users.length) break
      await new Promise((r) => setTimeout(r, 200))
    }
    const shown = await Promise.all(
      users.map(async (u) => {
        const res = await viewer.app.bsky.actor.getProfile({ actor: u.did }).catch(() => null)
        return res?.data.handle ?? 'not indexed'
      }),
    )
    expect(shown).toEqual(users.map((u) => u.handle))
  }, 90_000)
})
