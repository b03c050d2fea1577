// Test stand-in for DNS (scripts/docker/smoke.sh), loaded with NODE_OPTIONS=--require: connections that Node
// opens to a name listed in STRATOS_CONNECT_TO ("name[:port]=host:port,...") go to host:port instead, while TLS
// still verifies the certificate for the original name (SNI and Host stay as they were), as with
// curl --connect-to. It touches nothing else (no /etc/hosts, no system resolver).
'use strict'
const net = require('node:net')
const tls = require('node:tls')

const map = new Map()
for (const entry of (process.env.STRATOS_CONNECT_TO || '').split(',')) {
  const [from, to] = entry.split('=')
  if (!from || !to) continue
  const [toHost, toPort] = to.split(':')
  map.set(from.toLowerCase(), { host: toHost, port: Number(toPort) })
}

function redirect(args, defaultPort) {
  const options = args[0]
  if (!options || typeof options !== 'object') return args
  const host = String(options.host || options.servername || '').toLowerCase()
  const port = Number(options.port || defaultPort)
  const to = map.get(`${host}:${port}`) || map.get(host)
  if (!to) return args
  return [{ ...options, host: to.host, port: to.port, servername: options.servername || host }, ...args.slice(1)]
}

const tlsConnect = tls.connect
tls.connect = function (...args) {
  return tlsConnect.apply(this, redirect(args, 443))
}
const netConnect = net.connect
net.connect = net.createConnection = function (...args) {
  return netConnect.apply(this, redirect(args, 80))
}
