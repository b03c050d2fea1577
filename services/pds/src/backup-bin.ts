#!/usr/bin/env node
/**
 * Backup and restore inside the PDS container (the image has no `stratos` CLI):
 *   node dist/backup-bin.js backup  <directory | s3://bucket/prefix>
 *   node dist/backup-bin.js restore <directory | s3://bucket/prefix>   (the PDS stopped, its data dir empty)
 * Configured by the PDS's own PDS_* variables; S3 targets by STRATOS_BACKUP_S3_*.
 */
import { backupPds, restorePds } from './backup.js'
import { ConfigError, readConfigFromEnv } from './config.js'

async function main(argv: string[]): Promise<number> {
  const [action, target, ...rest] = argv
  if ((action !== 'backup' && action !== 'restore') || !target || rest.length > 0) {
    process.stderr.write('usage: backup-bin.js backup|restore <directory | s3://bucket/prefix>\n')
    return 2
  }
  let cfg
  try {
    cfg = readConfigFromEnv(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`)
      return 1
    }
    throw err
  }
  const progress = (line: string) => process.stderr.write(`${line}\n`)
  const manifest = action === 'backup' ? await backupPds(cfg, target, process.env, progress) : await restorePds(cfg, target, process.env, progress)
  process.stdout.write(`${action === 'backup' ? 'backed up to' : 'restored from'} ${target}: ${manifest.files.length} files\n`)
  return 0
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${action()}: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  },
)

function action(): string {
  return `pds ${process.argv[2] ?? 'backup'}`
}
