/**
 * Issue 14 item 5: slowloris against a relay whose process may hold only 1,024 open files. 1,100
 * connections that trickle their headers (and never finish them) must not starve it: /xrpc/_health
 * still answers while they are open.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
    s.once('error', reject)
  })
}

async function health(url: string, timeoutMs = 2000): Promise<number> {
  try {
    const res = await fetch(`${url}/xrpc/_health`, { signal: AbortSignal.timeout(timeoutMs) })
    return res.status
  } catch {
    return 0
  }
}

describe('relay under 1,100 slow connections with a 1,024 open-file limit', () => {
  let child: ChildProcess
  let url: string
  let dir: string
  const sockets: Socket[] = []
  let stderr = ''

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'relay-slowloris-'))
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    child = spawn(
      'prlimit',
      ['--nofile=1024:1024', process.execPath, '--import', 'tsx', '--import', './packages/cli/dev/register.mjs', 'services/relay/src/bin.ts'],
      {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', RELAY_PORT: String(port), RELAY_HOST: '127.0.0.1', RELAY_DATA_DIRECTORY: dir, RELAY_PLC_URL: 'http://127.0.0.1:9', LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    )
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const deadline = Date.now() + 30_000
    while ((await health(url, 500)) !== 200) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`relay did not start: ${stderr}`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }, 40_000)

  afterAll(async () => {
    for (const s of sockets) s.destroy()
    if (child && child.exitCode === null) {
      child.kill('SIGTERM')
      await new Promise((r) => child.once('exit', r))
    }
    rmSync(dir, { recursive: true, force: true })
  })

  it('still answers /xrpc/_health while the attacker holds 1,100 trickling connections', async () => {
    const opened = await Promise.all(
      Array.from(
        { length: 1100 },
        () =>
          new Promise<Socket | null>((resolve) => {
            const s = connect({ port: Number(new URL(url).port), host: '127.0.0.1', localAddress: '127.0.0.2' })
            s.on('error', () => resolve(null))
            s.once('connect', () => {
              sockets.push(s)
              s.write('GET /xrpc/_health HTTP/1.1\r\nHost: relay\r\n')
              resolve(s)
            })
          }),
      ),
    )
    expect(opened.filter(Boolean).length).toBeGreaterThan(1000) // the attacker got its connections through
    // trickle a header line now and then on every connection that is still open
    const trickle = setInterval(() => {
      for (const s of sockets) if (!s.destroyed) s.write(`X-Slow-${Date.now()}: 1\r\n`)
    }, 1000)
    try {
      await new Promise((r) => setTimeout(r, 1500))
      const statuses: number[] = []
      for (let i = 0; i < 5; i++) {
        statuses.push(await health(url))
        await new Promise((r) => setTimeout(r, 200))
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200])
      // the service kept most of the flood out instead of holding a file per connection
      const stillOpen = sockets.filter((s) => !s.destroyed).length
      expect(stillOpen).toBeLessThanOrEqual(256)
    } finally {
      clearInterval(trickle)
    }
    expect(stderr).not.toMatch(/EMFILE/)
  }, 60_000)
})
