/** `stratos pds <subcommand>`: setting up and operating a PDS (init, backup, restore, update). */
import type { Runnable } from '../util/command.js'
import { pdsInitCommand } from './pds-init.js'

export const pdsSubcommands: Record<string, Runnable> = {
  init: pdsInitCommand,
}
