'use strict';
// LDAP-like constraint filters as used by Golem demands/offers:
//   (&(a=b)(|(c>=1)(!(d=*)))(e=foo*bar))
// Operators: & | ! and = (with * wildcards, "=*" is presence), >=, <=, >, <, <> (not equal).
// Whitespace (incl. "\n\t") between filters is ignored. Evaluated against a flat property map.

class ConstraintError extends Error {}

function parse(src) {
  if (typeof src !== 'string') throw new ConstraintError('constraints must be a string');
  let i = 0;
  const ws = () => { while (i < src.length && /\s/.test(src[i])) i++; };
  const expect = (c) => {
    ws();
    if (src[i] !== c) throw new ConstraintError(`expected '${c}' at ${i} in constraints`);
    i++;
  };
  function filter() {
    expect('(');
    ws();
    const c = src[i];
    let node;
    if (c === '&' || c === '|') {
      i++;
      const children = [];
      ws();
      while (src[i] === '(') { children.push(filter()); ws(); }
      node = { op: c, children };
    } else if (c === '!') {
      i++;
      node = { op: '!', child: filter() };
    } else {
      node = item();
    }
    expect(')');
    return node;
  }
  function item() {
    let name = '';
    while (i < src.length && !/[=<>()!~\s]/.test(src[i])) name += src[i++];
    ws();
    if (!name) throw new ConstraintError(`missing property name at ${i}`);
    let op;
    const two = src.slice(i, i + 2);
    if (two === '>=' || two === '<=' || two === '<>') { op = two; i += 2; }
    else if (src[i] === '=' || src[i] === '>' || src[i] === '<') { op = src[i]; i++; }
    else throw new ConstraintError(`missing operator after '${name}'`);
    let value = '';
    while (i < src.length && src[i] !== ')') {
      if (src[i] === '\\' && i + 1 < src.length) { value += src[i + 1]; i += 2; continue; }
      if (src[i] === '(') throw new ConstraintError(`unexpected '(' in value at ${i}`);
      value += src[i++];
    }
    value = value.trim();
    if (op === '=' && value === '*') return { op: 'present', name };
    return { op, name, value };
  }
  ws();
  if (i >= src.length) return { op: '&', children: [] }; // empty constraints match everything
  const tree = filter();
  ws();
  if (i !== src.length) throw new ConstraintError(`trailing characters at ${i} in constraints`);
  return tree;
}

function wildcardToRegExp(pat) {
  const esc = pat.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${esc.join('.*')}$`);
}

const num = (v) => {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v))) return Number(v);
  return NaN;
};

function compareScalar(propVal, op, value) {
  if (op === '=' || op === '<>') {
    let eq;
    if (typeof propVal === 'boolean') eq = String(propVal) === value.toLowerCase();
    else if (typeof propVal === 'number') eq = value.includes('*') ? wildcardToRegExp(value).test(String(propVal)) : propVal === num(value);
    else if (typeof propVal === 'string') eq = value.includes('*') ? wildcardToRegExp(value).test(propVal) : propVal === value;
    else eq = false;
    return op === '=' ? eq : !eq;
  }
  const a = num(propVal); const b = num(value);
  if (Number.isNaN(a) || Number.isNaN(b)) {
    // Fall back to timestamp comparison (RFC 3339 strings), then give up.
    const ta = Date.parse(propVal); const tb = Date.parse(value);
    if (Number.isNaN(ta) || Number.isNaN(tb)) return false;
    return cmp(ta, op, tb);
  }
  return cmp(a, op, b);
}
function cmp(a, op, b) {
  switch (op) {
    case '>': return a > b;
    case '<': return a < b;
    case '>=': return a >= b;
    case '<=': return a <= b;
    default: return false;
  }
}

/** Evaluate a parsed tree against a flat property map. Missing properties never match (except under !). */
function evaluate(node, props) {
  switch (node.op) {
    case '&': return node.children.every((c) => evaluate(c, props));
    case '|': return node.children.some((c) => evaluate(c, props));
    case '!': return !evaluate(node.child, props);
    case 'present': return Object.prototype.hasOwnProperty.call(props, node.name) && props[node.name] !== null;
    default: {
      if (!Object.prototype.hasOwnProperty.call(props, node.name)) return false;
      const v = props[node.name];
      if (Array.isArray(v)) {
        if (node.op === '<>') return v.every((e) => compareScalar(e, '<>', node.value));
        return v.some((e) => compareScalar(e, node.op, node.value));
      }
      return compareScalar(v, node.op, node.value);
    }
  }
}

function matches(constraints, props) { return evaluate(parse(constraints), props); }

/** Flatten nested property objects into dotted keys (yagna flattens on input). "@tag" is the node's own value. */
function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (k === '@tag') { out[prefix] = v; continue; }
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out[key] = v;
  }
  return out;
}

module.exports = { parse, evaluate, matches, flatten, ConstraintError };
