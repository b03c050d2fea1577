import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** Absolute path of a file under packages/core/test/vectors/interop. */
export function interopPath(rel: string): string {
  return fileURLToPath(new URL(`../vectors/interop/${rel}`, import.meta.url))
}

export function readInteropJson<T = unknown>(rel: string): T {
  return JSON.parse(readFileSync(interopPath(rel), 'utf8')) as T
}

/** Lines of a syntax vector file: comments (#) and empty lines dropped, never trimmed. */
export function readInteropLines(rel: string): string[] {
  return readFileSync(interopPath(rel), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0 && !line.startsWith('#'))
}

/**
 * Prints the per-file vector tally (for example `handle_syntax_valid.txt 71/71`) so a test run shows
 * how much of each vector file was exercised.
 */
export function reportVectors(file: string, passed: number, total: number): void {
  console.log(`vectors ${file} ${passed}/${total}`)
}
