import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { lockDataDir, prepareDataDir, startDevNetwork } from '../src/index.js'

let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-dev-dir-'))
})
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true })
})

describe('the dev network data directory', () => {
  it('is created level by level and fails fast with the path where it cannot be (/proc)', async () => {
    prepareDataDir(path.join(dir, 'a', 'b', 'c'))
    expect(fs.statSync(path.join(dir, 'a', 'b', 'c')).isDirectory()).toBe(true)
    const started = Date.now()
    await expect(startDevNetwork({ dataDir: '/proc/x/y', portBase: 1, logLevel: 'silent' })).rejects.toThrow(
      /cannot create the data directory \/proc\/x: ENOENT/,
    )
    expect(Date.now() - started).toBeLessThan(2000)
    fs.writeFileSync(path.join(dir, 'file'), '')
    expect(() => prepareDataDir(path.join(dir, 'file', 'sub'))).toThrow(/is not a directory/)
  })

  it('is locked against a second network; a stale lock is taken over', async () => {
    const data = path.join(dir, 'locked')
    prepareDataDir(data)
    const release = lockDataDir(data)
    expect(fs.readFileSync(path.join(data, 'dev-network.lock'), 'utf8')).toBe(`${process.pid}\n`)
    await expect(startDevNetwork({ dataDir: data, portBase: 1, logLevel: 'silent' })).rejects.toThrow(
      /is in use by another dev network \(pid \d+\)/,
    )
    release()
    expect(fs.existsSync(path.join(data, 'dev-network.lock'))).toBe(false)
    // a lock whose process is gone (pid 2^22+1 is above Linux's pid_max default range)
    fs.writeFileSync(path.join(data, 'dev-network.lock'), '4194305\n')
    const again = lockDataDir(data)
    expect(fs.readFileSync(path.join(data, 'dev-network.lock'), 'utf8')).toBe(`${process.pid}\n`)
    again()
  })
})
