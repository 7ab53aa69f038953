'use strict';
// Image handling. An image is a directory; its hash is SHA3-224 (hex) over a canonical listing:
// for each regular file, in sorted relative-path order ('/' separators, byte-wise sort),
// the bytes `path \0 <decimal size> \0 <content>`.
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

function listFiles(root) {
  const out = [];
  (function walk(rel) {
    const abs = path.join(root, rel);
    for (const ent of fs.readdirSync(abs, { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (ent.isDirectory()) walk(r);
      else if (ent.isFile()) out.push(r);
      // symlinks, sockets etc. are not part of an image
    }
  })('');
  return out.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

function imageHash(dir) {
  const h = crypto.createHash('sha3-224');
  let size = 0;
  for (const rel of listFiles(dir)) {
    const content = fs.readFileSync(path.join(dir, rel));
    h.update(Buffer.from(rel)); h.update(Buffer.from([0]));
    h.update(Buffer.from(String(content.length))); h.update(Buffer.from([0]));
    h.update(content);
    size += content.length;
  }
  return { hash: h.digest('hex'), size };
}

/** Scan DIR: every subdirectory is an image. Returns Map hash -> {name, dir, hash, size}. */
function loadImages(dir) {
  const images = new Map();
  if (!dir) return images;
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    if (ent.name.startsWith('.') || ent.name === 'node_modules') continue;
    const d = path.join(dir, ent.name);
    if (!fs.statSync(d).isDirectory()) continue; // follows symlinks to image dirs
    const { hash, size } = imageHash(d);
    images.set(hash, { name: ent.name, dir: d, hash, size });
  }
  return images;
}

/** Copy an image's files into dest (recursively, preserving modes). */
function copyImage(src, dest) {
  fs.mkdirSync(dest, { recursive: true });
  for (const rel of listFiles(src)) {
    const to = path.join(dest, rel);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(path.join(src, rel), to);
    fs.chmodSync(to, fs.statSync(path.join(src, rel)).mode & 0o7777);
  }
}

/** A deterministic tar-free "package" for GET /download/<hash>: the canonical listing bytes. */
function packageStream(dir, res) {
  for (const rel of listFiles(dir)) {
    const content = fs.readFileSync(path.join(dir, rel));
    res.write(Buffer.concat([Buffer.from(rel), Buffer.from([0]), Buffer.from(String(content.length)), Buffer.from([0]), content]));
  }
  res.end();
}

/** Parse "hash:sha3:<hex>:<url>" (url may be absent or end in "\n"). */
function parseTaskPackage(tp) {
  if (typeof tp !== 'string') return null;
  const m = /^hash:(?:\/\/)?sha3(?:-224)?:([0-9a-fA-F]+)(?::(.*))?$/s.exec(tp.trim());
  return m ? { hash: m[1].toLowerCase(), url: (m[2] || '').trim() } : null;
}

module.exports = { imageHash, loadImages, copyImage, packageStream, parseTaskPackage, listFiles };
