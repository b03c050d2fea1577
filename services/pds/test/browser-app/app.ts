/**
 * A browser app on @atproto/oauth-client-browser, as an app developer would write one: sign in with a
 * handle, come back from the PDS's pages, post. Bundled with esbuild by the test that serves it on loopback.
 * Settings come from the page (window.APP_CONFIG); progress is written to #status for the test to read.
 */
import { BrowserOAuthClient } from '@atproto/oauth-client-browser'

declare global {
  interface Window {
    APP_CONFIG: { pdsUrl: string; plcUrl: string; scope: string }
  }
}

const status = (text: string) => {
  document.getElementById('status')!.textContent = text
}

async function main() {
  const { pdsUrl, plcUrl, scope } = window.APP_CONFIG
  const redirectUri = `${location.origin}/`
  const client = new BrowserOAuthClient({
    clientMetadata: {
      client_id: `http://localhost?redirect_uri=${encodeURIComponent(redirectUri)}&scope=${encodeURIComponent(scope)}`,
      redirect_uris: [redirectUri as `http://127.0.0.1:${string}`],
      scope,
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none',
      application_type: 'web',
      dpop_bound_access_tokens: true,
    },
    handleResolver: pdsUrl,
    plcDirectoryUrl: plcUrl,
    allowHttp: true,
  })
  const result = await client.init()
  if (!result) {
    const handle = new URLSearchParams(location.search).get('handle')
    if (!handle) return status('signed out')
    status('redirecting')
    await client.signInRedirect(handle, { scope })
    return
  }
  const { session } = result
  status(`signed in as ${session.did}`)
  const res = await session.fetchHandler('/xrpc/com.atproto.repo.createRecord', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      repo: session.did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'posted from a browser app', createdAt: new Date().toISOString() },
    }),
  })
  const body = (await res.json()) as { uri?: string; error?: string }
  status(res.ok ? `posted ${body.uri}` : `error ${res.status} ${body.error}`)
}

main().catch((err) => status(`error ${err instanceof Error ? err.message : String(err)}`))
