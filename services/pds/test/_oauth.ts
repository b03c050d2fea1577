import http from 'node:http'
import type { AddressInfo } from 'node:net'
import fs from 'node:fs'
import { NodeOAuthClient, type NodeSavedSession, type NodeSavedState } from '@atproto/oauth-client-node'
import type { Browser } from 'playwright-core'

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const hasChromium = fs.existsSync(CHROMIUM_PATH)

/** Headless Chromium (Debian's package) driven by playwright-core. */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core')
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

/** A loopback HTTP server standing for the app's redirect URI: it records the callback query. */
export async function startCallbackServer(): Promise<{
  url: string
  next(): Promise<URLSearchParams>
  close(): Promise<void>
}> {
  let waiting: ((p: URLSearchParams) => void) | null = null
  const received: URLSearchParams[] = []
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://127.0.0.1')
    if (u.pathname === '/callback') {
      const params = u.searchParams
      if (waiting) {
        waiting(params)
        waiting = null
      } else received.push(params)
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>signed in</body></html>')
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/callback`,
    next: () =>
      received.length > 0 ? Promise.resolve(received.shift()!) : new Promise((resolve) => (waiting = resolve)),
    close: () => new Promise((resolve) => srv.close(() => resolve())),
  }
}

function memoryStore<T>(m = new Map<string, T>()) {
  return {
    async get(key: string) {
      return m.get(key)
    },
    async set(key: string, value: T) {
      m.set(key, value)
    },
    async del(key: string) {
      m.delete(key)
    },
  }
}

/** A public loopback client (`http://localhost?...` client id), as apps use in development. */
export function loopbackClient(opts: {
  redirectUri: string
  scope: string
  plcUrl: string
  pdsUrl: string
  /** where the client keeps its sessions (DPoP key and token set), for tests that look inside */
  sessions?: Map<string, NodeSavedSession>
}): NodeOAuthClient {
  const clientId = `http://localhost?redirect_uri=${encodeURIComponent(opts.redirectUri)}&scope=${encodeURIComponent(opts.scope)}`
  return new NodeOAuthClient({
    clientMetadata: {
      client_id: clientId,
      redirect_uris: [opts.redirectUri as `http://127.0.0.1:${string}`],
      scope: opts.scope,
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      dpop_bound_access_tokens: true,
    },
    stateStore: memoryStore<NodeSavedState>(),
    sessionStore: memoryStore<NodeSavedSession>(opts.sessions),
    allowHttp: true,
    plcDirectoryUrl: opts.plcUrl,
    handleResolver: opts.pdsUrl,
  })
}

/**
 * Goes through the authorization server's pages in a fresh browser context: sign in with the password,
 * then authorize on the consent page. Returns the query the app's redirect URI received.
 */
export async function signInWithBrowser(
  browser: Browser,
  authUrl: URL,
  opts: {
    password: string
    /** the app's redirect URI is a loopback server... */
    callback?: { next(): Promise<URLSearchParams> }
    /** ...or an https URL the browser is stopped at (its query is the result) */
    interceptRedirect?: string
    consentScreenshot?: string
  },
): Promise<URLSearchParams> {
  const context = await browser.newContext()
  try {
    let intercepted: Promise<URLSearchParams> | undefined
    if (opts.interceptRedirect) {
      const prefix = opts.interceptRedirect
      intercepted = new Promise((resolve) => {
        void context.route(`${prefix}**`, (route) => {
          resolve(new URL(route.request().url()).searchParams)
          void route.fulfill({ status: 200, contentType: 'text/html', body: '<html><body>signed in</body></html>' })
        })
      })
    }
    const page = await context.newPage()
    await page.goto(authUrl.href)
    await page.locator('input[name=password]').fill(opts.password)
    await page.locator('button[type=submit]').click()
    const authorize = page.getByRole('button', { name: 'Authorize' })
    await authorize.waitFor({ timeout: 15_000 })
    if (opts.consentScreenshot) await page.screenshot({ path: opts.consentScreenshot, fullPage: true })
    const received = intercepted ?? opts.callback!.next()
    await authorize.click()
    return await received
  } finally {
    await context.close()
  }
}
