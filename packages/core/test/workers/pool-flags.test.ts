import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

describe('worker threads under the flags an operator gives node', () => {
  it('start when node runs with V8 and per-process flags a worker refuses (they stay on the main thread only)', async () => {
    const child = fileURLToPath(new URL('./flags-child.ts', import.meta.url))
    const flags = ['--max-old-space-size=512', '--single-threaded-gc', '--max-semi-space-size=16']
    const { stdout } = await run(process.execPath, [...flags, '--import', 'tsx', child], { timeout: 60_000 })
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as { res: { n: number; thread: number }; execArgv: string[]; workerExecArgv: string[]; spaced: string[] }
    expect(out.res.n).toBe(7)
    expect(out.res.thread).toBeGreaterThan(0)
    expect(out.execArgv).toEqual(expect.arrayContaining(['--max-old-space-size=512', '--single-threaded-gc']))
    // the loader is passed on; the refused flags are not (nor the value of one given as `--flag value`)
    expect(out.workerExecArgv).toEqual(['--import', 'tsx'])
    expect(out.spaced).toEqual(['--import', 'tsx'])
  })
})
