/** Import first (before anything that imports `@stratos/*`): maps the workspace packages to their sources. */
import { register } from 'node:module'

register('./stratos-hooks.mjs', import.meta.url)
