'use strict';
// Loads the official OpenAPI specs (read at run time, never copied) and validates requests
// (and, for tests, responses) with ajv. Where the real daemon deviates from the spec (PROTOCOL.md),
// the request schemas are patched so that what the daemon accepts is not flagged.
const fs = require('node:fs');
const path = require('node:path');
const yaml = require('js-yaml');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');

const FILES = {
  'market-api.yaml': '/market-api/v1',
  'activity-api.yaml': '/activity-api/v1',
  'payment-api.yaml': '/payment-api/v1',
  'net-api.yaml': '/net-api/v1',
  'net-api-v2.yaml': '/net-api/v2',
  'identity-api.yaml': '',
  'version-api.yaml': '',
};
const STRIP = new Set(['discriminator', 'example', 'examples', 'xml', 'externalDocs', 'deprecated', 'x-codegen-request-body-name']);

/** Documented daemon deviations from the spec, applied to request schemas (PROTOCOL.md §1, §3.1, §4, §9). */
function patchRequest(opId, where, schema) {
  if (where === 'body' && (opId === 'createAllocation')) {
    // totalAmount may be a JSON number; paymentPlatform string or object; address optional.
    if (schema.properties && schema.properties.totalAmount) schema.properties.totalAmount = { type: ['string', 'number'] };
  }
  if (where === 'body' && schema && schema.type === 'object') schema.additionalProperties = true; // unknown fields ignored
  return schema;
}

/** Known spec errors in response schemas, where the real daemon's wire format is documented (fixtures). */
function patchResponse(schema) {
  (function walk(s) {
    if (!s || typeof s !== 'object') return;
    if (s.properties && s.properties.usageCounterVector) s.properties.usageCounterVector = { type: 'array', items: { type: 'number' } };
    // ActivityState.state is a [current, next] pair whose `next` is null when idle (PROTOCOL.md §5.5)
    if (s.properties && s.properties.state && s.properties.state.type === 'array' && s.properties.state.items) {
      s.properties.state.items = { anyOf: [s.properties.state.items, { type: 'null' }] };
    }
    // /version/get: "pending" is null when no update is pending
    if (s.properties && s.properties.pending && s.properties.current) s.properties.pending = { anyOf: [s.properties.pending, { type: 'null' }] };
    // exec results: yagna always sends stdout/stderr/message, null when empty (PROTOCOL.md §5.3)
    if (s.properties && s.properties.isBatchFinished) {
      for (const k of ['stdout', 'stderr', 'message']) if (s.properties[k]) s.properties[k] = { anyOf: [s.properties[k], { type: 'null' }] };
    }
    for (const v of Object.values(s)) walk(v);
  })(schema);
  return schema;
}

function makeAjv(opts = {}) {
  const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false, ...opts });
  addFormats(ajv);
  for (const f of ['int32', 'int64', 'float', 'double', 'decimal', 'hex', 'integer', 'byte', 'binary']) ajv.addFormat(f, true);
  return ajv;
}

