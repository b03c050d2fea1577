/**
 * Where a command writes: data on stdout, progress and diagnostics on stderr. Commands never touch
 * `process` directly, so tests can run them in-process and read what a user would see.
 */

export interface OutStream {
  write(chunk: string | Uint8Array, cb?: (err?: Error | null) => void): boolean
  once(event: 'drain', listener: () => void): unknown
  isTTY?: boolean
}

export interface Io {
  stdout: OutStream
  stderr: OutStream
  env: Record<string, string | undefined>
  /** aborted on SIGINT/SIGTERM (long-running commands stop cleanly) */
  signal?: AbortSignal
  /** asks a yes/no question on the terminal; undefined when there is no terminal */
  confirm?: (question: string) => Promise<boolean>
  /** asks for a line of text on the terminal; undefined when there is no terminal */
  ask?: (question: string) => Promise<string>
}

/** Writes and waits for the stream to drain when its buffer is full (back-pressure for long outputs). */
export function write(stream: OutStream, chunk: string | Uint8Array): Promise<void> | void {
  if (!stream.write(chunk)) {
    return new Promise<void>((resolve) => stream.once('drain', resolve))
  }
}

export function println(stream: OutStream, line = ''): Promise<void> | void {
  return write(stream, `${line}\n`)
}

/** A diagnostic line on stderr. */
export function note(io: Io, line: string): void {
  io.stderr.write(`${line}\n`)
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`
}

/**
 * Progress on stderr: on a terminal, one line rewritten in place (at most 10 times a second); otherwise a
 * line at most every `intervalMs` (default 2 s), so logs of long runs stay readable. `done()` prints the
 * final state.
 */
export class Progress {
  private last = 0
  private shown = ''
  private readonly tty: boolean

  constructor(
    private readonly io: Io,
    private readonly opts: { quiet?: boolean; intervalMs?: number } = {},
  ) {
    this.tty = io.stderr.isTTY === true
  }

  update(text: string, force = false): void {
    if (this.opts.quiet) return
    const now = Date.now()
    const every = this.tty ? 100 : (this.opts.intervalMs ?? 2_000)
    if (!force && now - this.last < every) return
    this.last = now
    if (this.tty) {
      const pad = this.shown.length > text.length ? ' '.repeat(this.shown.length - text.length) : ''
      this.io.stderr.write(`\r${text}${pad}`)
      this.shown = text
    } else {
      this.io.stderr.write(`${text}\n`)
    }
  }

  done(text: string): void {
    if (this.opts.quiet) return
    if (this.tty) {
      const pad = this.shown.length > text.length ? ' '.repeat(this.shown.length - text.length) : ''
      this.io.stderr.write(`\r${text}${pad}\n`)
      this.shown = ''
    } else {
      this.io.stderr.write(`${text}\n`)
    }
    this.last = 0
  }
}

/** Left-aligned columns (the last one is not padded). */
export function table(rows: string[][], header?: string[]): string {
  const all = header ? [header, ...rows] : rows
  if (all.length === 0) return ''
  const widths: number[] = []
  for (const row of all) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  return all
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n')
}
