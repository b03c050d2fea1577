/** Shared helper for benchmarks: rewrites one named section of bench/RESULTS.md, keeping the others. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const RESULTS_PATH = fileURLToPath(new URL('./RESULTS.md', import.meta.url))

const HEADER =
  '# Benchmark results\n\nWritten by `pnpm bench` (each benchmark rewrites its own section). Figures are ratios ' +
  'against a reference implementation measured in the same run; absolute numbers depend on the machine.\n'

export function writeResultsSection(name: string, markdown: string): void {
  const start = `<!-- bench:${name}:start -->`
  const end = `<!-- bench:${name}:end -->`
  const block = `${start}\n${markdown.trim()}\n${end}`
  let text = existsSync(RESULTS_PATH) ? readFileSync(RESULTS_PATH, 'utf8') : HEADER
  const i = text.indexOf(start)
  const j = text.indexOf(end)
  if (i >= 0 && j > i) {
    text = text.slice(0, i) + block + text.slice(j + end.length)
  } else {
    text = text.trimEnd() + '\n\n' + block + '\n'
  }
  writeFileSync(RESULTS_PATH, text)
}
