import { describe, expect, it } from 'vitest'
import { commands } from '../src/main.js'
import { runCli } from './helpers.js'

const SUBCOMMANDS: Record<string, string[]> = {
  repo: ['export', 'inspect'],
  account: ['create', 'list', 'takedown', 'delete', 'reset-password'],
  invite: ['create'],
  relay: ['hosts', 'ban', 'unban'],
  pds: ['init', 'backup', 'restore', 'request-crawl', 'create-invite-code', 'update'],
  appview: ['backfill', 'status'],
  labeler: ['init'],
  label: ['add', 'remove', 'list', 'reports'],
}

describe('stratos command table', () => {
  it('lists every command in the top-level help', async () => {
    const r = await runCli(['--help'])
    expect(r.code).toBe(0)
    for (const name of Object.keys(commands)) expect(r.stdout).toMatch(new RegExp(`^  ${name} +\\S`, 'm'))
  })

  it('every command and subcommand answers --help with its usage (exit 0)', async () => {
    const leaves: string[][] = []
    for (const name of Object.keys(commands)) {
      if (SUBCOMMANDS[name]) for (const sub of SUBCOMMANDS[name]) leaves.push([name, sub])
      else leaves.push([name])
    }
    expect(leaves.length).toBeGreaterThanOrEqual(12)
    for (const path of leaves) {
      const r = await runCli([...path, '--help'])
      expect(r.code, path.join(' ')).toBe(0)
      expect(r.stdout.startsWith(`Usage: stratos ${path.join(" ")} `) || r.stdout.startsWith(`Usage: stratos ${path.join(" ")}\n`)).toBe(true)
      expect(r.stdout).toContain('-h, --help')
      expect(r.stderr).toBe('')
    }
    const groupHelp = await runCli(['relay', '--help'])
    expect(groupHelp.stdout).toMatch(/^ {2}ban +Ban a host/m)
  })

  it('unknown commands are usage errors (exit 2) and no command prints help on stderr', async () => {
    const unknown = await runCli(['frobnicate'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain("stratos: unknown command 'frobnicate'")
    const none = await runCli([])
    expect(none.code).toBe(2)
    expect(none.stdout).toBe('')
    expect(none.stderr).toContain('Usage: stratos <command>')
    expect((await runCli(['--version'])).stdout).toMatch(/^stratos \d+\.\d+\.\d+\n$/)
  })

  it('help <command> shows that command', async () => {
    const r = await runCli(['help', 'firehose'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^Usage: stratos firehose <ws-url>/)
  })
})
