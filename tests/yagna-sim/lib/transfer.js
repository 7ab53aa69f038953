'use strict';
// The exe-unit's `transfer` command (yagna exe-unit/components/transfer): copies from a gftp://,
// http(s):// or container: URL to a container: or gftp:// URL. container: paths must lie in one of
// the VM's volumes, as on a VM provider (container.rs resolve_path).
const fs = require('node:fs');
const path = require('node:path');
const gsb = require('./gsb');

const MAX_TRANSFER = 256 * 1024 * 1024;
const HTTP_TIMEOUT_MS = 60000;
const VOLUMES = ['/golem/work', '/golem/input', '/golem/output', '/golem/resources'];

const fail = (text) => { const e = new Error(`Local service error: Transfer error: ${text}`); e.transfer = true; return e; };

/** container:/golem/work/x -> the file inside the VM root, or a "path not found in container" error. */
function containerFile(act, url) {
  const p = url.slice('container:'.length);
  const vol = VOLUMES.filter((v) => p === v || p.startsWith(`${v}/`)).sort((a, b) => b.length - a.length)[0];
  if (!vol) throw fail(`IO error: path not found in container: ${p}`);
  const rest = p.slice(vol.length + 1);
  if (rest.startsWith('/')) throw fail(`IO error: invalid path format: [${p}]`);
  const rel = path.posix.normalize(rest || '.');
  if (rel.startsWith('..')) throw fail(`IO error: path not found in container: ${p}`);
  return path.join(act.vm.root, vol, rel);
}

function scheme(url) {
  const m = /^([a-z][a-z0-9+.-]*):/i.exec(url);
  return m ? m[1].toLowerCase() : null;
}

async function read(sim, act, url) {
  switch (scheme(url)) {
    case 'gftp': return gsb.pull(sim, url, MAX_TRANSFER);
    case 'container': {
      const f = containerFile(act, url);
      let st;
      try { st = fs.statSync(f); } catch (e) { throw fail(`IO error: ${e.message}`); }
      if (st.size > MAX_TRANSFER) throw fail(`IO error: file too large: ${st.size} bytes`);
      return fs.readFileSync(f);
    }
    case 'http': case 'https': {
      let res;
      try { res = await fetch(url, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) }); } catch (e) { throw fail(`HTTP error: ${e.message}`); }
      if (!res.ok) throw fail(`HTTP error: ${res.status}`);
      const body = Buffer.from(await res.arrayBuffer());
      if (body.length > MAX_TRANSFER) throw fail('HTTP error: body too large');
      return body;
    }
    default: throw fail(`Unsupported scheme: ${scheme(url) || url}`);
  }
}

async function write(sim, act, url, data) {
  switch (scheme(url)) {
    case 'gftp': return gsb.push(sim, url, data);
    case 'container': {
      const f = containerFile(act, url);
      fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, data);
      return undefined;
    }
    default: throw fail(`Unsupported scheme: ${scheme(url) || url}`);
  }
}

/** Run one transfer command for activity `act`: an exec result. */
async function transfer(sim, act, arg) {
  const ok = { result: 'Ok', stdout: null, stderr: null, message: null };
  if (!arg || typeof arg.from !== 'string' || typeof arg.to !== 'string') {
    return { result: 'Error', stdout: null, stderr: null, message: 'Local service error: Transfer error: Invalid url: missing from/to' };
  }
  try {
    const data = await read(sim, act, arg.from);
    await write(sim, act, arg.to, data);
    return ok;
  } catch (e) {
    const msg = e.transfer ? e.message : `Local service error: Transfer error: ${e.message}`;
    return { result: 'Error', stdout: null, stderr: null, message: msg };
  }
}

module.exports = { transfer, containerFile, VOLUMES };
