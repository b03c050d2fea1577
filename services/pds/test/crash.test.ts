/**
 * No acknowledged write is lost when the PDS process is killed (SIGKILL) in the middle of concurrent writes:
 * every createRecord that got a 200 is in the repo after a restart, and its commit is in the event log
 * (subscribeRepos replays it). Writes are acknowledged after the group commit of the sequencer.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PlcServer } from '@stratos/plc'
import { decodeFrame, SqliteEventLog } from '@stratos/core/stream'
import { freePort, testPdsEnv } from './_network.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

describe('SIGKILL during concurrent writes', () => {
  let plc: PlcServer
  let dir: string
  let child: ChildProcess | null = null
  let env: Record<string, string>
  let url: string

  async function startPds(): Promise<ChildProcess> {
    const c = spawn(
      process.execPath,
      ['--import', 'tsx', '--import', './packages/cli/dev/register.mjs', 'services/pds/src/bin.ts'],
      { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
    )
    let stderr = ''
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const deadline = Date.now() + 60_000
    for (;;) {
      if (c.exitCode !== null) throw new Error(`PDS exited (${c.exitCode}): ${stderr}`)
      if (Date.now() > deadline) throw new Error(`PDS did not start: ${stderr}`)
      try {
        if ((await fetch(`${url}/xrpc/com.atproto.server.describeServer`)).ok) return c
      } catch {
        /* not listening yet */
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  async function xrpc(method: 'GET' | 'POST', nsid: string, opts: { body?: unknown; jwt?: string; query?: string } = {}) {
    const res = await fetch(`${url}/xrpc/${nsid}${opts.query ? `?${opts.query}` : ''}`, {
      method,
      headers: {
        ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(opts.jwt ? { authorization: `Bearer ${opts.jwt}` } : {}),
      },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    })
    return { status: res.status, body: (await res.json()) as Record<string, any> }
  }

  beforeAll(async () => {
    plc = await PlcServer.create({ port: 0, host: '127.0.0.1', dbPath: ':memory:', version: 'test', logLevel: 'silent' })
    await plc.start()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-crash-'))
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    env = testPdsEnv({ plcUrl: plc.url, dir, port, extraEnv: { PDS_RATE_LIMITS_ENABLED: 'false' } })
  }, 30_000)

  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL')
    await plc?.close()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  it('keeps every acknowledged write of two accounts, in the repo and in the event log', async () => {
    child = await startPds()
    const accounts: { did: string; jwt: string }[] = []
    for (const name of ['alice', 'bob']) {
      const res = await xrpc('POST', 'com.atproto.server.createAccount', {
        body: { handle: `${name}.test`, email: `${name}@example.com`, password: 'password-1' },
      })
      expect(res.status).toBe(200)
      accounts.push({ did: res.body.did, jwt: res.body.accessJwt })
    }

    // 8 writers per account until the kill; acknowledged writes are remembered
    const acked: { did: string; uri: string; cid: string; commit: string }[] = []
    let killed = false
    const writer = async (acct: { did: string; jwt: string }, w: number) => {
      for (let i = 0; !killed; i++) {
        try {
          const res = await xrpc('POST', 'com.atproto.repo.createRecord', {
            jwt: acct.jwt,
            body: {
              repo: acct.did,
              collection: 'app.bsky.feed.post',
              record: { $type: 'app.bsky.feed.post', text: `writer ${w} post ${i}`, createdAt: new Date().toISOString() },
            },
          })
          if (res.status === 200) acked.push({ did: acct.did, uri: res.body.uri, cid: res.body.cid, commit: res.body.commit.cid })
        } catch {
          return // connection reset by the kill
        }
      }
    }
    const writers = accounts.flatMap((a) => Array.from({ length: 8 }, (_, w) => writer(a, w)))
    while (acked.length < 60) await new Promise((r) => setTimeout(r, 5))
    child.kill('SIGKILL')
    killed = true
    await Promise.all(writers)
    await new Promise<void>((resolve) => (child!.exitCode !== null || child!.signalCode ? resolve() : child!.once('exit', () => resolve())))
    const ackedAtKill = [...acked]
    expect(ackedAtKill.length).toBeGreaterThanOrEqual(60)

    // the event log on disk holds a #commit for every acknowledged commit
    const log = new SqliteEventLog(path.join(dir, 'sequencer.sqlite'))
    const commits = new Set<string>()
    for (const row of log.readRowsAfter(0, 100_000)) {
      if (row.type !== '#commit') continue
      const frame = decodeFrame(row.frame)
      if (frame.op === 1) commits.add(String((frame.body as { commit: unknown }).commit))
    }
    log.close()
    const missingEvents = ackedAtKill.filter((a) => !commits.has(a.commit))
    expect(missingEvents).toEqual([])

    // restarted on the same data: every acknowledged record reads back with its CID
    child = await startPds()
    for (const a of ackedAtKill) {
      const rkey = a.uri.slice(a.uri.lastIndexOf('/') + 1)
      const res = await xrpc('GET', 'com.atproto.repo.getRecord', {
        query: `repo=${encodeURIComponent(a.did)}&collection=app.bsky.feed.post&rkey=${rkey}`,
      })
      expect(res.status, a.uri).toBe(200)
      expect(res.body.cid).toBe(a.cid)
    }
    // and the repo still takes writes after the crash
    const more = await xrpc('POST', 'com.atproto.repo.createRecord', {
      jwt: accounts[0]!.jwt,
      body: { repo: accounts[0]!.did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'after', createdAt: new Date().toISOString() } },
    })
    expect(more.status).toBe(200)
  }, 120_000)
})
