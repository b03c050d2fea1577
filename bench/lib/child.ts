/**
 * A benchmark's child process (a server, an upstream, the load) speaking JSON lines on stdout and taking
 * commands on stdin. Every child still running when the bench process exits is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const benchDir = fileURLToPath(new URL('..', import.meta.url))
const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

export interface ChildOptions {
  /** extra environment variables */
  env?: Record<string, string>
  /** node flags before the script (e.g. --cpu-prof) */
  nodeArgs?: string[]
  /** run the script through tsx (default true; false for plain .mjs) */
  tsx?: boolean
  /** how long next() waits by default */
  timeoutMs?: number
}

export class Child {
  readonly proc: ChildProcess
  readonly exited: Promise<number | null>
  private readonly lines: unknown[] = []
  private waiters: ((v: unknown) => void)[] = []
  private readonly timeoutMs: number

  /** `script`: a path relative to bench/ */
  constructor(script: string, args: string[], opts: ChildOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 120_000
    const loader = opts.tsx === false ? [] : ['--import', 'tsx']
    this.proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), ...loader, join(benchDir, script), ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    children.add(this.proc)
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      let v: unknown
      try {
        v = JSON.parse(line)
      } catch {
        process.stderr.write(`[${script}] ${line}\n`)
        return
      }
      const w = this.waiters.shift()
      if (w) w(v)
      else this.lines.push(v)
    })
    this.exited = new Promise((resolve) =>
      this.proc.on('exit', (code) => {
        children.delete(this.proc)
        resolve(code)
      }),
    )
  }

  /** The child's next JSON line; a line `{"error": …}` rejects. */
  next<T>(timeoutMs = this.timeoutMs): Promise<T> {
    const settle = (v: unknown, resolve: (v: T) => void, reject: (e: Error) => void) => {
      if (v && typeof v === 'object' && 'error' in v) reject(new Error(String((v as { error: unknown }).error)))
      else resolve(v as T)
    }
    if (this.lines.length > 0) return new Promise<T>((resolve, reject) => settle(this.lines.shift(), resolve, reject))
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for a child process')), timeoutMs)
      this.waiters.push((v) => {
        clearTimeout(timer)
        settle(v, resolve, reject)
      })
      void this.exited.then((code) => reject(new Error(`child exited (${code}) before answering`)))
    })
  }

  send(line: string) {
    this.proc.stdin!.write(line + '\n')
  }

  async ask<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    this.send(`${cmd} ${JSON.stringify(args)}`)
    return this.next<T>()
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal)
    await this.exited
  }
}

/** In a child process: on SIGTERM or SIGINT, `close()` once, then exit (0 when it resolved, 1 when it threw). */
export function exitOnSignals(close: () => Promise<unknown>): void {
  let closing = false
  const stop = () => {
    if (closing) return
    closing = true
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
