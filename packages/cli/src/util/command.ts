/**
 * A small command framework on node:util parseArgs: option specs with help text, environment fallbacks,
 * positional arity, `--help`, and the exit-code convention (0 ok, 1 failure, 2 usage).
 */
import { parseArgs } from 'node:util'
import type { Io } from './io.js'

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/** Bad invocation: unknown option, missing argument, malformed value. Exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** The command ran and failed (network, remote error, verification failure...). Exit code 1 by default. */
export class CliError extends Error {
  override name = 'CliError'
  constructor(
    message: string,
    readonly exitCode = EXIT_FAILURE,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean'
  short?: string
  multiple?: boolean
  description: string
  /** shown in help: `--plc URL` */
  valueName?: string
  /** environment variable read when the flag is absent (flags override the environment) */
  env?: string | string[]
  /** default value when neither flag nor environment sets it (shown in help) */
  default?: string
}

export type OptionSpecs = Record<string, OptionSpec>

export type ParsedValues<O extends OptionSpecs> = {
  [K in keyof O]: O[K]['multiple'] extends true
    ? O[K]['type'] extends 'boolean'
      ? boolean[]
      : string[]
    : O[K]['type'] extends 'boolean'
      ? boolean
      : O[K]['default'] extends string
        ? string
        : string | undefined
}

export interface CommandContext<O extends OptionSpecs> {
  values: ParsedValues<O>
  positionals: string[]
  io: Io
}

export interface CommandSpec<O extends OptionSpecs = OptionSpecs> {
  /** full name as typed, e.g. `repo export` */
  name: string
  summary: string
  /** usage line after `stratos `, e.g. `repo export <did|handle> -o FILE [options]` */
  usage: string
  description?: string
  options: O
  positionals?: { min?: number; max?: number }
  examples?: string[]
  run(ctx: CommandContext<O>): Promise<number | void>
}

/** Anything the top-level dispatcher can run: a leaf command or a group of subcommands. */
export interface Runnable {
  summary: string
  run(argv: string[], io: Io, path: string[]): Promise<number>
}

const HELP: OptionSpec = { type: 'boolean', short: 'h', description: 'show this help' }

function optionLabel(name: string, spec: OptionSpec): string {
  const short = spec.short ? `-${spec.short}, ` : '    '
  const value = spec.type === 'string' ? ` ${spec.valueName ?? 'VALUE'}` : ''
  return `${short}--${name}${value}`
}

export function commandHelp(spec: CommandSpec<OptionSpecs>): string {
  const lines: string[] = [`Usage: stratos ${spec.usage}`, '', spec.summary]
  if (spec.description) lines.push('', spec.description.trim())
  const opts = Object.entries({ ...spec.options, help: HELP })
  if (opts.length > 0) {
    lines.push('', 'Options:')
    const labels = opts.map(([name, o]) => optionLabel(name, o))
    const width = Math.min(34, Math.max(...labels.map((l) => l.length)))
    opts.forEach(([, o], i) => {
      const extra: string[] = []
      if (o.env) extra.push(`env ${([] as string[]).concat(o.env).join(' or ')}`)
      if (o.default !== undefined) extra.push(`default ${o.default}`)
      const desc = extra.length > 0 ? `${o.description} (${extra.join('; ')})` : o.description
      const label = labels[i]!
      lines.push(label.length > width ? `  ${label}\n  ${' '.repeat(width)}  ${desc}` : `  ${label.padEnd(width)}  ${desc}`)
    })
  }
  if (spec.examples && spec.examples.length > 0) {
    lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`))
  }
  return `${lines.join('\n')}\n`
}

function envValue(io: Io, env: string | string[] | undefined): string | undefined {
  for (const name of ([] as string[]).concat(env ?? [])) {
    const v = io.env[name]?.trim()
    if (v) return v
  }
  return undefined
}

/** Parses argv against the spec; throws UsageError for anything parseArgs refuses. */
export function parseCommandArgs<O extends OptionSpecs>(
  spec: CommandSpec<O>,
  argv: string[],
  io: Io,
): { help: true } | { help: false; values: ParsedValues<O>; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {}
  for (const [name, o] of Object.entries({ ...spec.options, help: HELP })) {
    options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] }
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''))
  }
  if (parsed.values.help) return { help: true }
  const values: Record<string, unknown> = {}
  for (const [name, o] of Object.entries(spec.options)) {
    let v = parsed.values[name]
    if (v === undefined && o.type === 'string' && !o.multiple) v = envValue(io, o.env) ?? o.default
    if (v === undefined && o.type === 'boolean' && !o.multiple) {
      const e = envValue(io, o.env)
      v = e !== undefined ? ['1', 'true', 'yes', 'on'].includes(e.toLowerCase()) : false
    }
    if (v === undefined && o.multiple) v = []
    if (o.type === 'string' && typeof v === 'string' && v.length === 0) {
      throw new UsageError(`option --${name} needs a non-empty value`)
    }
    values[name] = v
  }
  const { min = 0, max = Infinity } = spec.positionals ?? {}
  const pos = parsed.positionals
  if (pos.length < min) {
    throw new UsageError(min === 1 && max === 1 ? 'missing argument' : `expected at least ${min} argument(s), got ${pos.length}`)
  }
  if (pos.length > max) {
    throw new UsageError(`unexpected argument${pos.length - max > 1 ? 's' : ''}: ${pos.slice(max).join(' ')}`)
  }
  return { help: false, values: values as ParsedValues<O>, positionals: pos }
}

/** Turns a spec into something the dispatcher runs; errors become messages and exit codes. */
export function command<O extends OptionSpecs>(spec: CommandSpec<O>): Runnable & { spec: CommandSpec<O> } {
  return {
    spec,
    summary: spec.summary,
    async run(argv, io) {
      let parsed
      try {
        parsed = parseCommandArgs(spec, argv, io)
      } catch (err) {
        return reportError(err, io, spec.name)
      }
      if (parsed.help) {
        io.stdout.write(commandHelp(spec as unknown as CommandSpec<OptionSpecs>))
        return EXIT_OK
      }
      try {
        const code = await spec.run({ values: parsed.values, positionals: parsed.positionals, io })
        return code ?? EXIT_OK
      } catch (err) {
        return reportError(err, io, spec.name)
      }
    },
  }
}

/** Prints an error the way every command does and returns its exit code. */
export function reportError(err: unknown, io: Io, name: string): number {
  if (err instanceof UsageError) {
    io.stderr.write(`stratos ${name}: ${err.message}\nRun 'stratos ${name} --help' for usage.\n`)
    return EXIT_USAGE
  }
  if (err instanceof CliError) {
    io.stderr.write(`stratos ${name}: ${err.message}\n`)
    return err.exitCode
  }
  const message = err instanceof Error ? err.message : String(err)
  io.stderr.write(`stratos ${name}: ${message}\n`)
  if (io.env.STRATOS_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`)
  return EXIT_FAILURE
}

/** A group of subcommands (`stratos repo export`, `stratos repo inspect`). */
export function group(name: string, summary: string, subcommands: Record<string, Runnable>): Runnable {
  const help = () => {
    const width = Math.max(...Object.keys(subcommands).map((k) => k.length))
    const lines = [
      `Usage: stratos ${name} <command> [options]`,
      '',
      summary,
      '',
      'Commands:',
      ...Object.entries(subcommands).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`),
      '',
      `Run 'stratos ${name} <command> --help' for a command's options.`,
    ]
    return `${lines.join('\n')}\n`
  }
  return {
    summary,
    async run(argv, io, path) {
      const [sub, ...rest] = argv
      if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
        if (sub === undefined) {
          io.stderr.write(help())
          return EXIT_USAGE
        }
        io.stdout.write(help())
        return EXIT_OK
      }
      const cmd = Object.hasOwn(subcommands, sub) ? subcommands[sub] : undefined
      if (!cmd) {
        io.stderr.write(`stratos ${name}: unknown command '${sub}'\n\n${help()}`)
        return EXIT_USAGE
      }
      return cmd.run(rest, io, [...path, sub])
    },
  }
}

/** Parses a non-negative integer option; undefined stays undefined. */
export function intOption(name: string, value: string | undefined, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`--${name} must be an integer between ${min} and ${max}, got '${value}'`)
  }
  return Number(value)
}

/** Checks that a flag is an http(s) URL and returns it without a trailing slash. */
export function urlOption(name: string, value: string, protocols = ['http:', 'https:']): string {
  let u: URL
  try {
    u = new URL(value)
  } catch {
    throw new UsageError(`--${name} is not a URL: '${value}'`)
  }
  if (!protocols.includes(u.protocol)) {
    throw new UsageError(`--${name} must be a ${protocols.map((p) => p.replace(':', '://')).join(' or ')} URL, got '${value}'`)
  }
  return value.replace(/\/+$/, '')
}
