/**
 * Runs every benchmark in bench/ (each `*.ts` file except this runner and helper modules) one after the
 * other, each in its own Node process: `pnpm bench` (= `node --import tsx bench/run.ts`).
 * Pass names to run a subset: `pnpm bench crypto-verify`; the arguments from the first one that starts with `-`
 * on are passed to each benchmark run: `pnpm bench pds --only stratos --phases c8,w50`.
 */
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('.', import.meta.url))
const HELPERS = new Set(['run.ts', 'results.ts'])
const args = process.argv.slice(2)
const firstFlag = args.findIndex((a) => a.startsWith('-'))
const only = firstFlag < 0 ? args : args.slice(0, firstFlag)
const benchArgs = firstFlag < 0 ? [] : args.slice(firstFlag)

const files = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && !HELPERS.has(f))
  .filter((f) => only.length === 0 || only.includes(f.replace(/\.ts$/, '')))
  .sort()

let failed = 0
for (const file of files) {
  console.log(`\n=== bench/${file} ===`)
  const res = spawnSync(process.execPath, ['--import', 'tsx', `${dir}${file}`, ...benchArgs], { stdio: 'inherit' })
  if (res.status !== 0) {
    failed++
    console.error(`bench/${file} failed (exit ${res.status ?? res.signal})`)
  }
}
console.log(`\n${files.length - failed}/${files.length} benchmarks completed; results in bench/RESULTS.md`)
process.exit(failed ? 1 : 0)
