/**
 * Issue 14 item 8: importRepo bodies are not buffered in memory. 8 parallel 100 MiB imports from an
 * authenticated account: the PDS process (a child, measured alone) grows by less than 100 MB; imports
 * beyond PDS_MAX_CONCURRENT_IMPORTS are refused before their body is read; the unsigned ones are refused.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

describe('importRepo under 8 parallel 100 MiB bodies', () => {
  it('keeps the PDS RSS growth under 100 MB and refuses every one', async () => {
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--import', './packages/cli/dev/register.mjs', 'services/pds/test/security/_import-attack-child.ts'],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', TMPDIR: process.env.TMPDIR ?? '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    await new Promise((r) => child.once('exit', r))
    const line = out.trim().split('\n').pop()
    expect(line, err).toBeTruthy()
    const result = JSON.parse(line!) as { statuses: { status: number; body: string }[]; before: number; peak: number }
    const statuses = result.statuses.map((s) => s.status).sort()
    // two imports (PDS_MAX_CONCURRENT_IMPORTS) are read, to disk, and refused as unsigned; the rest wait for nothing
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(6)
    expect(statuses.every((s) => s === 400 || s === 429), JSON.stringify(result)).toBe(true)
    for (const s of result.statuses) {
      if (s.status === 400) expect(JSON.parse(s.body)).toMatchObject({ error: 'InvalidRequest' })
    }
    const growthMb = (result.peak - result.before) / 1024 / 1024
    expect(growthMb).toBeLessThan(100)
  }, 90_000)
})
