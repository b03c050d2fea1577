/** The CLI as a user runs it: a child process, checking exit codes and what lands on stdout and stderr. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { encodeMessageFrame } from '@stratos/core/stream'
import { HANDLE, runBin, spawnBin, startNetwork } from './helpers.js'

describe('stratos (subprocess)', () => {
  let net: Awaited<ReturnType<typeof startNetwork>>
  let dir: string
  beforeAll(async () => {
    net = await startNetwork()
    dir = await mkdtemp(join(tmpdir(), 'stratos-cli-bin-'))
  })
  afterAll(async () => {
    await net?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('resolve --json prints exactly one JSON object on stdout and exits 0', async () => {
    const uri = `at://${HANDLE}/app.bsky.feed.post/${net.fx.postRkey}`
    const r = await runBin(['resolve', uri, '--json', '--dev', '--handle-resolver', net.pds.url], { STRATOS_PLC_URL: net.plc.url })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    const out = JSON.parse(lines[0]!)
    expect(out.did).toBe(net.fx.did)
    expect(out.record.value.text).toBe('hello world')
  }, 60_000)

  it('repo inspect exits 0 on a good CAR and 1 with a wrong key; usage errors exit 2', async () => {
    const car = join(dir, 'r.car')
    await writeFile(car, net.fx.car)
    const ok = await runBin(['repo', 'inspect', car, '--json', '--key', net.fx.keypair.did()])
    expect(ok.code).toBe(0)
    expect(JSON.parse(ok.stdout).verification.status).toBe('verified')

    const bad = await runBin(['repo', 'inspect', car, '--json', '--key', 'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme'])
    expect(bad.code).toBe(1)
    expect(JSON.parse(bad.stdout).verification.reason).toBe('bad-signature')

    const usage = await runBin(['repo', 'inspect'])
    expect(usage.code).toBe(2)
    expect(usage.stdout).toBe('')
    expect(usage.stderr).toContain("Run 'stratos repo inspect --help' for usage.")

    const help = await runBin(['--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('Usage: stratos <command> [options]')
  }, 60_000)
})

describe('stratos firehose (subprocess)', () => {
  it('one Ctrl-C under a runner that forwards it (pnpm start: SIGINT twice at once) still stops cleanly with 0', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    wss.on('connection', (ws) => {
      ws.send(encodeMessageFrame('#identity', { seq: 8, did: 'did:plc:abcdefghijklmnopqrstuvwx', time: '2024-05-01T00:00:00.000Z' }))
    })
    await new Promise<void>((r) => wss.on('listening', () => r()))
    const { port } = wss.address() as AddressInfo
    try {
      const run = spawnBin(['firehose', `ws://127.0.0.1:${port}`])
      const deadline = Date.now() + 30_000
      while (!run.stdout().includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      run.child.kill('SIGINT')
      await new Promise((r) => setTimeout(r, 20))
      run.child.kill('SIGINT')
      const r = await run.done
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toContain('1 event, last seq 8')
    } finally {
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
    }
  }, 60_000)

  it('follows a stream until Ctrl-C, then exits 0 with the events printed', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    wss.on('connection', (ws) => {
      ws.send(encodeMessageFrame('#identity', { seq: 7, did: 'did:plc:abcdefghijklmnopqrstuvwx', time: '2024-05-01T00:00:00.000Z' }))
    })
    await new Promise<void>((r) => wss.on('listening', () => r()))
    const { port } = wss.address() as AddressInfo
    try {
      const run = spawnBin(['firehose', `ws://127.0.0.1:${port}`])
      const deadline = Date.now() + 30_000
      while (!run.stdout().includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      run.child.kill('SIGINT')
      const r = await run.done
      expect(r.code).toBe(0)
      expect(JSON.parse(r.stdout)).toEqual({ seq: 7, type: 'identity', did: 'did:plc:abcdefghijklmnopqrstuvwx', time: '2024-05-01T00:00:00.000Z' })
      expect(r.stderr).toContain('1 event, last seq 7')
    } finally {
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
    }
  }, 60_000)
})
