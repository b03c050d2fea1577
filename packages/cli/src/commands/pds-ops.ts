/** `stratos pds <subcommand>`: setting up and operating a PDS (init, backup, restore, request-crawl, update). */
import { CliError, UsageError, command, urlOption, type Runnable } from '../util/command.js'
import { note, println, type Io } from '../util/io.js'
import { inviteCreateCommand } from './account.js'
import { loadEnvFile, pdsInitCommand } from './pds-init.js'

const envFileOption = {
  'env-file': { type: 'string', valueName: 'FILE', description: "the PDS's env file (as written by `stratos pds init`)", env: 'STRATOS_PDS_ENV_FILE' },
} as const

async function pdsConfig(io: Io, envFile: string | undefined) {
  const env = envFile ? loadEnvFile(envFile, io.env) : io.env
  const { readConfigFromEnv } = await import('@stratos/pds')
  try {
    return { cfg: readConfigFromEnv(env), env }
  } catch (err) {
    if (err instanceof Error && err.name === 'ConfigError') throw new CliError(err.message)
    throw err
  }
}

export const pdsBackupCommand = command({
  name: 'pds backup',
  summary: 'Snapshot every SQLite database and the blobs of a PDS (it may keep running) to a directory or s3://bucket/prefix',
  usage: 'pds backup <directory | s3://bucket/prefix> [--env-file FILE]',
  description: `
Reads the PDS's configuration (PDS_* variables or --env-file) to find its data, then copies each SQLite
database with SQLite's online backup API (a consistent snapshot while the PDS writes), the blobs (not
when they are in S3), and a manifest with the sha256 of every file. The directory must be new or empty.
An s3:// target uses STRATOS_BACKUP_S3_ENDPOINT, _REGION, _FORCE_PATH_STYLE, _ACCESS_KEY_ID,
_SECRET_ACCESS_KEY. Keep the env file (secrets, rotation key) with the backup: it is not in it.`,
  options: envFileOption,
  positionals: { min: 1, max: 1 },
  examples: ['stratos pds backup /var/backups/pds-$(date +%F) --env-file /pds/pds.env'],
  async run({ values, positionals, io }) {
    const { cfg, env } = await pdsConfig(io, values['env-file'])
    const { backupPds } = await import('@stratos/pds')
    const manifest = await backupPds(cfg, positionals[0]!, env, (line) => note(io, line))
    const bytes = manifest.files.reduce((n, f) => n + f.size, 0)
    await println(io.stdout, `backed up ${cfg.service.hostname} to ${positionals[0]}: ${manifest.files.length} files, ${bytes} bytes`)
  },
})

export const pdsRestoreCommand = command({
  name: 'pds restore',
  summary: 'Restore a backup into the empty data directory of a stopped PDS',
  usage: 'pds restore <directory | s3://bucket/prefix> [--env-file FILE]',
  description: `
Checks every file against the backup's manifest, then copies the databases and blobs to where the PDS's
configuration (PDS_* variables or --env-file) puts them. Refuses a data directory that already holds a PDS.
Start the PDS afterwards with the same secrets (the env file) as the backed-up one.`,
  options: envFileOption,
  positionals: { min: 1, max: 1 },
  async run({ values, positionals, io }) {
    const { cfg, env } = await pdsConfig(io, values['env-file'])
    const { restorePds } = await import('@stratos/pds')
    const manifest = await restorePds(cfg, positionals[0]!, env, (line) => note(io, line))
    await println(io.stdout, `restored ${manifest.hostname} (backup of ${manifest.createdAt}) into ${cfg.db.directory}: ${manifest.files.length} files`)
  },
})

export const pdsRequestCrawlCommand = command({
  name: 'pds request-crawl',
  summary: 'Ask relays to crawl this PDS (com.atproto.sync.requestCrawl)',
  usage: 'pds request-crawl [RELAY_URL...] [--hostname HOST] [--env-file FILE]',
  description: `
Without relay URLs, asks the PDS's PDS_CRAWLERS. The host name defaults to PDS_HOSTNAME.`,
  options: {
    hostname: { type: 'string', valueName: 'HOST', description: 'the PDS host name to announce' },
    ...envFileOption,
  },
  positionals: { max: 20 },
  async run({ values, positionals, io }) {
    const env = values['env-file'] ? loadEnvFile(values['env-file'], io.env) : io.env
    const hostname = values.hostname ?? env.PDS_HOSTNAME?.trim()
    if (!hostname) throw new UsageError('--hostname or PDS_HOSTNAME is required')
    const relays = (positionals.length > 0 ? positionals : (env.PDS_CRAWLERS ?? '').split(',').map((s) => s.trim()).filter(Boolean)).map((u) =>
      urlOption('relay', u),
    )
    if (relays.length === 0) throw new UsageError('no relay: give RELAY_URL or set PDS_CRAWLERS')
    let failed = 0
    for (const relay of relays) {
      try {
        const res = await fetch(new URL('/xrpc/com.atproto.sync.requestCrawl', relay), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ hostname }),
          signal: AbortSignal.timeout(15_000),
        })
        if (!res.ok) {
          failed++
          note(io, `${relay}: ${res.status} ${(await res.text()).slice(0, 300)}`)
        } else {
          await println(io.stdout, `${relay}: crawl requested for ${hostname}`)
        }
      } catch (err) {
        failed++
        note(io, `${relay}: ${(err as Error).message}`)
      }
    }
    if (failed > 0) throw new CliError(`${failed} of ${relays.length} relays refused or could not be reached`)
  },
})

export const UPDATE_STEPS = `To update a PDS run with deploy/pds/compose.yaml (from the directory holding compose.yaml):

  git pull                         # the new Stratos version (compose.yaml builds the image from it)
  stratos pds backup ./backups/before-update-$(date +%F)   # or: docker compose exec pds node dist/backup-bin.js backup /pds/backups/before-update
  docker compose build pds         # or, with a published image: docker compose pull
  docker compose up -d             # recreates the PDS with the new image; data and certificates stay in their volumes
  docker compose ps                # the pds service turns healthy
  curl -fsS https://$PDS_HOSTNAME/xrpc/_health

The databases are migrated at start-up. To go back: stop, restore the backup into an empty data directory,
start the previous version.`

export const pdsUpdateCommand = command({
  name: 'pds update',
  summary: 'Print the steps that update a PDS run with Docker compose to a new version',
  usage: 'pds update',
  description: 'Prints the commands; it runs nothing (updating restarts the PDS: choose the moment).',
  options: {},
  positionals: { max: 0 },
  async run({ io }) {
    await println(io.stdout, UPDATE_STEPS)
  },
})

export const pdsSubcommands: Record<string, Runnable> = {
  init: pdsInitCommand,
  backup: pdsBackupCommand,
  restore: pdsRestoreCommand,
  'request-crawl': pdsRequestCrawlCommand,
  /** pdsadmin's name for `stratos invite create` */
  'create-invite-code': command({
    ...inviteCreateCommand.spec,
    name: 'pds create-invite-code',
    usage: inviteCreateCommand.spec.usage.replace(/^invite create/, 'pds create-invite-code'),
    summary: `${inviteCreateCommand.spec.summary}; the same as \`stratos invite create\``,
  }),
  update: pdsUpdateCommand,
}