class Spec {
  constructor(dir) {
    this.dir = dir;
    this.docs = {};
    for (const f of fs.readdirSync(dir)) {
      if (f.endsWith('.yaml')) this.docs[f] = yaml.load(fs.readFileSync(path.join(dir, f), 'utf8'));
    }
    this.ajvBody = makeAjv();
    this.ajvQuery = makeAjv({ coerceTypes: true, useDefaults: false });
    this.ops = [];
    for (const [file, prefix] of Object.entries(FILES)) {
      const doc = this.docs[file];
      if (!doc || !doc.paths) continue;
      for (const [tpl, item] of Object.entries(doc.paths)) {
        for (const method of ['get', 'post', 'put', 'delete', 'patch']) {
          if (!item[method]) continue;
          const full = prefix + tpl;
          const re = new RegExp('^' + full.replace(/[.+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '([^/]+)') + '$');
          this.ops.push({ method: method.toUpperCase(), file, template: full, re, item, op: item[method], cache: {} });
        }
      }
    }
    // net-api-v2 is served under /net-api/v2/vpn/... (its paths include /vpn); longest templates first.
    this.ops.sort((a, b) => b.template.length - a.template.length);
  }

  find(method, pathname) {
    return this.ops.find((o) => o.method === method && o.re.test(pathname)) || null;
  }

  // --- $ref resolution (inlines refs, across files); cycles are cut with {}.
  deref(file, ref) {
    const [f, frag] = ref.split('#');
    const target = f ? f : file;
    let node = this.docs[target];
    for (const part of (frag || '').split('/').filter(Boolean)) node = node && node[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    return { file: target, node };
  }
  resolveObj(file, obj) { // for non-schema objects (parameters, requestBodies, responses)
    let guard = 0;
    while (obj && obj.$ref && guard++ < 10) { const r = this.deref(file, obj.$ref); file = r.file; obj = r.node; }
    return { file, obj };
  }
  inline(file, schema, mode, stack = []) {
    if (Array.isArray(schema)) return schema.map((s) => this.inline(file, s, mode, stack));
    if (!schema || typeof schema !== 'object') return schema;
    if (schema.$ref) {
      const key = `${file}|${schema.$ref}`;
      if (stack.includes(key) || stack.length > 40) return {};
      const r = this.deref(file, schema.$ref);
      return this.inline(r.file, r.node, mode, [...stack, key]);
    }
    const out = {};
    for (const [k, v] of Object.entries(schema)) {
      if (STRIP.has(k)) continue;
      if (k === 'properties') {
        out.properties = {};
        for (const [pk, pv] of Object.entries(v)) {
          const r = pv && pv.$ref ? this.resolveObj(file, pv) : { obj: pv };
          if (mode === 'request' && r.obj && r.obj.readOnly) continue;
          if (mode === 'response' && r.obj && r.obj.writeOnly) continue;
          out.properties[pk] = this.inline(file, pv, mode, stack);
        }
      } else if (k === 'oneOf') {
        // serde's untagged enums take the first variant that fits; the spec's oneOfs overlap (e.g. a
        // string also "matches" an all-optional object schema), so anyOf is the daemon's semantics.
        out.anyOf = this.inline(file, v, mode, stack);
      } else if (v && typeof v === 'object') out[k] = this.inline(file, v, mode, stack);
      else out[k] = v;
    }
    if (out.required && out.properties) {
      out.required = out.required.filter((r) => r in out.properties || !(schema.properties && r in schema.properties));
    }
    // OpenAPI 3.0 "nullable" needs a type for ajv; allOf/oneOf-only nullables become anyOf with null.
    if (out.nullable && !out.type) { delete out.nullable; return { anyOf: [out, { type: 'null' }] }; }
    return out;
  }

  compiled(o, key, build) {
    if (!(key in o.cache)) {
      try { o.cache[key] = build(); } catch (e) { o.cache[key] = null; }
    }
    return o.cache[key];
  }

  /** Returns a list of error strings (empty = conforming). */
  validateRequest(o, { query, body, hasBody }) {
    const errors = [];
    const opId = o.op.operationId;
    const qv = this.compiled(o, 'query', () => {
      const params = [...(o.item.parameters || []), ...(o.op.parameters || [])]
        .map((p) => this.resolveObj(o.file, p)).filter((r) => r.obj && r.obj.in === 'query');
      const schema = { type: 'object', properties: {}, required: [], additionalProperties: true };
      for (const { file, obj } of params) {
        schema.properties[obj.name] = this.inline(file, obj.schema || {}, 'request');
        if (obj.required) schema.required.push(obj.name);
      }
      const v = this.ajvQuery.compile(patchRequest(opId, 'query', schema));
      // style: form, explode: false -> comma separated arrays
      v.arrays = Object.entries(schema.properties).filter(([, ps]) => ps.type === 'array').map(([k]) => k);
      return v;
    });
    if (qv) {
      const q = { ...query };
      for (const k of qv.arrays) if (typeof q[k] === 'string') q[k] = q[k].split(',');
      if (!qv(q)) errors.push(...qv.errors.map((e) => `query${e.instancePath} ${e.message}`));
    }
    const bv = this.compiled(o, 'body', () => {
      const rb = this.resolveObj(o.file, o.op.requestBody);
      if (!rb.obj || !rb.obj.content) return null;
      const media = rb.obj.content['application/json'] || Object.values(rb.obj.content)[0];
      if (!media || !media.schema) return null;
      const schema = patchRequest(opId, 'body', this.inline(rb.file, media.schema, 'request'));
      const v = this.ajvBody.compile(schema);
      v.required = !!rb.obj.required;
      return v;
    });
    if (bv) {
      if (!hasBody) { if (bv.required) errors.push('body: required request body missing'); }
      else if (!bv(body)) errors.push(...bv.errors.map((e) => `body${e.instancePath} ${e.message}`));
    }
    return errors;
  }

  /** Validate a response body against the spec's schema for that status (2xx falls back to any 2xx). */
  validateResponse(method, pathname, status, body) {
    const o = this.find(method, pathname);
    if (!o) return { skipped: 'no operation in spec' };
    const resps = o.op.responses || {};
    let r = resps[status] || resps[String(status)];
    if (!r && status >= 200 && status < 300) r = Object.entries(resps).find(([k]) => /^2/.test(k))?.[1];
    if (!r) r = resps.default;
    if (!r) return { skipped: `no response ${status} in spec` };
    const { file, obj } = this.resolveObj(o.file, r);
    const media = obj && obj.content && (obj.content['application/json'] || Object.values(obj.content)[0]);
    if (!media || !media.schema) return { skipped: 'no schema' };
    const v = this.compiled(o, `resp${status}`, () => this.ajvBody.compile(patchResponse(this.inline(file, media.schema, 'response'))));
    if (!v) return { skipped: 'schema did not compile' };
    return v(body) ? { ok: true, operationId: o.op.operationId } : { ok: false, operationId: o.op.operationId, errors: v.errors };
  }
}

/** Locate the spec dir: explicit, $YHC_YAGNA_API_DIR, or <repo>/../shared/yagna-api. Returns null when absent. */
function findSpecDir(explicit) {
  const cands = [explicit, process.env.YHC_YAGNA_API_DIR, path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'yagna-api')];
  for (const c of cands) {
    if (c && fs.existsSync(path.join(c, 'market-api.yaml'))) return path.resolve(c);
  }
  return null;
}

function loadSpec(explicit) {
  const dir = findSpecDir(explicit);
  return dir ? new Spec(dir) : null;
}

module.exports = { loadSpec, findSpecDir, Spec };
